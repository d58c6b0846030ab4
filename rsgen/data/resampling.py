"""The one resampling rule of rsgen: how an image is made coarser (a copy at a larger GSD) and how it is shown at
another pixel size. Curation's GSD copies, the training dataset and the GSD predictor's real references all use
these functions, so "a 20 m image" means the same pixels everywhere.

* **Coarsening** (:func:`coarsen`): a convolution with a triangle filter whose support grows with the factor
  (PIL's antialiased ``BILINEAR`` reduction, the same filter as ``torch.nn.functional.interpolate(...,
  antialias=True)``), nodata-weighted so that nodata pixels do not bleed into valid ones. A box average, the
  rule before 2026-11-26, keeps aliased detail: EuroSAT copies made with it at 20 m read as ~14 m to a predictor
  trained on real scenes, while the triangle filter's read as ~22 m. A real coarser sensor blurs more than a box
  (its MTF at Nyquist is well below a box's), so the antialiasing filter is the better stand-in.
* **Showing at a size** (:func:`show_at`): shrinking *is* coarsening (a 512 px window shown at 64 px is a GSD 8x
  coarser), so it uses the same triangle filter; enlarging uses bicubic (PIL). An enlarged image holds no finer
  detail than its source, so its *effective* GSD stays the source's. (Lanczos, used for shrinking before
  2026-11-26, keeps more detail than the triangle: a NAIP window shrunk to 40 m with it looked sharper than a
  EuroSAT image coarsened to 40 m, so "40 m" had two looks in one training set.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from rsgen.errors import DataError

if TYPE_CHECKING:
    import torch

# Recorded in latent-cache fingerprints: a cache built under another rule holds other pixels.
RESAMPLING_RULE = "coarsen=pil-triangle-nodata-weighted;show=triangle-down,bicubic-up"
COARSEN_FILTER = Image.Resampling.BILINEAR  # antialiased: the triangle's support scales with the factor
ENLARGE_FILTER = Image.Resampling.BICUBIC


def coarsened_size(width: int, height: int, factor: float) -> tuple[int, int]:
    """(width, height) of a copy ``factor`` times coarser, rounded to whole pixels (at least 1)."""
    if factor <= 0 or not math.isfinite(factor):
        raise DataError(f"gsd_factor={factor}: expected a positive number")
    return max(1, round(width / factor)), max(1, round(height / factor))


def true_gsd_factor(width: int, height: int, factor: float) -> float:
    """The exact factor :func:`coarsen` applies (sizes are rounded to whole pixels): the area-mean of both axes."""
    nw, nh = coarsened_size(width, height, factor)
    return math.sqrt((width / nw) * (height / nh))


def coarsen(rgb: np.ndarray, valid: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 and its (H, W) bool valid mask -> the same ground ``factor`` times coarser, and its valid
    mask (an output pixel is valid when most of its filter weight fell on valid pixels)."""
    h, w = rgb.shape[:2]
    size = coarsened_size(w, h, factor)
    weight = valid.astype(np.float32)  # (H, W)
    num = np.asarray(Image.fromarray(weight, mode="F").resize(size, COARSEN_FILTER))  # (h', w')
    chans = []
    for c in range(3):
        band = Image.fromarray(rgb[:, :, c].astype(np.float32) * weight, mode="F")
        chans.append(np.asarray(band.resize(size, COARSEN_FILTER)))
    out = np.stack(chans, axis=-1) / np.maximum(num, 1e-6)[:, :, None]  # (h', w', 3)
    return np.clip(out, 0, 255).round().astype(np.uint8), num >= 0.5


def show_at(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 resized to (height, width, C): the coarsening filter when shrinking either axis, else
    bicubic."""
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    resample = COARSEN_FILTER if h > height or w > width else ENLARGE_FILTER
    return np.asarray(Image.fromarray(array).resize((width, height), resample))


def coarsen_shown(rgb: np.ndarray, factor: float) -> np.ndarray:
    """(H, W, 3) uint8 as a ``factor`` times coarser copy shown again at (H, W): what the training dataset makes
    of a curated GSD copy of a fully valid image."""
    h, w = rgb.shape[:2]
    small, _ = coarsen(rgb, np.ones((h, w), bool), factor)
    return show_at(small, h, w)


def show_tensor(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The same rule on tensors ``(B, C, H, W)`` -> ``(B, C, height, width)``: the triangle filter (antialiased
    bilinear, as :func:`coarsen`) when shrinking either axis, bicubic when enlarging. What super-resolution
    stages are trained on (their low-res inputs), what their colour fix compares, and how what-if regrids."""
    import torch.nn.functional as F

    h, w = pixels.shape[-2:]
    if (h, w) == (height, width):
        return pixels
    if h > height or w > width:
        return F.interpolate(
            pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )
    return F.interpolate(pixels, size=(height, width), mode="bicubic", align_corners=False)


__all__ = [
    "COARSEN_FILTER",
    "RESAMPLING_RULE",
    "coarsen",
    "coarsen_shown",
    "coarsened_size",
    "show_at",
    "show_tensor",
    "true_gsd_factor",
]
