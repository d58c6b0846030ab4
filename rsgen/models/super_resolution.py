"""Super-resolution stage inputs, shared by the model builder, training and sampling: a UNet whose input is
the noisy latent concatenated with the noise-augmented low-resolution RGB image *folded* onto the latent grid,
with the augmentation level fed through ``MetadataEmbedding(noise_level=...)``. The metadata given to the
stage carries the GSD of its *output*.

Folding keeps every input pixel for any upscaling factor and VAE factor: the low-res image (side ``n``) is
resized to ``latent side x s`` with ``s = max(1, ceil(n / latent side)) = max(1, ceil(vae_factor / factor))``
and ``pixel_unshuffle(s)`` turns it into ``3 s^2`` channels on the latent grid. For an x4 stage on a
factor-4 VAE (diffusers' x4 upscaler layout) ``s = 1``: 3 channels, the image as it is. For an x2 stage on
the same VAE ``s = 2``: 12 channels, where resizing to the latent grid would have dropped half the input's
resolution. The factor is stored in the UNet's config (``_sr_factor``) so a saved stage describes itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from rsgen.data.resampling import show_tensor
from rsgen.errors import ConfigError
from rsgen.metadata import Metadata

#: UNet config keys that mark a super-resolution UNet (written by :func:`mark_super_resolution`). Private
#: (leading "_") so diffusers saves and reloads them without warning about unknown ``__init__`` arguments.
SR_FACTOR_KEY = "_sr_factor"
LOW_RES_CHANNELS_KEY = "_low_res_channels"


@dataclass
class SuperResolutionConfig:
    """factor: output side / input side. max_noise_level: augmentation levels drawn in [0, max] when training
    (DDPM timesteps of :func:`low_res_noise_scheduler`). sample_noise_level: the level used when sampling.
    crop: train on random ``crop x crop`` output crops (input crops of ``crop / factor``) of each
    ``data.image_size`` image, cut from the cached latents and low-res input (None: the whole image)."""

    factor: int = 4
    max_noise_level: int = 350
    sample_noise_level: int = 20
    crop: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.factor, int) or self.factor < 2:
            raise ConfigError(f"sr.factor={self.factor!r}: expected an integer upscaling factor >= 2")
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 1):
            raise ConfigError(
                f"sr.crop={self.crop!r}: expected a positive output crop side in pixels or null"
            )


def low_res_scale(factor: int, vae_factor: int) -> int:
    """s: the low-res image is resized to (latent grid x s) and folded with ``pixel_unshuffle(s)``.
    Its side is ``latent side * vae_factor / factor``, so ``s = ceil(vae_factor / factor)`` keeps every pixel."""
    if factor < 1 or vae_factor < 1:
        raise ConfigError(f"super-resolution factor {factor} and VAE factor {vae_factor} must be positive")
    return max(1, math.ceil(vae_factor / factor))


def low_res_channels(factor: int, vae_factor: int) -> int:
    """Channels the low-res image adds to the UNet input: ``3 s^2`` (3 for x4 on a factor-4 VAE)."""
    return 3 * low_res_scale(factor, vae_factor) ** 2


def crop_step(factor: int, vae_factor: int) -> int:
    """Output crops start on multiples of this many pixels: whole latent cells and whole low-res pixels."""
    return math.lcm(factor, vae_factor)


def mark_super_resolution(unet: torch.nn.Module, factor: int, vae_factor: int) -> None:
    """Record the stage's factor (and low-res channel count) in the UNet's config, saved with it."""
    unet.register_to_config(
        **{SR_FACTOR_KEY: int(factor), LOW_RES_CHANNELS_KEY: low_res_channels(factor, vae_factor)}
    )


def sr_factor_of(unet: torch.nn.Module) -> int | None:
    """The upscaling factor stored in a UNet's config (None: not a super-resolution UNet)."""
    value = unet.config.get(SR_FACTOR_KEY)
    return int(value) if value else None


