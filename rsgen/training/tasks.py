"""What each training mode builds, trains and exports. The loop (:mod:`rsgen.training.loop`) is the same for
all modes; a task only says which modules train, how a batch becomes a loss, what is cached beside the
latents, and how the result is saved. ``base``, ``controlnet`` and ``sr`` share :class:`DiffusionTask` and
differ only in small hooks (extra UNet input, ControlNet residuals, noise-level input)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import ControlNetModel
from torch import nn

from rsgen.errors import ConfigError, DataError
from rsgen.metadata import encode_metadata
from rsgen.models.controlnet import controlled_unet_forward, controlnet_from_unet
from rsgen.models.metadata_embedding import MetadataEmbedding, build_metadata_embedding, drop_metadata_fields
from rsgen.models.super_resolution import (
    crop_step,
    degrade,
    low_res_channels,
    low_res_condition,
    low_res_scale,
    mark_super_resolution,
    sr_unet_input,
)
from rsgen.models.text import PromptEncoder, load_text_encoder
from rsgen.models.unet import add_lora, load_unet, make_unet, merge_lora, time_embed_dim
from rsgen.models.vae import build_vae, calibrate_scaling_factor, load_vae, vae_loss, vae_scale_factor
from rsgen.training.config import TrainConfig
from rsgen.training.diffusion import (
    diffusion_loss,
    diffusion_target,
    loss_weights,
    make_noise_scheduler,
    sample_noise,
)
from rsgen.training.export import export_pipeline

log = logging.getLogger(__name__)


def _component(root: str | None, name: str) -> Path | None:
    """``root/name`` when ``root`` is a model folder that has that component."""
    if root and (Path(root) / name).is_dir():
        return Path(root) / name
    return None


def drop_captions(captions: list[str], prob: float, generator: torch.Generator) -> list[str]:
    """Caption dropout for classifier-free guidance: each caption becomes "" with probability ``prob``."""
    draws = torch.rand(len(captions), generator=generator).tolist()
    return ["" if r < prob else c for r, c in zip(draws, captions, strict=True)]


def encode_captions(text: PromptEncoder, captions: list[str]) -> torch.Tensor:
    """Hidden states (B, T, D) of ``captions``, each encoded on its own the first time (then cached).

    On several threads a matrix product's rounding depends on the batch it runs in, so an embedding made
    in a batch with other captions depends on which captions happened to be new at that step: a resumed run
    (empty cache) would then train on slightly different embeddings than an uninterrupted one (up to 1e-5,
    enough to make every weight differ after a few steps)."""
    for caption in dict.fromkeys(captions):
        text([caption])  # fills the cache with the caption's own, batch-independent embedding
    return text(captions)


class TrainTask:
    """Base class: the modules of a mode and its loss. Subclasses fill ``components`` (everything exported)
    and ``trainable`` (modules whose ``requires_grad`` parameters the optimizer updates)."""

    mode = ""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.components: dict[str, Any] = {}
        self.trainable: dict[str, nn.Module] = {}
        self.dataset: Any = None

    @property
    def uses_latent_cache(self) -> bool:
        return False

    def attach_dataset(self, dataset: Any) -> None:
        """The raw image dataset (for per-record information such as condition file paths)."""
        self.dataset = dataset

    def train(self, mode: bool = True) -> None:
        for m in self.trainable.values():
            m.train(mode)

    def loss(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def export(self, out_dir: Path, info: dict[str, Any]) -> Path:
        raise NotImplementedError

    def preview(self, path: Path, generator_seed: int) -> Path | None:
        """Write a sample grid PNG (or None when the mode has nothing to show)."""
        return None


# -------------------------------------------------------------------------------------------------- VAE
class VAETask(TrainTask):
    """Trains the autoencoder on pixels with L1 + SSIM + KL; exported with a calibrated ``scaling_factor``."""

    mode = "vae"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        src = _component(cfg.init_from, "vae") or cfg.vae.pretrained
        self.vae = (load_vae(src) if src else build_vae(cfg.vae)).to(device)
        self.decoder_only = bool(cfg.vae.train_decoder_only)
        if self.decoder_only and not src:
            raise ConfigError(
                "vae.train_decoder_only=true needs a trained VAE (vae.pretrained or --init-from)"
            )
        self.vae.requires_grad_(True)
        if self.decoder_only:  # the encoder side stays fixed: cached latents and base models remain valid
            for frozen in (self.vae.encoder, self.vae.quant_conv):
                if frozen is not None:
                    frozen.requires_grad_(False)
        self.components = {"vae": self.vae}
        self.trainable = {"vae": self.vae}
        self.discriminator: torch.nn.Module | None = None
        if cfg.vae.adversarial_weight > 0:  # trains and checkpoints with the VAE; never exported
            from rsgen.models.discriminator import PatchDiscriminator

            self.discriminator = PatchDiscriminator(
                cfg.vae.discriminator_channels, cfg.vae.discriminator_layers
            ).to(device)
            self.trainable["discriminator"] = self.discriminator
        self.reference: torch.Tensor | None = None  # (N, 3, S, S): fixed images for calibration and previews

    def loss(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        pixels = batch["pixel_values"].to(self.device)  # (B, 3, S, S)
        if self.reference is None:
            self.reference = pixels[:16].detach().cpu()
        vae_cfg = self.cfg.vae
        return vae_loss(
            self.vae,
            pixels,
            vae_cfg.kl_weight,
            vae_cfg.ssim_weight,
            generator,
            gradient_weight=vae_cfg.gradient_weight,
            decoder_only=self.decoder_only,
            spectral_weight=vae_cfg.spectral_weight,
            discriminator=self.discriminator,
            adversarial_weight=vae_cfg.adversarial_weight,
        )

    def export(self, out_dir: Path, info: dict[str, Any]) -> Path:
        if self.reference is not None and not self.decoder_only:  # decoder-only keeps the latent scale
            factor = calibrate_scaling_factor(self.vae, self.reference)
            log.info("VAE scaling_factor calibrated to %.4f", factor)
        return export_pipeline(out_dir, {"vae": self.vae}, info)

    @torch.no_grad()
    def preview(self, path: Path, generator_seed: int) -> Path | None:
        if self.reference is None:
            return None
        ref = self.reference[:8].to(self.device)
        recon = self.vae(ref, sample_posterior=False).sample.clamp(-1, 1)
        return _write_grid(path, torch.cat([ref, recon]), nrow=len(ref))


# ---------------------------------------------------------------------------------------------- diffusion
class DiffusionTask(TrainTask):
    """``base``: trains the UNet (or LoRA adapters on it) and the metadata embedding on frozen VAE latents,
    with caption and per-field metadata dropout."""

    mode = "base"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        text_src = str(cfg.init_from) if _component(cfg.init_from, "text_encoder") else cfg.text.encoder
        tokenizer, text_model = load_text_encoder(text_src, device=device)
        self.text = PromptEncoder(tokenizer, text_model, cfg.text.max_length)
        self.vae = self._load_vae().to(device)
        self.vae.requires_grad_(False).eval()
        self.scheduler = make_noise_scheduler(cfg.diffusion)
        self.unet, self.metadata_embedding = self._build_denoiser(self.text.hidden_size)
        self.unet.to(device)
        self.metadata_embedding.to(device)
        self.components = {
            "vae": self.vae,
            "text_encoder": text_model,
            "tokenizer": tokenizer,
            "unet": self.unet,
            "metadata_embedding": self.metadata_embedding,
            "scheduler": self.scheduler,
        }
        self.trainable = {"unet": self.unet, "metadata_embedding": self.metadata_embedding}

    # ------------------------------------------------------------------------------------------ building
    def _load_vae(self) -> nn.Module:
        src = _component(self.cfg.init_from, "vae") or self.cfg.vae.pretrained
        if src:
            return load_vae(src)
        log.warning("no trained VAE given (vae.pretrained / init_from): using a randomly initialised one")
        return build_vae(self.cfg.vae)

    @property
    def unet_in_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def use_noise_level(self) -> bool:
        return False

    def _build_denoiser(self, text_dim: int) -> tuple[nn.Module, MetadataEmbedding]:
        cfg = self.cfg
        unet_src = _component(cfg.init_from, "unet")
        if unet_src is not None and self.mode == "base":
            unet = load_unet(unet_src, text_dim, self.unet_in_channels, cfg.unet.gradient_checkpointing)
        else:
            cfg.unet.in_channels = self.unet_in_channels
            cfg.unet.out_channels = int(self.vae.config.latent_channels)
            unet = make_unet(cfg.unet, text_dim)
        if cfg.lora.rank > 0:
            add_lora(unet, cfg.lora.rank, cfg.lora.alpha)
            if unet.encoder_hid_proj is not None:  # the text projection is small (and may be new): train it
                unet.encoder_hid_proj.requires_grad_(True)
        meta_src = _component(cfg.init_from, "metadata_embedding")
        if meta_src is not None and self.mode == "base":
            meta = MetadataEmbedding.from_pretrained(meta_src, local_files_only=True)
        else:
            meta = build_metadata_embedding(
                cfg.metadata, time_embed_dim(unet), self.use_noise_level, cfg.diffusion.num_train_timesteps
            )
        return unet, meta

    # ----------------------------------------------------------------------------------------- latents
    @property
    def uses_latent_cache(self) -> bool:
        return self.cfg.data.cache_latents

    @torch.no_grad()
    def encode_for_cache(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, 3, S, S) -> posterior mean and std, each (B, C, h, w) (unscaled)."""
        dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        return dist.mean, dist.std

    def cache_extras(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Mode-specific tensors computed from the raw batch and cached beside the latents."""
        return {}

    @torch.no_grad()
    def latents(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """Scaled latents (B, C, h, w): sampled from the cached posterior, or encoded from the pixels."""
        if "latent_mean" in batch:
            mean, std = batch["latent_mean"], batch["latent_std"]
        else:
            mean, std = self.encode_for_cache(batch["pixel_values"])
        eps = torch.randn(mean.shape, generator=generator).to(self.device)
        return (mean.to(self.device) + std.to(self.device) * eps) * self.vae.config.scaling_factor

    # ------------------------------------------------------------------------------------------- hooks
    def conditioning(
        self, batch: dict[str, Any], latent_hw: tuple[int, int], generator: torch.Generator
    ) -> dict:
        """Extra per-batch inputs of the mode (SR: noise level + low-res image; ControlNet: condition)."""
        return {}

    def unet_input(self, noisy: torch.Tensor, extra: dict) -> torch.Tensor:
        return noisy

    def controls(self, extra: dict) -> tuple[list[ControlNetModel], list[torch.Tensor]]:
        """The ControlNets trained with the UNet and their condition images (B, 3, H, W); none by default."""
        return [], []

    def predict(
        self,
        sample: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        class_labels: torch.Tensor,
        extra: dict,
    ) -> torch.Tensor:
        controlnets, conds = self.controls(extra)
        return controlled_unet_forward(self.unet, controlnets, sample, t, context, class_labels, conds)

    # -------------------------------------------------------------------------------------------- loss
    def loss(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        latents = self.latents(batch, generator)  # (B, C, h, w)
        b = latents.shape[0]
        noise = sample_noise(tuple(latents.shape), cfg.diffusion.offset_noise, generator, self.device)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=generator).to(
            self.device
        )
        noisy = self.scheduler.add_noise(latents, noise, t)  # (B, C, h, w)
        captions = drop_captions(list(batch["captions"]), cfg.text.caption_dropout, generator)
        context = encode_captions(self.text, captions).to(self.device)  # (B, T, D)
        values, present = encode_metadata(batch["metadata"])  # (B, 9), (B, 6)
        present = drop_metadata_fields(
            present, cfg.metadata.field_dropout, cfg.metadata.all_dropout, generator
        )
        extra = self.conditioning(batch, tuple(latents.shape[-2:]), generator)
        class_labels = self.metadata_embedding(
            values.to(self.device), present.to(self.device), extra.get("noise_level")
        )  # (B, E)
        pred = self.predict(self.unet_input(noisy, extra), t, context, class_labels, extra)  # (B, C, h, w)
        target = diffusion_target(self.scheduler, latents, noise, t)
        weights = loss_weights(self.scheduler, t, cfg.diffusion.snr_gamma)
        loss = diffusion_loss(pred, target, weights)
        return loss, {"mse": float(torch.mean((pred.detach().float() - target.float()) ** 2))}

    # ------------------------------------------------------------------------------------ export, preview
    def export_components(self) -> dict[str, Any]:
        comps = dict(self.components)
        if self.cfg.lora.rank > 0 and "unet" in self.trainable:
            comps["unet"] = merge_lora(self.unet)
        return comps

    def export(self, out_dir: Path, info: dict[str, Any]) -> Path:
        return export_pipeline(out_dir, self.export_components(), info)

    def preview_kwargs(self) -> dict[str, Any]:
        return {}

    def preview(self, path: Path, generator_seed: int) -> Path | None:
        images = self.preview_images(generator_seed)
        return None if images is None else _write_grid(path, images, nrow=len(images))

    @torch.no_grad()
    def preview_images(self, generator_seed: int) -> torch.Tensor | None:
        """Images (N, 3, H, W) in [-1, 1] generated from the sample prompts with the current weights."""
        from rsgen.metadata import Metadata
        from rsgen.pipelines import RSGenPipeline

        comps = self.export_components()
        pipe = RSGenPipeline(**comps)
        prompts = list(self.cfg.sample_prompts)
        metas = [Metadata(gsd_m=10.0)] * len(prompts)
        was_training = [m.training for m in self.trainable.values()]
        self.train(False)
        try:
            out = pipe(
                prompts,
                metas,
                num_inference_steps=self.cfg.sample_steps,
                seed=generator_seed,
                output_type="pt",
                progress=False,
                **self.preview_kwargs(),
            )
        finally:
            for m, mode in zip(self.trainable.values(), was_training, strict=True):
                m.train(mode)
        return out.images * 2 - 1  # (N, 3, H, W)


class SuperResolutionTask(DiffusionTask):
    """``sr``: a UNet that sees the noisy latent concatenated with the noise-augmented low-res image folded
    onto the latent grid (:func:`~rsgen.models.super_resolution.fold_low_res`, every input pixel kept); the
    augmentation level goes through the metadata embedding. With ``sr.crop`` it trains on random output crops
    (cut from the cached full-size latents and low-res input), and samples at any size (the UNet is
    convolutional)."""

    mode = "sr"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(cfg, device)
        crop = cfg.sr.crop
        if crop is not None:
            step = crop_step(cfg.sr.factor, self.vae_factor)
            multiple = math.lcm(step, self.vae_factor * 2 ** (len(self.unet.config.block_out_channels) - 1))
            if crop % multiple or crop > cfg.data.image_size:
                raise ConfigError(
                    f"sr.crop={crop}: the output crop must be a multiple of {multiple} (VAE factor "
                    f"{self.vae_factor}, x{cfg.sr.factor}, UNet down-sampling) and at most data.image_size="
                    f"{cfg.data.image_size}"
                )

    @property
    def vae_factor(self) -> int:
        return vae_scale_factor(self.vae)

    @property
    def low_res_scale(self) -> int:
        return low_res_scale(self.cfg.sr.factor, self.vae_factor)

    @property
    def unet_in_channels(self) -> int:
        return int(self.vae.config.latent_channels) + low_res_channels(self.cfg.sr.factor, self.vae_factor)

    @property
    def use_noise_level(self) -> bool:
        return True

    def _build_denoiser(self, text_dim: int) -> tuple[nn.Module, MetadataEmbedding]:
        unet, meta = super()._build_denoiser(text_dim)
        mark_super_resolution(unet, self.cfg.sr.factor, self.vae_factor)
        return unet, meta

    def cache_extras(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"low_res": degrade(batch["pixel_values"], self.cfg.sr.factor).half()}

    def crop_batch(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        """The batch cut to random ``sr.crop`` output crops, one per sample, aligned to whole latent cells and
        whole low-res pixels: ``latent_mean`` / ``latent_std`` (B, C, c/f, c/f), ``low_res`` (B, 3, c/k, c/k)
        (and ``pixel_values`` (B, 3, c, c) when given). Metadata is unchanged: a crop keeps the GSD."""
        crop, k, f = int(self.cfg.sr.crop), self.cfg.sr.factor, self.vae_factor
        if "latent_mean" in batch:
            mean, std = batch["latent_mean"], batch["latent_std"]  # (B, C, H/f, W/f)
        else:
            mean, std = self.encode_for_cache(batch["pixel_values"])
        low = (
            batch["low_res"] if "low_res" in batch else degrade(batch["pixel_values"], k)
        )  # (B, 3, H/k, W/k)
        side = mean.shape[-1] * f
        if tuple(mean.shape[-2:]) != (side // f, side // f) or side < crop:
            raise DataError(
                f"sr.crop={crop}: training images must be square and at least the crop, got "
                f"{tuple(mean.shape[-2:])} latents (x{f} pixels)"
            )
        step = crop_step(k, f)
        positions = (side - crop) // step + 1
        offsets = (torch.randint(0, positions, (mean.shape[0], 2), generator=generator) * step).tolist()
        out = {
            key: v
            for key, v in batch.items()
            if key not in ("latent_mean", "latent_std", "low_res", "pixel_values")
        }
        parts: dict[str, list[torch.Tensor]] = {"latent_mean": [], "latent_std": [], "low_res": []}
        if "pixel_values" in batch:
            parts["pixel_values"] = []
        for i, (top, left) in enumerate(offsets):  # output pixels, multiples of lcm(f, k)
            parts["latent_mean"].append(
                mean[i, :, top // f : (top + crop) // f, left // f : (left + crop) // f]
            )
            parts["latent_std"].append(
                std[i, :, top // f : (top + crop) // f, left // f : (left + crop) // f]
            )
            parts["low_res"].append(low[i, :, top // k : (top + crop) // k, left // k : (left + crop) // k])
            if "pixel_values" in parts:
                parts["pixel_values"].append(
                    batch["pixel_values"][i, :, top : top + crop, left : left + crop]
                )
        out.update({key: torch.stack(v) for key, v in parts.items()})
        return out

    def loss(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.sr.crop is not None:
            batch = self.crop_batch(batch, generator)
        return super().loss(batch, generator)

    def conditioning(
        self, batch: dict[str, Any], latent_hw: tuple[int, int], generator: torch.Generator
    ) -> dict:
        if "low_res" in batch:
            low = batch["low_res"].float()
        else:
            low = degrade(batch["pixel_values"], self.cfg.sr.factor)
        b = low.shape[0]
        level = torch.randint(0, self.cfg.sr.max_noise_level + 1, (b,), generator=generator)
        cond = low_res_condition(low, latent_hw, level, generator, self.low_res_scale)  # (B, 3 s^2, h, w)
        return {"noise_level": level.to(self.device), "low_res": cond.to(self.device)}

    def unet_input(self, noisy: torch.Tensor, extra: dict) -> torch.Tensor:
        return sr_unet_input(noisy, extra["low_res"])

    def preview_kwargs(self) -> dict[str, Any]:
        # Upscale a smooth random pattern: previews show that the stage runs, FID comes from rsgen.eval.
        side = self.cfg.data.image_size // self.cfg.sr.factor
        g = torch.Generator().manual_seed(0)
        low = torch.nn.functional.interpolate(
            torch.rand((1, 3, 4, 4), generator=g) * 2 - 1,
            size=(side, side),
            mode="bicubic",
            align_corners=False,
        ).clamp(-1, 1)
        return {"low_res": low, "height": self.cfg.data.image_size, "width": self.cfg.data.image_size}


class ControlNetTask(DiffusionTask):
    """``controlnet``: trains a ControlNet built from the frozen base model's UNet on one condition type."""

    mode = "controlnet"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        if not _component(cfg.init_from, "unet"):
            raise ConfigError(
                f"mode=controlnet: init_from={cfg.init_from!r} must be a trained rsgen model folder"
            )
        from rsgen.conditions import condition_type

        self.condition = condition_type(cfg.controlnet.condition)
        super().__init__(cfg, device)
        self.unet.requires_grad_(False)
        self.metadata_embedding.requires_grad_(False)
        self.controlnet = controlnet_from_unet(self.unet, vae_scale_factor(self.vae)).to(device)
        self.controlnet.requires_grad_(True)
        self.components["controlnet"] = self.controlnet
        self.trainable = {"controlnet": self.controlnet}
        self.preview_conditions: torch.Tensor | None = None  # (k, 3, S, S) uint8, from the first batch

    def _build_denoiser(self, text_dim: int) -> tuple[nn.Module, MetadataEmbedding]:
        src = str(self.cfg.init_from)
        return load_unet(src, text_dim), MetadataEmbedding.from_pretrained(
            Path(src) / "metadata_embedding", local_files_only=True
        )

    def train(self, mode: bool = True) -> None:
        super().train(mode)
        self.unet.eval()
        self.metadata_embedding.eval()

    def condition_images(self, batch: dict[str, Any]) -> torch.Tensor:
        """Condition images (B, 3, S, S) uint8 for the batch: drawn from the image (canny, lineart, shuffle)
        or read from the path in the manifest record's ``conditions``."""
        from rsgen.conditions import condition_to_tensor, make_condition

        pixels = batch["pixel_values"]  # (B, 3, S, S) in [-1, 1]
        size = tuple(pixels.shape[-2:])
        records = getattr(self.dataset, "records", None)
        out = []
        for j, idx in enumerate(batch["index"].tolist()):
            rec = records[idx] if records is not None else {}
            path = (rec.get("conditions") or {}).get(self.condition.name)
            options = dict(self.cfg.controlnet.condition_options)
            if path:
                grid = self._grid(rec, size)  # None for a plain image: the condition is on its pixel grid
                arr = make_condition(
                    self.condition.name,
                    self._resolve(path),
                    size=None if grid is not None else size,
                    georef=grid,
                    **options,
                )
            elif self.condition.source == "image":
                rgb = ((pixels[j].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
                arr = make_condition(self.condition.name, rgb, size=size, **options)
            else:
                raise DataError(
                    f"ControlNet condition {self.condition.name!r} is read from files: manifest record "
                    f"{rec.get('id', idx)!r} has no conditions.{self.condition.name} path"
                )
            out.append((condition_to_tensor(arr) * 255).round().to(torch.uint8))
        return torch.stack(out)  # (B, 3, S, S)

    def _resolve(self, path: str) -> str:
        p = Path(path)
        root = getattr(self.dataset, "root", None)
        return str(p if p.is_absolute() or root is None else Path(root) / p)

    def _grid(self, rec: dict[str, Any], size: tuple[int, int]) -> Any:
        """The output grid of the record's image resized to ``size``; None when the image has no CRS (a plain
        PNG, e.g. procedural scenes: its condition files share its pixel grid and are only resized)."""
        from rsgen.errors import GeoTiffError
        from rsgen.io import GeoReference

        image = Path(self._resolve(rec["path"]))
        try:
            grid = GeoReference.from_raster(image)
        except GeoTiffError:
            return None
        if rec.get("window"):
            grid = grid.window(*rec["window"])
        return grid.resized(size[1], size[0])

    def cache_extras(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"condition": self.condition_images(batch)}

    def conditioning(
        self, batch: dict[str, Any], latent_hw: tuple[int, int], generator: torch.Generator
    ) -> dict:
        cond = batch["condition"] if "condition" in batch else self.condition_images(batch)
        if self.preview_conditions is None:  # fixed conditions for the sample previews
            k = len(self.cfg.sample_prompts)
            self.preview_conditions = cond[torch.arange(k) % len(cond)].detach().cpu()  # (k, 3, S, S) uint8
        return {"condition": cond.to(self.device).float() / 255.0}

    def controls(self, extra: dict) -> tuple[list[ControlNetModel], list[torch.Tensor]]:
        return [self.controlnet], [extra["condition"]]

    def preview_kwargs(self) -> dict[str, Any]:
        from rsgen.pipelines.pipeline import ControlInput

        image = self.preview_conditions.to(self.device).float() / 255.0  # (k, 3, S, S) in [0, 1]
        return {"controls": [ControlInput(image=image, controlnet=self.controlnet, kind=self.condition.name)]}

    def preview(self, path: Path, generator_seed: int) -> Path | None:
        """Sample grid: the conditions of the first training batch above the images generated from them."""
        if self.preview_conditions is None:
            return None
        images = self.preview_images(generator_seed)  # (k, 3, S, S) in [-1, 1]
        if images is None:
            return None
        conditions = self.preview_conditions.float() / 127.5 - 1  # (k, 3, S, S)
        return _write_grid(path, torch.cat([conditions, images.cpu()]), nrow=len(images))


def _write_grid(path: Path, images: torch.Tensor, nrow: int) -> Path:
    """Save images (N, 3, H, W) in [-1, 1] as one PNG grid."""
    from torchvision.utils import make_grid

    from rsgen.io import write_png

    grid = make_grid(((images.float().cpu() + 1) / 2).clamp(0, 1), nrow=nrow, padding=2)  # (3, H', W')
    write_png(path, (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return path


TASKS: dict[str, type[TrainTask]] = {
    "vae": VAETask,
    "base": DiffusionTask,
    "controlnet": ControlNetTask,
    "sr": SuperResolutionTask,
}


def make_task(cfg: TrainConfig, device: torch.device) -> TrainTask:
    return TASKS[cfg.mode](cfg, device)


__all__ = [
    "TASKS",
    "encode_captions",
    "ControlNetTask",
    "DiffusionTask",
    "SuperResolutionTask",
    "TrainTask",
    "VAETask",
    "make_task",
]
