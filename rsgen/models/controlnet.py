"""ControlNet built from the rsgen UNet: diffusers ``ControlNetModel.from_unet`` plus what it does not copy
(the text projection), with the same ``class_embed_type="identity"`` so the metadata embedding's output is
added to its timestep embedding too. Several ControlNets at once: residuals summed, one scale per net."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from rsgen.errors import ConfigError, WeightsNotFoundError
from rsgen.safety import use_safetensors

#: Condition types a ControlNet can be trained on (images made by ``rsgen.conditions`` or given by the data).
CONDITION_TYPES = ("canny", "lineart", "shuffle", "footprints", "height", "segmentation")


def conditioning_channels_for(latent_factor: int) -> tuple[int, ...]:
    """Channels of the condition-image encoder that downsamples by ``latent_factor`` (SD: 8 -> (16, 32, 96, 256))."""
    steps = int(math.log2(latent_factor))
    if 2**steps != latent_factor:
        raise ConfigError(f"latent factor {latent_factor} is not a power of two")
    return tuple(min(16 * 2**i, 256) for i in range(steps + 1))


def controlnet_from_unet(
    unet: UNet2DConditionModel, latent_factor: int, conditioning_channels: int = 3
) -> ControlNetModel:
    """A ControlNet initialised from the UNet's encoder; its zero convolutions make it a no-op at first."""
    controlnet = ControlNetModel.from_unet(
        unet,
        conditioning_embedding_out_channels=conditioning_channels_for(latent_factor),
        conditioning_channels=conditioning_channels,
    )
    if unet.encoder_hid_proj is not None:
        controlnet.encoder_hid_proj.load_state_dict(unet.encoder_hid_proj.state_dict())
    return controlnet.to(unet.device)


def load_controlnet(path: str | Path) -> ControlNetModel:
    """A ControlNet from a local diffusers folder (pipeline root with ``controlnet/`` or the folder itself)."""
    p = Path(path)
    folder = p / "controlnet" if (p / "controlnet" / "config.json").is_file() else p
    if not (folder / "config.json").is_file():
        raise WeightsNotFoundError(f"ControlNet: no diffusers ControlNetModel in {p}")
    return ControlNetModel.from_pretrained(folder, use_safetensors=use_safetensors(), local_files_only=True)


def controlnet_residuals(
    controlnets: Sequence[ControlNetModel],
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    class_labels: torch.Tensor,
    conds: Sequence[torch.Tensor],
    scales: Sequence[float],
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Summed residuals of several ControlNets, each with its own condition image (B, 3, H, W) in [0, 1] and
    scale. Each net applies its own copy of the text projection (diffusers' ControlNet forward does not)."""
    if not (len(controlnets) == len(conds) == len(scales)):
        raise ValueError(
            f"{len(controlnets)} ControlNets need as many conditions and scales, got {len(conds)}, {len(scales)}"
        )
    down_sum: list[torch.Tensor] | None = None
    mid_sum: torch.Tensor | None = None
    for net, cond, scale in zip(controlnets, conds, scales, strict=True):
        context = (
            net.encoder_hid_proj(encoder_hidden_states)
            if net.encoder_hid_proj is not None
            else encoder_hidden_states
        )
        down, mid = net(
            sample,
            timesteps,
            encoder_hidden_states=context,
            controlnet_cond=cond.to(sample.dtype),
            conditioning_scale=float(scale),
            class_labels=class_labels,
            return_dict=False,
        )
        down_sum = list(down) if down_sum is None else [a + b for a, b in zip(down_sum, down, strict=True)]
        mid_sum = mid if mid_sum is None else mid_sum + mid
    assert down_sum is not None and mid_sum is not None
    return down_sum, mid_sum


def controlled_unet_forward(
    unet: UNet2DConditionModel,
    controlnets: Sequence[ControlNetModel],
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    class_labels: torch.Tensor,
    conds: Sequence[torch.Tensor] = (),
    scales: Sequence[float] = (),
) -> torch.Tensor:
    """The UNet's prediction (B, C, h, w), with the ControlNets' residuals added (none: the plain UNet).

    sample (B, C_in, h, w); encoder_hidden_states (B, T, D) from the text encoder; class_labels (B, E) from
    the metadata embedding; conds: one (B, 3, H, W) condition image in [0, 1] per ControlNet.
    """
    down, mid = None, None
    if controlnets:
        down, mid = controlnet_residuals(
            controlnets,
            sample,
            timesteps,
            encoder_hidden_states,
            class_labels,
            conds,
            scales or [1.0] * len(conds),
        )
    return unet(
        sample,
        timesteps,
        encoder_hidden_states=encoder_hidden_states,
        class_labels=class_labels,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
    ).sample


__all__ = [
    "CONDITION_TYPES",
    "controlled_unet_forward",
    "controlnet_from_unet",
    "conditioning_channels_for",
    "controlnet_residuals",
    "load_controlnet",
]