def low_res_noise_scheduler() -> DDPMScheduler:
    """The fixed schedule that noises the low-res input (the one diffusers' x4 upscaler uses)."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)


def degrade(pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """Low-res training input from a high-res image by the shared resampling rule (the triangle filter of
    :mod:`rsgen.data.resampling`, as curation's GSD copies): (B, 3, H, W) -> (B, 3, H/f, W/f)."""
    h, w = pixels.shape[-2:]
    return show_tensor(pixels, h // factor, w // factor)


def color_fix(images: torch.Tensor, low_res: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Keep the low-res input's low frequencies in a stage's output (the "colour fix" of StableSR-style
    upscalers, done as iterative back-projection): ``images`` (B, 3, H, W) is corrected ``iterations`` times by
    the bicubic enlargement of what its area-downsampled copy misses of ``low_res`` (B, 3, h, w), same value
    range. The output then shrinks back to the input (colour, brightness, layout) and the model contributes only
    the finer detail; one iteration swaps the output's own low band for the input's. -> (B, 3, H, W).
    The shrink is an area mean, not the shared triangle filter: it stays inside each low-res pixel's footprint,
    so a scene fixed tile by tile shows no seams."""
    size, small = tuple(images.shape[-2:]), tuple(low_res.shape[-2:])
    low_res = low_res.to(images)
    for _ in range(iterations):
        missing = low_res - F.interpolate(images, size=small, mode="area")  # (B, 3, h, w)
        images = images + F.interpolate(missing, size=size, mode="bicubic", align_corners=False)
    return images


def fold_low_res(image: torch.Tensor, latent_hw: tuple[int, int], scale: int) -> torch.Tensor:
    """(B, 3, h0, w0) -> (B, 3 s^2, h, w): resized to (h s, w s) (bicubic; not at all when it already is)
    and folded onto the latent grid with ``pixel_unshuffle(s)``."""
    target = (latent_hw[0] * scale, latent_hw[1] * scale)
    if tuple(image.shape[-2:]) != target:
        image = F.interpolate(image, size=target, mode="bicubic", align_corners=False)  # (B, 3, h s, w s)
    return F.pixel_unshuffle(image, scale) if scale > 1 else image  # (B, 3 s^2, h, w)


def unfold_low_res(cond: torch.Tensor, scale: int) -> torch.Tensor:
    """Inverse of the fold: (B, 3 s^2, h, w) -> (B, 3, h s, w s)."""
    return F.pixel_shuffle(cond, scale) if scale > 1 else cond


def low_res_condition(
    low_res: torch.Tensor,
    latent_hw: tuple[int, int],
    noise_level: torch.Tensor,
    generator: torch.Generator | None = None,
    scale: int = 1,
) -> torch.Tensor:
    """Noise-augment the low-res image at ``noise_level`` (B,) and fold it onto the latent grid:
    (B, 3, h0, w0) in [-1, 1] -> (B, 3 s^2, h, w), ``s = scale`` (see :func:`low_res_scale`)."""
    sched = low_res_noise_scheduler()
    noise = torch.randn(low_res.shape, generator=generator, dtype=torch.float32).to(
        low_res.device, low_res.dtype
    )
    noisy = sched.add_noise(low_res, noise, noise_level.long().to(low_res.device))  # (B, 3, h0, w0)
    return fold_low_res(noisy, latent_hw, scale)  # (B, 3 s^2, h, w)


def sr_unet_input(noisy_latents: torch.Tensor, low_res_cond: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) + (B, 3 s^2, h, w) -> (B, C + 3 s^2, h, w): what the SR UNet sees."""
    return torch.cat([noisy_latents, low_res_cond.to(noisy_latents.dtype)], dim=1)


def output_metadata(meta: Metadata | None, factor: int) -> Metadata | None:
    """Metadata of an SR stage's output: the input's with GSD divided by the upscaling factor."""
    if meta is None or meta.gsd_m is None:
        return meta
    return meta.replace(gsd_m=meta.gsd_m / factor)


__all__ = [
    "color_fix",
    "LOW_RES_CHANNELS_KEY",
    "SR_FACTOR_KEY",
    "SuperResolutionConfig",
    "crop_step",
    "degrade",
    "fold_low_res",
    "low_res_channels",
    "low_res_condition",
    "low_res_noise_scheduler",
    "low_res_scale",
    "mark_super_resolution",
    "output_metadata",
    "sr_factor_of",
    "sr_unet_input",
    "unfold_low_res",
]
