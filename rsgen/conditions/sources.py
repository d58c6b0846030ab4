"""Loading condition sources onto the output grid: images, GeoTIFF bands (reprojected with rasterio) and
GeoJSON geometries (reprojected from their CRS, EPSG:4326 by default, into the grid's CRS)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.errors import ConfigError, DataError, GeoTiffError

DEFAULT_VECTOR_CRS = (
    "EPSG:4326"  # GeoJSON (RFC 7946) coordinates are lon/lat unless a "crs" member says otherwise
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
BAND_RE = re.compile(r"^(.+):(\d+(?:,\d+)*)$")


def parse_band(text: str) -> int | tuple[int, ...]:
    """``"2"`` -> 2, ``"3,2,1"`` -> (3, 2, 1); band indexes are 1-based as in GDAL."""
    bands = tuple(int(b) for b in text.split(","))
    if any(b < 1 for b in bands):
        raise ConfigError(f"band {text!r}: band indexes are 1-based (expected 1 or more)")
    return bands[0] if len(bands) == 1 else bands


def split_band(path: str) -> tuple[str, int | tuple[int, ...] | None]:
    """``file.tif:2`` -> (``file.tif``, 2), unless a file literally named ``file.tif:2`` exists."""
    m = BAND_RE.match(path)
    if m is None or Path(path).exists():
        return path, None
    return m.group(1), parse_band(m.group(2))


@contextlib.contextmanager
def _quiet_rasterio() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning: a raster without CRS is handled (or refused) explicitly."""
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise ConfigError(f"size {tuple(size)!r}: expected (height, width) positive integers")
    return int(size[0]), int(size[1])


def output_grid(georef: Any, size: tuple[int, int] | None) -> Any:
    """The output grid as a GeoReference, resized to ``size`` (same footprint) when that differs."""
    from rsgen.io import GeoReference

    if isinstance(georef, (str, os.PathLike)):
        georef = GeoReference.from_raster(georef)
    elif not isinstance(georef, GeoReference):
        georef = GeoReference(georef.crs, georef.transform, int(georef.width), int(georef.height))
    if georef.crs is None:
        raise GeoTiffError("georef has no CRS: GeoJSON and GeoTIFF sources cannot be placed on it")
    if size is not None and (georef.height, georef.width) != size:
        georef = georef.resized(size[1], size[0])
    return georef


def read_raster(
    path: str,
    bands: Sequence[int] | None,
    grid: Any,
    size: tuple[int, int] | None,
    resampling: str,
    nodata: float | None,
    rgb: bool = False,
) -> np.ndarray:
    """Bands of a raster as float64 (C, H, W) with NaN where nodata or off the source, on ``grid`` if given."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError
    from rasterio.vrt import WarpedVRT

    method = Resampling[resampling]
    try:
        with _quiet_rasterio(), rasterio.open(path) as src:
            if bands is None:  # RGB for detectors; every band for rasters (a maker asks to choose)
                bands = ([1, 2, 3] if src.count >= 3 else [1]) if rgb else list(range(1, src.count + 1))
            if grid is None and size is None:
                from rsgen.safety import check_input_pixels

                check_input_pixels(path, src.width, src.height)  # before any pixel is decoded
            if max(bands) > src.count:
                raise GeoTiffError(f"{path}: band {max(bands)} asked for, the file has {src.count} band(s)")
            src_nodata = nodata if nodata is not None else src.nodata
            if grid is not None:
                if src.crs is None:
                    raise GeoTiffError(
                        f"{path}: has no CRS, so it cannot be reprojected onto the output grid "
                        "(give no georef to only resize it)"
                    )
                with WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=grid.transform,
                    width=grid.width,
                    height=grid.height,
                    resampling=method,
                    src_nodata=src_nodata,
                ) as vrt:
                    data = vrt.read(list(bands), masked=True)
            else:
                out_shape = (len(bands), *(size or (src.height, src.width)))
                data = src.read(list(bands), out_shape=out_shape, resampling=method, masked=True)
                if src_nodata is not None and src.nodata is None:
                    data = np.ma.masked_equal(data, src_nodata)
    except RasterioIOError as e:
        raise GeoTiffError(f"{path}: not a readable raster ({str(e).splitlines()[0]})") from None
    return np.ma.filled(data.astype(np.float64), np.nan)  # (C, H, W)


def resize(arr: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """(H, W[, C]) array resized to ``size`` (H, W) with OpenCV."""
    import cv2

    if arr.shape[:2] == tuple(size):
        return arr
    shrink = size[0] * size[1] < arr.shape[0] * arr.shape[1]
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = cv2.resize(arr, (size[1], size[0]), interpolation=interp)
    return out.reshape(*size, *arr.shape[2:])


def band_list(band: int | Sequence[int] | None) -> list[int] | None:
    return None if band is None else [int(b) for b in np.atleast_1d(band)]


def to_uint8(data: np.ndarray) -> np.ndarray:
    """(C, H, W) float with NaN -> (H, W, C) uint8; 8-bit data is kept, other ranges get a 2-98 % stretch."""
    finite = np.isfinite(data)
    valid = data[finite]
    if valid.size and valid.min() >= 0 and valid.max() <= 255 and np.all(valid == np.round(valid)):
        out = np.where(finite, data, 0)
    else:
        out = np.zeros_like(data)
        for c in range(data.shape[0]):
            v = data[c][finite[c]]
            if v.size:
                lo, hi = np.percentile(v, [2, 98])
                out[c] = (np.nan_to_num(data[c], nan=lo) - lo) / max(hi - lo, 1e-12) * 255
    return np.clip(out, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)


def load_rgb(source: Any, band: Any, grid: Any) -> np.ndarray:
    """An RGB (h, w, 3) uint8 image from an array, an image file or GeoTIFF bands (reprojected onto ``grid``)."""
    from rsgen.io import to_hwc_uint8

    if isinstance(source, str) and not source.lower().endswith(IMAGE_SUFFIXES):
        img = to_uint8(read_raster(source, band_list(band), grid, None, "bilinear", None, rgb=True))
    elif isinstance(source, str):
        from rsgen.safety import read_image_rgb

        img = read_image_rgb(source)
    else:
        try:
            img = to_hwc_uint8(source)
        except ValueError as e:
            raise DataError(f"condition source: {e}") from None
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])  # (h, w, 3)


def load_values(
    source: Any, band: Any, grid: Any, size: tuple[int, int] | None, resampling: str, nodata: float | None
) -> np.ndarray:
    """A raster source as float64 (C, H, W) with NaN for nodata; plain images and arrays are only resized."""
    if isinstance(source, str) and not source.lower().endswith(IMAGE_SUFFIXES):
        return read_raster(source, band_list(band), grid, size, resampling, nodata)
    if isinstance(source, str):
        from rsgen.safety import open_image

        with open_image(source) as im:
            try:
                arr = np.asarray(im if im.mode in ("P", "L", "I", "F", "RGB", "I;16") else im.convert("RGB"))
            except (OSError, ValueError) as e:
                raise DataError(f"{source}: image data cannot be decoded ({e})") from None
    else:
        arr = np.asarray(source)
    if (
        arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4)
    ):  # (C, H, W) -> (H, W, C)
        arr = arr.transpose(1, 2, 0)
    arr = arr.astype(np.float64)
    if nodata is not None:
        arr[arr == nodata] = np.nan
    if size is not None:
        arr = resize(arr, size, nearest=resampling == "nearest")
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    if band is not None:
        wanted = band_list(band) or []
        if max(wanted) > arr.shape[2]:
            raise DataError(
                f"{source if isinstance(source, str) else 'condition source'}: band {max(wanted)} asked for, "
                f"the image has {arr.shape[2]} band(s)"
            )
        arr = arr[:, :, [b - 1 for b in wanted]]
    return arr.transpose(2, 0, 1)  # (C, H, W)


_GEOMETRY_DEPTH = {
    "Point": 1,
    "MultiPoint": 2,
    "LineString": 2,
    "MultiLineString": 3,
    "Polygon": 3,
    "MultiPolygon": 4,
}


def _valid_geometry(geom: dict) -> bool:
    """A GeoJSON geometry whose coordinates nest to its type's depth and end in finite [x, y(, z)] numbers."""
    kind = geom.get("type")
    if kind == "GeometryCollection":
        parts = geom.get("geometries")
        return isinstance(parts, list) and all(isinstance(g, dict) and _valid_geometry(g) for g in parts)
    depth = _GEOMETRY_DEPTH.get(kind)  # type: ignore[arg-type]
    if depth is None:
        return False

    def ok(c: Any, d: int) -> bool:
        if d == 1:
            return (
                isinstance(c, (list, tuple))
                and 2 <= len(c) <= 3
                and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in c
                )
            )
        return isinstance(c, (list, tuple)) and len(c) > 0 and all(ok(x, d - 1) for x in c)

    return ok(geom.get("coordinates"), depth)


