"""Small fake images and GeoTIFFs for the data tests (generated here, never downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def textured(seed: int, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 image with structure at several scales, distinct per seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)).astype(np.int16)
    img += rng.integers(-20, 20, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def save_jpeg(path: Path, array: np.ndarray, quality: int = 95) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=quality)
    return path


def write_geotiff(
    path: Path,
    array: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    gsd: float = 10.0,
    nodata: float | None = None,
    origin: tuple[float, float] = (500000.0, 5200000.0),
) -> Path:
    """Write (C, H, W) ``array`` as a GeoTIFF (no CRS/transform when ``crs`` is None)."""
    import rasterio
    from rasterio.transform import from_origin

    c, h, w = array.shape
    profile = {"driver": "GTiff", "width": w, "height": h, "count": c, "dtype": str(array.dtype)}
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(origin[0], origin[1], gsd, gsd))
    if nodata is not None:
        profile["nodata"] = nodata
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(array)
    return path


def karpathy_json(path: Path, items: list[tuple[str, list[str], str]]) -> Path:
    images = [
        {"filename": f, "imgid": i, "split": s, "sentences": [{"raw": c, "tokens": c.split()} for c in caps]}
        for i, (f, caps, s) in enumerate(items)
    ]
    path.write_text(json.dumps({"images": images, "dataset": "test"}))
    return path
