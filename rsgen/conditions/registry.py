"""The registry of condition types and the one entry point that makes any of them.

Makers register themselves with :func:`register_condition`; :func:`make_condition` loads the source (image,
raster on a grid, or GeoJSON geometries in the grid's CRS) and calls the maker, always returning (H, W, 3) uint8.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.conditions.sources import (
    check_size,
    load_geometries,
    load_rgb,
    load_values,
    output_grid,
    split_band,
)
from rsgen.errors import ConfigError, DataError

logger = logging.getLogger("rsgen.conditions")

SourceKind = str  # "image" | "raster" | "vector"


@dataclass(frozen=True)
class ConditionType:
    """One registered condition: what it reads, the function that draws it, and weight files it needs."""

    name: str
    source: SourceKind
    make: Callable[..., np.ndarray]
    help: str
    resampling: str = "bilinear"  # how a raster source is resampled onto the grid
    weights: tuple[str, ...] = ()  # files that must exist in the annotators folder


CONDITION_TYPES: dict[str, ConditionType] = {}


def register_condition(
    name: str, source: SourceKind, help: str, *, resampling: str = "bilinear", weights: tuple[str, ...] = ()
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator adding a maker to :data:`CONDITION_TYPES` (also for users' own condition types)."""

    def add(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        CONDITION_TYPES[name] = ConditionType(name, source, fn, help, resampling, weights)
        return fn

    return add


def known_conditions() -> list[str]:
    """Names of all registered condition types, sorted."""
    return sorted(CONDITION_TYPES)


def condition_type(kind: str) -> ConditionType:
    """The registered type ``kind``, or a ConfigError listing the known ones."""
    try:
        return CONDITION_TYPES[kind]
    except KeyError:
        raise ConfigError(
            f"unknown condition type {kind!r}; known types: {', '.join(known_conditions())}"
        ) from None


def make_condition(
    kind: str,
    source: Any,
    *,
    size: tuple[int, int] | None = None,
    georef: Any = None,
    band: int | Sequence[int] | None = None,
    **options: Any,
) -> np.ndarray:
    """Make condition ``kind`` from ``source`` as an (H, W, 3) uint8 image.

    ``source``: an RGB image (numpy (H, W[, C]), PIL, torch) or a path to an image, a GeoTIFF (``path.tif:band``
    selects bands) or a GeoJSON (or an already-loaded GeoJSON dict). ``georef``: the output grid
    (``rsgen.io.GeoReference``, any object with crs / transform / width / height, or a raster path); rasters
    are reprojected onto it and GeoJSON is rasterized on it. ``size`` (H, W) defaults to the grid's size, else
    the source's. ``options`` go to the type's maker (see each maker's docstring).
    """
    ctype = condition_type(kind)
    if isinstance(source, (str, os.PathLike)):
        source, path_band = split_band(str(source))
        band = band if band is not None else path_band
        if not Path(source).exists():
            raise DataError(f"condition {kind!r}: file {source} does not exist")
    if size is not None:
        size = check_size(size)
    grid = output_grid(georef, size) if georef is not None else None
    if grid is not None:
        size = (grid.height, grid.width)
    if ctype.source == "vector":
        if grid is None:
            raise ConfigError(
                f"condition {kind!r}: a GeoJSON source needs georef= (the grid to rasterize onto)"
            )
        out = ctype.make(load_geometries(source, grid, options.pop("crs", None)), grid, **options)
        if not out.any():
            logger.warning(
                "condition %r: no feature of %s falls on the output grid; the map is empty",
                kind,
                source if isinstance(source, (str, Path)) else "the GeoJSON",
            )
    elif ctype.source == "raster":
        values = load_values(source, band, grid, size, ctype.resampling, options.pop("nodata", None))
        out = ctype.make(values, **options)
    else:
        rgb = load_rgb(source, band, grid)
        out = ctype.make(rgb, size or rgb.shape[:2], **options)
    if size is not None and out.shape[:2] != tuple(size):
        raise RuntimeError(f"maker for {kind!r} returned shape {out.shape}, expected {size}")
    return np.ascontiguousarray(out, dtype=np.uint8)


def condition_to_tensor(arr: np.ndarray) -> Any:
    """(H, W, 3) or (H, W) uint8 condition -> torch float (3, H, W) in [0, 1], the ControlNet input format."""
    import torch

    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise DataError(f"condition image must be uint8 (from make_condition), got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"condition image must be (H, W, 3), got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)  # (3, H, W)
