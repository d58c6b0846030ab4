"""Remote-sensing conditions: heights from DSM / height-above-ground rasters, colour-coded segmentation maps,
and building footprints and roads rasterized from GeoJSON onto the output grid."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from rsgen.conditions.registry import register_condition
from rsgen.conditions.sources import pixel_size_m
from rsgen.errors import ConfigError, DataError

logger = logging.getLogger("rsgen.conditions")


def _grey(values01: np.ndarray) -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8 grey."""
    return np.repeat((np.clip(values01, 0, 1) * 255 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)


@register_condition("height", "raster", "heights (DSM / height above ground) scaled from a metres range")
def height(
    values: np.ndarray, *, range_m: tuple[float, float] | str = (0.0, 50.0), nodata_value: float = 0.0
) -> np.ndarray:
    """Grey height map: ``range_m`` (low, high) metres maps to 0..255 (clipped); ``"auto"`` uses the tile's
    min and max (logged). Nodata and off-raster pixels get ``nodata_value`` (in [0, 1])."""
    if values.shape[0] != 1:
        raise ConfigError(f"height: the source has {values.shape[0]} bands; choose one (e.g. dsm.tif:1)")
    h = values[0]  # (H, W) metres
    finite = np.isfinite(h)
    if isinstance(range_m, str):
        if range_m != "auto" or not finite.any():
            raise ConfigError(
                f"height: range_m {range_m!r} must be (low, high) metres or 'auto' with valid pixels"
            )
        range_m = (float(h[finite].min()), float(h[finite].max()))
        logger.info("height: auto range %.2f..%.2f m", *range_m)
    low, high = (float(v) for v in range_m)
    if not high > low:
        raise ConfigError(f"height: range_m {range_m!r} must have low < high (metres)")
    return _grey(np.where(finite, (h - low) / (high - low), nodata_value))


def _voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: class 0 black, then well separated colours from the bits of the index."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


SEGMENTATION_PALETTE = _voc_palette()  # (256, 3) uint8; row k is the colour of class k


@register_condition(
    "segmentation", "raster", "class-index map coloured with a fixed palette", resampling="nearest"
)
def segmentation(
    values: np.ndarray, *, palette: np.ndarray | None = None, nodata_class: int = 0
) -> np.ndarray:
    """Class indexes 0..255 -> :data:`SEGMENTATION_PALETTE` colours; nodata becomes ``nodata_class``.
    A 3-band source is taken as an already colour-coded map and passed through."""
    if values.shape[0] == 3:
        return np.nan_to_num(values, nan=0).clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
    if values.shape[0] != 1:
        raise ConfigError(f"segmentation: the source has {values.shape[0]} bands; choose the class band")
    pal = SEGMENTATION_PALETTE if palette is None else np.asarray(palette, np.uint8)
    cls = np.where(np.isfinite(values[0]), values[0], nodata_class)
    bad = (cls < 0) | (cls >= len(pal)) | (cls != np.round(cls))
    if bad.any():
        raise DataError(f"segmentation: value {cls[bad].flat[0]:g} is not a class index 0..{len(pal) - 1}")
    return pal[cls.astype(np.int64)]


@register_condition("footprints", "vector", "building footprints rasterized from GeoJSON polygons")
def footprints(geoms: list[tuple[dict, dict]], grid: Any, *, all_touched: bool = False) -> np.ndarray:
    """White filled footprints on black; ``all_touched`` marks every pixel a polygon touches."""
    from rasterio.features import rasterize

    mask = np.zeros((grid.height, grid.width), np.uint8)
    if geoms:
        mask = rasterize(
            [(g, 1) for g, _ in geoms],
            out_shape=mask.shape,
            transform=grid.transform,
            all_touched=all_touched,
            dtype="uint8",
        )
    return _grey(mask.astype(np.float64))


@register_condition("roads", "vector", "road lines from GeoJSON drawn with a width in metres")
def roads(
    geoms: list[tuple[dict, dict]], grid: Any, *, width_m: float = 8.0, width_property: str | None = "width"
) -> np.ndarray:
    """White roads on black: every pixel within half the road width (metres, per-feature ``width_property`` if
    set and present, else ``width_m``) of the line; a road narrower than a pixel is still one pixel wide."""
    from rasterio.features import rasterize
    from scipy.ndimage import distance_transform_edt

    mask = np.zeros((grid.height, grid.width), bool)
    by_width: dict[float, list[dict]] = {}
    for g, props in geoms:
        w = props.get(width_property) if width_property else None
        w = float(w) if isinstance(w, (int, float)) and w > 0 else float(width_m)
        by_width.setdefault(w, []).append(g)
    sampling = pixel_size_m(grid)  # (dy, dx) metres
    for w, group in by_width.items():
        centre = rasterize(
            [(g, 1) for g in group],
            out_shape=mask.shape,
            transform=grid.transform,
            all_touched=True,
            dtype="uint8",
        ).astype(bool)
        if centre.any():
            mask |= distance_transform_edt(~centre, sampling=sampling) <= w / 2
    return _grey(mask.astype(np.float64))
