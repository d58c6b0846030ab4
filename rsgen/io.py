"""Image and GeoTIFF reading and writing, with atomic writes.

Every write goes to a temporary file beside the target and is renamed into place only when complete, so a
killed process never leaves a half-written image, checkpoint or report. GeoTIFFs carry CRS and transform (from
a reference raster or built from lat/lon + GSD in the local UTM zone) and the prompt, metadata, seed, model id
and rsgen version as tags; :func:`read_geotiff` gives them back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsgen import __version__
from rsgen.errors import DataError, GeoTiffError, MetadataError
from rsgen.metadata import Metadata

# ------------------------------------------------------------------------------------------ atomic writes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(path: Path) -> str:
    """Temporary names are ``.NAME.PID.RANDOM.tmp``: hidden, and recognisable by
    :func:`rsgen.safety.clean_stale_temps` as left by a process that is no longer alive."""
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should be an ordinary file
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(data: Any, where: str | Path = "JSON") -> str:
    """Strict JSON (``allow_nan=False``: NaN / Infinity are not JSON); DataError naming ``where`` otherwise."""
    try:
        return json.dumps(data, indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    except ValueError as e:
        raise DataError(f"{where}: cannot write a non-finite number as JSON ({e})") from None


def atomic_write_json(path: str | Path, data: Any, *, strict: bool = False) -> None:
    """JSON written atomically; ``strict``: refuse NaN / Infinity (sidecars are strict: :func:`json_text`;
    reports keep NaN for undefined metrics, as Python's json reads them back)."""
    if strict:
        atomic_write_text(path, json_text(data, path))
    else:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_group(paths: Sequence[str | Path]) -> Iterator[list[Path]]:
    """Write several files that belong together (sidecars, conditions, then the image(s)): yields one temporary
    path per target; after a clean exit all are fsynced and renamed in the given order, so the last target
    (the image) appears only when the others are in place. Any exception removes every temporary file."""
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for t in targets:
            t.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=temp_prefix(t), suffix=".tmp", dir=t.parent)
            os.close(fd)
            os.chmod(name, 0o666 & ~_umask())
            temps.append(Path(name))
        yield list(temps)
        for tmp in temps:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        for tmp, t in zip(temps, targets, strict=True):
            os.replace(tmp, t)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (an old folder there is removed after the swap)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the result should be an ordinary folder
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------- georeference


