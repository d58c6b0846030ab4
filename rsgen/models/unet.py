"""The denoising UNet: diffusers ``UNet2DConditionModel`` built from a typed config (tiny / default / SR) or
loaded from a local Stable Diffusion folder, always with ``class_embed_type="identity"`` so that the
:class:`~rsgen.models.metadata_embedding.MetadataEmbedding` output, passed as ``class_labels``, is added to
the timestep embedding."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)


@dataclass
class UNetConfig:
    """Shape of a UNet built from scratch, or ``pretrained`` = a local diffusers folder (pipeline root or its
    ``unet/``) whose weights are loaded instead (the shape fields are then ignored)."""

    pretrained: str | None = None
    sample_size: int = 16  # latent side
    in_channels: int = 4  # latent channels (+3 for a super-resolution stage's low-res image)
    out_channels: int = 4
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 256])
    layers_per_block: int = 1
    # Per level: True = cross-attention block (CrossAttnDownBlock2D / CrossAttnUpBlock2D).
    cross_attention_levels: list[bool] = field(default_factory=lambda: [False, True, True])
    cross_attention_dim: int = 384
    attention_head_dim: int = 8  # as in diffusers' UNet2DConditionModel (number of heads there)
    norm_num_groups: int = 32
    gradient_checkpointing: bool = False


def time_embed_dim(unet: nn.Module) -> int:
    """Width of the UNet's timestep embedding (= the metadata embedding's output width)."""
    return int(unet.time_embedding.linear_2.out_features)


def build_unet(cfg: UNetConfig, text_dim: int) -> UNet2DConditionModel:
    """A fresh UNet of the configured shape; token states of width ``text_dim`` are projected to the
    cross-attention width when the two differ (``encoder_hid_dim_type="text_proj"``)."""
    n = len(cfg.block_out_channels)
    if len(cfg.cross_attention_levels) != n:
        raise ConfigError(
            f"unet.cross_attention_levels has {len(cfg.cross_attention_levels)} entries; expected one per "
            f"block_out_channels entry ({n})"
        )
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ConfigError(
            f"unet.block_out_channels={cfg.block_out_channels}: each must be divisible by "
            f"norm_num_groups={cfg.norm_num_groups}"
        )
    down = [("CrossAttnDownBlock2D" if a else "DownBlock2D") for a in cfg.cross_attention_levels]
    up = [("CrossAttnUpBlock2D" if a else "UpBlock2D") for a in reversed(cfg.cross_attention_levels)]
    project = text_dim != cfg.cross_attention_dim
    unet = UNet2DConditionModel(
        sample_size=cfg.sample_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
        class_embed_type="identity",
        encoder_hid_dim=text_dim if project else None,
        encoder_hid_dim_type="text_proj" if project else None,
    )
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


def _unet_folder(path: Path) -> Path:
    if (path / "unet" / "config.json").is_file():
        return path / "unet"
    if (path / "config.json").is_file():
        return path
    raise WeightsNotFoundError(
        f"UNet: no diffusers UNet in {path} (expected {path}/unet/config.json or {path}/config.json; "
        "rsgen never downloads weights)"
    )


def adapt_unet(
    unet: UNet2DConditionModel, text_dim: int | None = None, in_channels: int | None = None
) -> None:
    """Make a pretrained UNet rsgen-ready in place, recording every change in its config so that
    ``save_pretrained``/``from_pretrained`` round-trip:

    - ``class_embed_type="identity"`` (metadata embedding added to the timestep embedding);
    - a new text projection when the text encoder's width differs from the cross-attention width;
    - more input channels (zero-initialised, so the pretrained behaviour is kept) for a SR stage.
    """
    if unet.config.class_embed_type != "identity":
        if unet.class_embedding is not None:
            raise ConfigError(
                f"UNet already has class_embed_type={unet.config.class_embed_type!r}; rsgen needs 'identity'"
            )
        unet.class_embedding = nn.Identity()
        unet.register_to_config(class_embed_type="identity")
    cross = unet.config.cross_attention_dim
    cross = cross[0] if isinstance(cross, list | tuple) else cross
    if text_dim is not None and unet.encoder_hid_proj is None and text_dim != cross:
        unet.encoder_hid_proj = nn.Linear(text_dim, cross).to(unet.device, unet.dtype)
        unet.register_to_config(encoder_hid_dim=text_dim, encoder_hid_dim_type="text_proj")
    if in_channels is not None and in_channels != unet.config.in_channels:
        old = unet.conv_in
        if in_channels < old.in_channels:
            raise ConfigError(f"cannot shrink UNet input from {old.in_channels} to {in_channels} channels")
        new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, padding=old.padding)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_channels] = old.weight
            new.bias.copy_(old.bias)
        unet.conv_in = new.to(old.weight.device, old.weight.dtype)
        unet.register_to_config(in_channels=in_channels)


def load_unet(
    path: str | Path,
    text_dim: int | None = None,
    in_channels: int | None = None,
    gradient_checkpointing: bool = False,
) -> UNet2DConditionModel:
    """A UNet from a local diffusers folder (SD 1.x / 2.x or an rsgen model), adapted by :func:`adapt_unet`."""
    folder = _unet_folder(Path(path))
    unet = UNet2DConditionModel.from_pretrained(
        folder, use_safetensors=use_safetensors(), local_files_only=True
    )
    adapt_unet(unet, text_dim=text_dim, in_channels=in_channels)
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    return unet


def make_unet(cfg: UNetConfig, text_dim: int) -> UNet2DConditionModel:
    """Build from the config, or load ``cfg.pretrained`` (and adapt it to ``text_dim`` / ``cfg.in_channels``)."""
    if cfg.pretrained:
        return load_unet(cfg.pretrained, text_dim, cfg.in_channels, cfg.gradient_checkpointing)
    return build_unet(cfg, text_dim)


def add_lora(unet: UNet2DConditionModel, rank: int, alpha: float | None = None) -> list[nn.Parameter]:
    """Freeze the UNet and add LoRA adapters (peft) to its attention projections; returns the new parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha or rank,
        init_lora_weights="gaussian",
        target_modules=["to_k", "to_q", "to_v", "to_out.0"],
    )
    unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]


def merge_lora(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A plain UNet with the LoRA weights merged in (for export as a normal diffusers folder)."""
    import copy

    merged = copy.deepcopy(unet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged


__all__ = [
    "UNetConfig",
    "adapt_unet",
    "add_lora",
    "build_unet",
    "load_unet",
    "make_unet",
    "merge_lora",
    "time_embed_dim",
]
