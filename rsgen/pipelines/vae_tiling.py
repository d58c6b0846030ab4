"""VAE decoding tile by tile: each tile is decoded with a halo of neighbouring latents for context and cropped,
so memory is bounded by one tile and a scene can be written block by block. One tile covering the grid is
plain decoding."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from diffusers import AutoencoderKL

from rsgen.pipelines.windows import Window, decode_tiles


def latent_factor(vae: AutoencoderKL) -> int:
    """Pixels per latent cell along one side (2 ** number of down-sampling blocks)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def unscale_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """Diffusion latents -> VAE latents (undo ``scaling_factor`` and ``shift_factor``)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / vae.config.scaling_factor + shift


def scale_latents(vae: AutoencoderKL, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> diffusion latents (the inverse of :func:`unscale_latents`)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


@torch.no_grad()
def iter_decoded_tiles(
    vae: AutoencoderKL,
    read_latents: Callable[[Window], torch.Tensor],
    grid_hw: tuple[int, int],
    tile: int | None = None,
    halo: int = 4,
    *,
    align: int = 1,
    fix: Callable[[Window, torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[Window, torch.Tensor]]:
    """Yield (pixel window, image (B, 3, th, tw) in [-1, 1]) covering the grid; ``read_latents(window)`` gives
    diffusion latents (B, C, h, w) of a latent-grid window. ``tile=None`` decodes everything at once.
    ``fix(context pixel window, pixels)`` corrects each decoded context before its core is cut out (e.g. a
    super-resolution stage's colour fix, which then sees the halo too); ``align``: see :func:`decode_tiles`."""
    height, width = grid_hw
    f = latent_factor(vae)
    for context, core in decode_tiles(height, width, tile or max(height, width), halo, align):
        z = unscale_latents(vae, read_latents(context).to(vae.device, vae.dtype))  # (B, C, hc, wc)
        pixels = vae.decode(z).sample.float()  # (B, 3, hc * f, wc * f)
        if fix is not None:
            pixels = fix(context.scaled(f), pixels)
        local = core.shifted(-context.top, -context.left).scaled(f)
        rows, cols = local.slices()
        yield core.scaled(f), pixels[:, :, rows, cols]


def decode_tiled(
    vae: AutoencoderKL, latents: torch.Tensor, tile: int | None = None, halo: int = 4
) -> torch.Tensor:
    """Decode latents (B, C, h, w) to images (B, 3, h * f, w * f) in [-1, 1], tile by tile."""
    b, _, h, w = latents.shape
    f = latent_factor(vae)
    out = torch.empty((b, 3, h * f, w * f), dtype=torch.float32)
    for win, pixels in iter_decoded_tiles(
        vae, lambda win: latents[:, :, win.slices()[0], win.slices()[1]], (h, w), tile, halo
    ):
        rows, cols = win.slices()
        out[:, :, rows, cols] = pixels.cpu()
    return out


@torch.no_grad()
def encode_image(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> diffusion latents (B, C, H/f, W/f) (the posterior mean, no sampling)."""
    z = vae.encode(pixels.to(vae.device, vae.dtype)).latent_dist.mean
    return scale_latents(vae, z)