@dataclass(frozen=True)
class GeoReference:
    """Where a raster grid lies on the Earth: CRS, affine transform and size in pixels."""

    crs: Any  # rasterio.crs.CRS
    transform: Any  # affine.Affine
    width: int
    height: int

    @classmethod
    def from_raster(cls, path: str | Path) -> GeoReference:
        """The georeference of an existing GeoTIFF (error if it has no CRS)."""
        import rasterio

        path = Path(path)
        _open_checked(path)
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise GeoTiffError(f"{path}: has no CRS, so it cannot be used as a georeference")
            return cls(ds.crs, ds.transform, ds.width, ds.height)

    @classmethod
    def from_latlon_gsd(cls, lat: float, lon: float, gsd_m: float, width: int, height: int) -> GeoReference:
        """A north-up grid centred on (lat, lon) with square pixels of ``gsd_m`` metres, in the local UTM zone."""
        from affine import Affine
        from rasterio.crs import CRS
        from rasterio.warp import transform as warp_transform

        Metadata(gsd_m=gsd_m, lat=lat, lon=lon)  # validates the values with the usual messages
        crs = CRS.from_epsg(utm_epsg(lat, lon))
        xs, ys = warp_transform("EPSG:4326", crs, [lon], [lat])
        x0 = xs[0] - width / 2 * gsd_m
        y0 = ys[0] + height / 2 * gsd_m
        return cls(crs, Affine(gsd_m, 0.0, x0, 0.0, -gsd_m, y0), int(width), int(height))

    @property
    def gsd(self) -> float:
        """Nominal pixel size in CRS units (the geometric mean of the x and y sizes)."""
        t = self.transform
        return math.sqrt(abs(t.a * t.e - t.b * t.d))

    def resized(self, width: int, height: int) -> GeoReference:
        """The same footprint on a grid of another size (e.g. after a super-resolution stage)."""
        from affine import Affine

        scale = Affine.scale(self.width / width, self.height / height)
        return GeoReference(self.crs, self.transform @ scale, int(width), int(height))

    def window(self, col_off: int, row_off: int, width: int, height: int) -> GeoReference:
        """The georeference of a sub-window of this grid."""
        from affine import Affine

        return GeoReference(self.crs, self.transform @ Affine.translation(col_off, row_off), width, height)


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lat, lon), with the Norway and Svalbard exceptions."""
    zone = int((lon + 180) // 6) + 1
    if 56 <= lat < 64 and 3 <= lon < 12:
        zone = 32
    elif 72 <= lat < 84 and 0 <= lon < 42:
        zone = 31 if lon < 9 else 33 if lon < 21 else 35 if lon < 33 else 37
    zone = min(max(zone, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone


# ------------------------------------------------------------------------------------- image conversion

#: how a 3-D array holds its bands: (H, W, C) or (C, H, W)
LAYOUTS = ("HWC", "CHW")


def to_hwc_uint8(image: Any, layout: str | None = None) -> np.ndarray:
    """An image as (H, W, C) uint8: accepts PIL images, numpy (H, W[, C]) or (C, H, W), and torch tensors
    in [0, 1] or [-1, 1] (float) or 0-255 (integer). ``layout`` ("HWC" / "CHW") says which a 3-D array is;
    None guesses from the shape (only for callers that cannot know: 1, 3 or 4 leading channels = CHW)."""
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().float().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"expected an image with 2 or 3 dimensions, got shape {arr.shape}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    if layout == "CHW" or (layout is None and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4)):
        arr = np.transpose(arr, (1, 2, 0))  # (C, H, W) -> (H, W, C)
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.min() < 0:
            arr = (arr + 1) / 2  # [-1, 1] -> [0, 1]
        return np.ascontiguousarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.ascontiguousarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_png(
    path: str | Path, image: Any, text: Mapping[str, str] | None = None, *, layout: str | None = None
) -> Path:
    """Write an image as PNG atomically; ``text`` goes into PNG tEXt chunks; ``layout`` as in :func:`to_hwc_uint8`."""
    from PIL import Image, PngImagePlugin

    arr = to_hwc_uint8(image, layout)
    info = PngImagePlugin.PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, str(v))
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(arr.shape[2])
    if mode is None:
        raise ValueError(f"PNG needs 1, 3 or 4 channels, got {arr.shape[2]}")
    with atomic_path(path) as tmp:
        Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode).save(tmp, format="PNG", pnginfo=info)
    return Path(path)


# -------------------------------------------------------------------------------------------- GeoTIFF


@dataclass
class GeoRaster:
    """A raster read back from disk."""

    array: np.ndarray  # (C, H, W)
    georef: GeoReference | None
    metadata: Metadata
    tags: dict[str, str]
    nodata: float | None


def generation_tags(
    metadata: Metadata | None = None,
    prompt: str | None = None,
    seed: int | None = None,
    model_id: str | None = None,
    **more: Any,
) -> dict[str, str]:
    """The tags rsgen writes into every output: prompt, metadata (JSON), seed, model id, rsgen version."""
    tags = {"RSGEN_VERSION": __version__, "TIFFTAG_SOFTWARE": f"rsgen {__version__}"}
    if metadata is not None:
        tags["RSGEN_METADATA"] = metadata.to_json()
        if metadata.date is not None:
            tags["RSGEN_DATE"] = metadata.date.isoformat()
    if prompt is not None:
        tags["RSGEN_PROMPT"] = prompt
        tags["TIFFTAG_IMAGEDESCRIPTION"] = prompt
    if seed is not None:
        tags["RSGEN_SEED"] = str(seed)
    if model_id is not None:
        tags["RSGEN_MODEL"] = model_id
    for k, v in more.items():
        tags[f"RSGEN_{k.upper()}"] = v if isinstance(v, str) else json.dumps(v, default=str)
    return tags


def _geotiff_profile(
    width: int,
    height: int,
    count: int,
    dtype: Any,
    georef: GeoReference | None,
    nodata: float | None,
    cog: bool,
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "driver": "COG" if cog else "GTiff",
        "width": width,
        "height": height,
        "count": count,
        "dtype": np.dtype(dtype).name,
        "compress": "deflate",
    }
    if cog:
        profile.update(blocksize=256, overview_resampling="average")
    else:
        if width >= 256 and height >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
        if count in (3, 4) and np.dtype(dtype) == np.uint8:
            profile["photometric"] = "RGB"
    if georef is not None:
        if (georef.width, georef.height) != (width, height):
            georef = georef.resized(width, height)
        profile.update(crs=georef.crs, transform=georef.transform)
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def write_geotiff(
    path: str | Path,
    image: Any,
    georef: GeoReference | None = None,
    *,
    metadata: Metadata | None = None,
    tags: Mapping[str, str] | None = None,
    nodata: float | None = None,
    cog: bool = False,
    layout: str | None = None,
) -> Path:
    """Write an image as GeoTIFF (or Cloud-Optimized GeoTIFF) atomically.

    ``image``: numpy (H, W) or 3-D of any dtype with ``layout`` "HWC" or "CHW" (required: a shape cannot tell
    a 16x16 RGB image from 16 bands of 16x3), a PIL image or an (H, W, C) / (C, H, W) tensor (converted to uint8).
    ``georef`` is resized to the image if its grid has another size (same footprint). Without a georeference the
    file has no CRS: it is then a plain TIFF with tags.
    """
    import rasterio

    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 3 and layout is None:
            raise ValueError(f"write_geotiff: a 3-D array {arr.shape} needs layout='HWC' or layout='CHW'")
    else:
        arr, layout = to_hwc_uint8(image, layout), "HWC"
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and layout == "HWC":
        arr = np.transpose(arr, (2, 0, 1))  # (H, W, C) -> (C, H, W)
    elif arr.ndim != 3:
        raise ValueError(f"expected an image with 2 or 3 dimensions, got shape {arr.shape}")
    count, height, width = arr.shape
    profile = _geotiff_profile(width, height, count, arr.dtype, georef, nodata, cog)
    all_tags = dict(tags or {})
    if metadata is not None and "RSGEN_METADATA" not in all_tags:
        all_tags.update(generation_tags(metadata))
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(arr)
        if all_tags:
            dst.update_tags(**all_tags)
    return Path(path)


class GeoTiffBlockWriter:
    """Write a large GeoTIFF window by window so memory is bounded by a window, not the scene.

    Use as a context manager; the file appears at ``path`` only after a clean exit.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        count: int = 3,
        georef: GeoReference | None = None,
        *,
        dtype: Any = np.uint8,
        metadata: Metadata | None = None,
        tags: Mapping[str, str] | None = None,
        nodata: float | None = None,
        block: int = 256,
    ) -> None:
        self.path = Path(path)
        self.profile = _geotiff_profile(width, height, count, dtype, georef, nodata, cog=False)
        if width >= 16 and height >= 16:
            b = max(16, (min(block, width, height) // 16) * 16)
            self.profile.update(tiled=True, blockxsize=b, blockysize=b, BIGTIFF="IF_SAFER")
        self.tags = dict(tags or {})
        if metadata is not None and "RSGEN_METADATA" not in self.tags:
            self.tags.update(generation_tags(metadata))
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._dst: Any = None

    def __enter__(self) -> GeoTiffBlockWriter:
        import rasterio

        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._dst = rasterio.open(tmp, "w", **self.profile)
        return self

    def write_window(self, array: Any, col_off: int, row_off: int, layout: str = "CHW") -> None:
        """Write ``array`` ((C, h, w), or (h, w, C) with ``layout="HWC"``, or (h, w)) with its top-left pixel
        at (col_off, row_off)."""
        from rasterio.windows import Window

        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: expected one of {LAYOUTS}")
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[None]
        elif layout == "HWC":
            arr = np.transpose(arr, (2, 0, 1))
        window = Window(col_off, row_off, arr.shape[2], arr.shape[1])
        self._dst.write(arr.astype(self.profile["dtype"], copy=False), window=window)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._ctx is not None
        try:
            if exc_type is None and self.tags:
                self._dst.update_tags(**self.tags)
        finally:
            self._dst.close()
            self._ctx.__exit__(exc_type, exc, tb)


def _open_checked(path: Path) -> None:
    """Raise a one-line GeoTiffError for a missing or unreadable raster."""
    import rasterio
    from rasterio.errors import RasterioIOError

    if not path.exists():
        raise GeoTiffError(f"{path}: no such file")
    try:
        with rasterio.open(path):
            pass
    except RasterioIOError as e:
        raise GeoTiffError(f"{path}: not a readable raster ({str(e).splitlines()[0]})") from None


def read_geotiff(path: str | Path, *, require_crs: bool = False) -> GeoRaster:
    """Read a GeoTIFF: pixels (C, H, W), georeference (None without a CRS), metadata and tags, nodata."""
    import rasterio

    from rsgen.metadata import read_geotiff_metadata
    from rsgen.safety import check_input_pixels

    path = Path(path)
    _open_checked(path)
    with rasterio.open(path) as ds:
        check_input_pixels(path, ds.width, ds.height)  # before any pixel is decoded
        try:
            array = ds.read()
        except Exception as e:  # truncated or corrupt pixel data
            raise GeoTiffError(f"{path}: pixel data cannot be read ({str(e).splitlines()[0]})") from None
        georef = GeoReference(ds.crs, ds.transform, ds.width, ds.height) if ds.crs is not None else None
        tags = ds.tags()
        nodata = ds.nodata
    if georef is None and require_crs:
        raise GeoTiffError(f"{path}: has no CRS (a georeferenced GeoTIFF is required here)")
    try:
        metadata, _ = read_geotiff_metadata(path)
    except MetadataError:
        metadata = Metadata()
    return GeoRaster(array, georef, metadata, tags, nodata)
