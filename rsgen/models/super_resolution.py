"""Super-resolution stage inputs, shared by training and sampling: a UNet whose input is the noisy latent
concatenated with the low-resolution RGB image resized to the latent grid (as diffusers' x4 upscaler does),
with the low-res image noise-augmented and the augmentation level fed through
``MetadataEmbedding(noise_level=...)``. The metadata given to the stage carries the GSD of its *output*."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from rsgen.metadata import Metadata

#: Channels the low-res image adds to the UNet input.
LOW_RES_CHANNELS = 3


@dataclass
class SuperResolutionConfig:
    """factor: output side / input side. max_noise_level: augmentation levels drawn in [0, max] when training
    (DDPM timesteps of :func:`low_res_noise_scheduler`). sample_noise_level: the level used when sampling."""

    factor: int = 4
    max_noise_level: int = 350
    sample_noise_level: int = 20


def low_res_noise_scheduler() -> DDPMScheduler:
    """The fixed schedule that noises the low-res input (the one diffusers' x4 upscaler uses)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)


def degrade(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """Low-res training input from a high-res image: area downsampling, (B, 3, H, W) -> (B, 3, H/f, W/f)."""
    return F.interpolate(pixels, scale_factor=1 / factor, mode="area")


def low_res_condition(
    low_res: torch.Tensor,
    latent_hw: tuple[int, int],
    noise_level: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise-augment the low-res image at ``noise_level`` (B,) and resize it to the latent grid:
    (B, 3, h0, w0) in [-1, 1] -> (B, 3, h, w)."""
    sched = low_res_noise_scheduler()
    noise = torch.randn(low_res.shape, generator=generator, dtype=torch.float32).to(
        low_res.device, low_res.dtype
    )
    noisy = sched.add_noise(low_res, noise, noise_level.long().to(low_res.device))
    if tuple(noisy.shape[-2:]) != tuple(latent_hw):
        noisy = F.interpolate(noisy, size=latent_hw, mode="bicubic", align_corners=False)
    return noisy  # (B, 3, h, w)


def sr_unet_input(noisy_latents: torch.Tensor, low_res_cond: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) + (B, 3, h, w) -> (B, C + 3, h, w): what the SR UNet sees."""
    return torch.cat([noisy_latents, low_res_cond.to(noisy_latents.dtype)], dim=1)


def output_metadata(meta: Metadata | None, factor: int) -> Metadata | None:
    """Metadata of an SR stage's output: the input's with GSD divided by the upscaling factor."""
    if meta is None or meta.gsd_m is None:
        return meta
    return meta.replace(gsd_m=meta.gsd_m / factor)


__all__ = [
    "LOW_RES_CHANNELS",
    "SuperResolutionConfig",
    "degrade",
    "low_res_condition",
    "low_res_noise_scheduler",
    "output_metadata",
    "sr_unet_input",
]
