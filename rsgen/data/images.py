"""Decoding one image of a data set, as a manifest record names it: a file (JPEG / PNG / TIFF / GeoTIFF),
an optional pixel window, optional band selection, an optional GSD resampling factor.

Curation and :class:`~rsgen.data.dataset.ImageCaptionDataset` both call :func:`load_image`, so the pixels a
model trains on are exactly the pixels curation checked. Every failure is a :class:`~rsgen.errors.DataError`
whose ``reason`` names the drop reason counted by curation.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsgen.data.resampling import coarsen
from rsgen.errors import DataError

TIFF_SUFFIXES = (".tif", ".tiff", ".gtiff")


class _QuietTiffDirectory(logging.Filter):
    """Drops GDAL's per-open note on TIFFs whose ExtraSamples tag is incomplete (harmless; the Landsat
    composites here trigger it on every window read)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "ExtraSamples" not in record.getMessage()


logging.getLogger("rasterio._env").addFilter(_QuietTiffDirectory())
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", *TIFF_SUFFIXES)


class SampleError(DataError):
    """A sample that cannot be used; ``reason`` is a short key counted by curation (``corrupt``, ``missing``,
    ``blank``, ``mostly_nodata``, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class LoadedImage:
    """Decoded pixels ready for a model: ``array`` (H, W, 3) uint8 and a validity mask (H, W) bool."""

    array: np.ndarray  # (H, W, 3) uint8
    valid: np.ndarray  # (H, W) bool, False where the source had nodata
    source_dtype: str
    source_channels: int
    source_size: tuple[int, int]  # (width, height) before GSD resampling

    @property
    def valid_fraction(self) -> float:
        return float(self.valid.mean()) if self.valid.size else 0.0


def load_image(
    path: str | Path,
    window: Sequence[int] | None = None,
    bands: Sequence[int] | None = None,
    gsd_factor: float = 1.0,
    data: bytes | None = None,
) -> LoadedImage:
    """Decode ``path`` (or ``data``, its bytes) to RGB uint8.

    window: ``[col_off, row_off, width, height]`` in source pixels. bands: 1-based band indexes giving R, G, B
    (one band gives a grey image); default: the first three bands (or the only one). gsd_factor: > 1 makes the
    same ground ``factor`` times coarser (``round(size / factor)`` pixels) with the shared rule,
    :func:`rsgen.data.resampling.coarsen`.
    Non-uint8 data are stretched to uint8 between the 2nd and 98th percentile of the valid pixels per band.
    """
    path = Path(path)
    if data is None and not path.is_file():
        raise SampleError("missing", f"{path}: no such file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        bands_hwc, valid, dtype, count = _read_raster(path, window, bands, data)
    else:
        bands_hwc, valid, dtype, count = _read_pil(path, window, bands, data)
    rgb = _to_uint8_rgb(bands_hwc, valid)
    source_size = (rgb.shape[1], rgb.shape[0])
    if gsd_factor != 1.0:
        rgb, valid = coarsen(rgb, valid, gsd_factor)
    if not rgb.flags.writeable:
        rgb = rgb.copy()
    rgb[~valid] = 0
    return LoadedImage(rgb, valid, dtype, count, source_size)


def _check_pixels(path: Path, width: int, height: int) -> None:
    """A region to decode above the input pixel limit is a skipped sample (``too_large``), not a memory spike."""
    from rsgen.errors import DataError
    from rsgen.safety import check_input_pixels

    try:
        check_input_pixels(path, width, height)
    except DataError as e:
        raise SampleError("too_large", str(e)) from None


def _read_pil(
    path: Path, window: Sequence[int] | None, bands: Sequence[int] | None, data: bytes | None
) -> tuple[np.ndarray, np.ndarray, str, int]:
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            _check_pixels(path, *im.size)  # from the header, before any pixel is decoded
            im.load()
            if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGBA" if im.mode in ("P", "PA", "RGBA") else "RGB")
            if window is not None:
                c, r, w, h = (int(v) for v in window)
                if c < 0 or r < 0 or c + w > im.width or r + h > im.height:
                    raise SampleError(
                        "bad_window", f"{path}: window {list(window)} outside {im.width}x{im.height}"
                    )
                im = im.crop((c, r, c + w, r + h))
            arr = np.asarray(im)
    except SampleError:
        raise
    except Image.DecompressionBombError as e:
        raise SampleError("too_large", f"{path}: {e}") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise SampleError("corrupt", f"{path}: cannot decode image ({e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    valid = np.ones(arr.shape[:2], dtype=bool)
    count = arr.shape[2]
    if count == 4 and bands is None:  # RGBA: alpha is a validity mask, not a band
        valid = arr[:, :, 3] > 0
        arr, count = arr[:, :, :3], 3
    return _select(arr, bands, path), valid, str(arr.dtype), count


def _read_raster(
    path: Path, window: Sequence[int] | None, bands: Sequence[int] | None, data: bytes | None
) -> tuple[np.ndarray, np.ndarray, str, int]:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    mem = MemoryFile(data) if data is not None else None
    try:
        with mem.open() if mem is not None else rasterio.open(path) as ds:
            count = ds.count
            idx = list(bands) if bands else ([1, 2, 3] if count >= 3 else [1])
            bad = [b for b in idx if not 1 <= b <= count]
            if bad:
                raise SampleError("bad_bands", f"{path}: bands {bad} not in 1..{count}")
            win = None
            if window is not None:
                c, r, w, h = (int(v) for v in window)
                if c < 0 or r < 0 or c + w > ds.width or r + h > ds.height:
                    raise SampleError(
                        "bad_window", f"{path}: window {list(window)} outside {ds.width}x{ds.height}"
                    )
                win = Window(c, r, w, h)
            _check_pixels(
                path, *((ds.width, ds.height) if win is None else (int(win.width), int(win.height)))
            )
            arr = ds.read(idx, window=win)  # (C, H, W)
            masks = ds.read_masks(idx, window=win)  # (C, H, W) 0 = nodata
            dtype = ds.dtypes[idx[0] - 1]
    except SampleError:
        raise
    except (RasterioError, OSError, ValueError) as e:
        raise SampleError("corrupt", f"{path}: cannot read raster ({str(e).splitlines()[0]})") from None
    finally:
        if mem is not None:
            mem.close()
    valid = masks.min(axis=0) > 0
    if np.issubdtype(arr.dtype, np.floating):
        valid &= np.isfinite(arr).all(axis=0)
    return np.moveaxis(arr, 0, -1), valid, str(dtype), count


def _select(arr: np.ndarray, bands: Sequence[int] | None, path: Path) -> np.ndarray:
    count = arr.shape[2]
    if bands:
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise SampleError("bad_bands", f"{path}: bands {bad} not in 1..{count}")
        return arr[:, :, [b - 1 for b in bands]]
    return arr[:, :, :3] if count >= 3 else arr[:, :, :1]


def _to_uint8_rgb(arr: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, C) any dtype -> (H, W, 3) uint8; C = 1 becomes grey."""
    if arr.dtype != np.uint8:
        out = np.zeros(arr.shape, dtype=np.uint8)
        for c in range(arr.shape[2]):
            band = arr[:, :, c].astype(np.float64)
            vals = band[valid & np.isfinite(band)]
            if vals.size == 0:
                continue
            lo, hi = np.percentile(vals, [2, 98])
            scale = 255.0 / (hi - lo) if hi > lo else 0.0
            out[:, :, c] = np.clip((np.nan_to_num(band) - lo) * scale, 0, 255).round().astype(np.uint8)
        arr = out
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 2:
        arr = np.concatenate([arr, arr[:, :, :1]], axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