def load_geometries(source: Any, grid: Any, crs: Any) -> list[tuple[dict, dict]]:
    """(geometry, properties) pairs of a GeoJSON file or dict, reprojected into the grid's CRS."""
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom

    name = str(source) if isinstance(source, (str, Path)) else "GeoJSON"
    if isinstance(source, (str, Path)):
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{name}: not a readable GeoJSON file ({e})") from None
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "FeatureCollection":
        feats = source.get("features") or []
    elif kind == "Feature":
        feats = [source]
    elif kind in (
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    ):
        feats = [{"geometry": source, "properties": {}}]
    else:
        raise DataError(
            f"{name}: not GeoJSON (type {kind!r}; expected a FeatureCollection, Feature or geometry)"
        )
    if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
        raise DataError(f"{name}: 'features' must be a list of GeoJSON Feature objects")
    pairs = [(f["geometry"], f.get("properties") or {}) for f in feats if f.get("geometry")]
    for i, (g, props) in enumerate(pairs):
        if not isinstance(g, dict) or not isinstance(props, dict) or not _valid_geometry(g):
            raise DataError(
                f"{name}: feature {i} has an invalid geometry (expected a GeoJSON geometry with numeric "
                "coordinates, e.g. a Polygon of [lon, lat] rings)"
            )
    if crs is None:
        crs = ((source.get("crs") or {}).get("properties") or {}).get("name") or DEFAULT_VECTOR_CRS
    try:
        src_crs = CRS.from_user_input(crs)
    except Exception:
        raise DataError(f"{name}: CRS {crs!r} is not understood (expected e.g. EPSG:4326)") from None
    if not pairs:
        return []
    try:
        geoms = transform_geom(src_crs, grid.crs, [g for g, _ in pairs])
    except Exception as e:  # GDAL/OGR refuse a malformed geometry
        raise DataError(f"{name}: a geometry cannot be reprojected ({str(e).splitlines()[0]})") from None
    return [(g, p) for g, (_, p) in zip(geoms, pairs, strict=True)]


def pixel_size_m(grid: Any) -> tuple[float, float]:
    """Pixel (height, width) in metres, for metric or geographic CRSs (at the grid's centre latitude)."""
    from rsgen.metadata import metres_per_degree

    t = grid.transform
    px, py = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    if grid.crs.is_geographic:
        lat = (t @ (grid.width / 2, grid.height / 2))[1]
        m_lat, m_lon = metres_per_degree(lat)
        return py * m_lat, px * m_lon
    factor = grid.crs.linear_units_factor[1]
    return py * factor, px * factor
