"""What-if editing: image-to-image on a real image or GeoTIFF with some metadata changed (date, season, GSD,
cloud cover) or a new caption, keeping the georeference; sweeps of one field at a fixed seed, shown as a
labelled grid."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsgen.data.resampling import show_tensor
from rsgen.errors import ConfigError, DataError
from rsgen.io import GeoReference, read_geotiff
from rsgen.metadata import AcquisitionDate, Metadata, read_geotiff_metadata
from rsgen.pipelines.pipeline import RSGenPipeline, Tiling

log = logging.getLogger(__name__)

SWEEP_FIELDS = ("month", "year", "date", "gsd", "cloud", "prompt")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class SourceImage:
    """A real image to edit: pixels (1, 3, H, W) in [-1, 1], its georeference (None for plain images) and
    the metadata read from it (GeoTIFF georeference, tags, sidecar, file name)."""

    pixels: torch.Tensor
    georef: GeoReference | None
    metadata: Metadata
    path: Path


def load_source(path: str | Path, multiple: int) -> SourceImage:
    """Read an image or GeoTIFF (first 3 bands; 1 band is repeated), centre-cropped to a multiple of
    ``multiple`` pixels per side (the georeference follows the crop). The size is checked from the header
    before decoding (:mod:`rsgen.safety`); unreadable files are one-line DataError / GeoTiffError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"what-if input: no such file {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        raster = read_geotiff(path)
        arr, georef = raster.array, raster.georef  # (C, H, W)
        meta, _ = read_geotiff_metadata(path)
    else:
        from rsgen.safety import read_image_rgb

        arr = read_image_rgb(path).transpose(2, 0, 1)  # (3, H, W)
        georef, meta = None, Metadata()
    if arr.shape[0] < 3:
        arr = np.repeat(arr[:1], 3, axis=0)
    arr = arr[:3]
    if arr.dtype == np.uint8:
        top = 255.0
    else:  # 16-bit or float rasters: stretch to the 99.8th percentile
        top = float(np.percentile(arr, 99.8)) if float(arr.max()) > 1.0 else 1.0
    pixels = (
        torch.from_numpy(np.clip(np.nan_to_num(arr.astype(np.float32)) / max(top, 1e-6), 0, 1))[None] * 2 - 1
    )  # (1, 3, H, W)
    return crop_to_multiple(SourceImage(pixels, georef, meta, path), multiple)


def crop_to_multiple(source: SourceImage, multiple: int) -> SourceImage:
    """The source centre-cropped to a multiple of ``multiple`` pixels per side (the georeference follows)."""
    pixels, georef, path = source.pixels, source.georef, source.path
    _, _, h, w = pixels.shape
    ch, cw = (h // multiple) * multiple, (w // multiple) * multiple
    if ch == 0 or cw == 0:
        raise DataError(f"what-if input {path}: {w}x{h} is smaller than the model's size multiple {multiple}")
    if (ch, cw) != (h, w):
        r0, c0 = (h - ch) // 2, (w - cw) // 2
        log.info("what-if input %s: centre-cropped %dx%d -> %dx%d", path, w, h, cw, ch)
        pixels = pixels[:, :, r0 : r0 + ch, c0 : c0 + cw]
        if georef is not None:
            georef = georef.window(c0, r0, cw, ch)
    return SourceImage(pixels.contiguous(), georef, source.metadata, path)


@dataclass(frozen=True)
class Variant:
    """One what-if: a label, the metadata and prompt to generate with."""

    label: str
    metadata: Metadata
    prompt: str


def _sweep_number(spec: str, field: str, text: str) -> float:
    """A finite number of a numeric sweep (month and year: whole numbers); one-line ConfigError otherwise."""
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"sweep {spec!r}: {text!r} is not a number (--sweep {field}=VALUES)") from None
    if not np.isfinite(v):
        raise ConfigError(f"sweep {spec!r}: {text!r} is not a finite number")
    if field in ("month", "year") and v != int(v):
        raise ConfigError(f"sweep {spec!r}: {field} {text!r} must be a whole number")
    if field == "month" and not 1 <= v <= 12:
        raise ConfigError(f"sweep {spec!r}: month {text!r} must be 1..12")
    return v


def parse_sweep(spec: str, max_values: int | None = None) -> tuple[str, list[str]]:
    """``FIELD=VALUES`` with VALUES ``a,b,c`` or ``start..stop[:step]`` (numbers) or ``a|b`` (prompts):
    ``month=1..12``, ``year=2000..2020:5``, ``gsd=0.5,1,2``, ``cloud=0,0.5``, ``prompt=forest|city``.
    Numbers must be finite (month/year whole); ``max_values`` bounds the sweep length (ConfigError)."""
    field, sep, values = spec.partition("=")
    field = field.strip().lower()
    if not sep or field not in SWEEP_FIELDS or not values.strip():
        raise ConfigError(
            f"sweep {spec!r}: expected FIELD=VALUES with FIELD one of {', '.join(SWEEP_FIELDS)}"
        )
    if field == "prompt":
        out = [v.strip() for v in values.split("|")]
    elif (m := re.fullmatch(r"\s*(\S+?)\s*\.\.\s*(\S+?)\s*(?::\s*(\S+))?\s*", values)) and field != "date":
        start, stop = _sweep_number(spec, field, m.group(1)), _sweep_number(spec, field, m.group(2))
        step = _sweep_number(spec, "step", m.group(3) or "1")
        if step <= 0 or stop < start:
            raise ConfigError(f"sweep {spec!r}: expected start..stop[:step] with start <= stop and step > 0")
        count = int((stop - start) / step + 1e-9) + 1
        if max_values is not None and count > max_values:
            raise ConfigError(
                f"sweep {spec!r}: {count} values, above the limit {max_values}; use a larger step or --allow-large"
            )
        out = [f"{start + i * step:g}" for i in range(count)]
    else:
        out = [v.strip() for v in values.split(",") if v.strip()]
        if field != "date":
            for v in out:
                _sweep_number(spec, field, v)
    if not out:
        raise ConfigError(f"sweep {spec!r}: no values")
    if max_values is not None and len(out) > max_values:
        raise ConfigError(
            f"sweep {spec!r}: {len(out)} values, above the limit {max_values}; sweep fewer or pass --allow-large"
        )
    return field, out


def variants(base: Metadata, prompt: str, field: str, values: Sequence[str]) -> list[Variant]:
    """The metadata/prompt of each sweep value (validated: a bad value is a one-line MetadataError)."""
    out = []
    for v in values:
        meta, p, label = base, prompt, f"{field}={v}"
        if field == "month":
            year = base.date.year if base.date is not None else 2020
            month = int(float(v))
            meta = base.replace(date=AcquisitionDate(year, month, 15))
            label = MONTHS[month - 1] if 1 <= month <= 12 else label
        elif field == "year":
            d = base.date
            meta = base.replace(
                date=AcquisitionDate(int(float(v)), d.month if d else None, d.day if d else None)
            )
            label = str(int(float(v)))
        elif field == "date":
            meta = base.replace(date=AcquisitionDate.parse(v))
            label = v
        elif field == "gsd":
            meta = base.replace(gsd_m=float(v))
            label = f"{float(v):g} m"
        elif field == "cloud":
            meta = base.replace(cloud_cover=float(v))
            label = f"cloud {float(v):.0%}"
        else:
            p, label = v, v[:24]
        out.append(Variant(label, meta, p))
    return out


@dataclass
class WhatIfResult:
    variants: list[Variant]
    images: list[np.ndarray]  # each (H, W, 3) float in [0, 1] (sizes differ across a GSD sweep)
    georefs: list[GeoReference | None]
    metadata: list[Metadata]  # as used, with the true GSD of each output grid
    seed: int


def regridded_size(h: int, w: int, old_gsd: float, gsd_m: float, multiple: int) -> tuple[int, int]:
    """(height, width) of an (h, w) grid of ``old_gsd`` resampled to ``gsd_m`` over the same footprint."""
    nw = max(multiple, round(w * old_gsd / gsd_m / multiple) * multiple)
    nh = max(multiple, round(h * old_gsd / gsd_m / multiple) * multiple)
    return nh, nw


def regrid(
    source: SourceImage, gsd_m: float, multiple: int
) -> tuple[torch.Tensor, GeoReference | None, float]:
    """The source resampled to ``gsd_m`` over the same footprint: (pixels, georef, true GSD of the grid)."""
    old = source.metadata.gsd_m
    _, _, h, w = source.pixels.shape
    if old is None or abs(gsd_m / old - 1) < 1e-6:
        return source.pixels, source.georef, old if old is not None else gsd_m
    nh, nw = regridded_size(h, w, old, gsd_m, multiple)
    pixels = show_tensor(source.pixels, nh, nw).clamp(-1, 1)  # the shared resampling rule
    georef = source.georef.resized(nw, nh) if source.georef is not None else None
    return pixels, georef, old * w / nw


def run_whatif(
    pipe: RSGenPipeline,
    source: SourceImage | None,
    prompt: str,
    field: str,
    values: Sequence[str],
    *,
    strength: float = 0.6,
    steps: int = 25,
    seed: int = 0,
    guidance_text: float = 5.0,
    guidance_meta: float | None = None,  # None: the model's default_guidance_meta, as `rsgen whatif` uses
    scheduler: str | None = "dpm++",
    base_metadata: Metadata | None = None,
    tiling: Tiling | None = None,
    progress: bool = True,
) -> WhatIfResult:
    """Edit ``source`` once per sweep value at the same seed (so only the swept condition differs). Without a
    source, generate from text + ``base_metadata`` with the swept field changed, from the same initial noise."""
    if source is None and base_metadata is None:
        raise ConfigError("a what-if sweep without a source image needs base metadata")
    base = base_metadata if base_metadata is not None else source.metadata
    vs = variants(base, prompt, field, values)
    images, georefs, metas = [], [], []
    for v in vs:
        pixels = georef = None
        meta = v.metadata
        if source is not None:
            pixels, georef = source.pixels, source.georef
        if source is not None and field == "gsd" and v.metadata.gsd_m is not None:
            pixels, georef, true_gsd = regrid(
                SourceImage(source.pixels, source.georef, base, source.path),
                v.metadata.gsd_m,
                pipe.size_multiple,
            )
            meta = meta.replace(gsd_m=true_gsd)
        out = pipe(
            v.prompt,
            meta,
            image=pixels,
            strength=strength if pixels is not None else 1.0,
            num_inference_steps=steps,
            seed=seed,
            guidance_text=guidance_text,
            guidance_meta=guidance_meta,
            scheduler=scheduler,
            tiling=tiling,
            progress=progress,
        )
        images.append(out.images[0])
        georefs.append(georef)
        metas.append(meta)
    return WhatIfResult(vs, images, georefs, metas, seed)


def labelled_grid(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    cell: int = 256,
    ncols: int | None = None,
    source: np.ndarray | None = None,
) -> np.ndarray:
    """A (H, W, 3) uint8 grid of images (each resized to ``cell`` px) with a text label above each;
    ``source`` (optional) comes first, labelled "input"."""
    from PIL import Image, ImageDraw

    items = ([(source, "input")] if source is not None else []) + list(zip(images, labels, strict=True))
    ncols = ncols or min(len(items), 6)
    nrows = -(-len(items) // ncols)
    pad = 18
    canvas = Image.new("RGB", (ncols * cell, nrows * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (img, label) in enumerate(items):
        r, c = divmod(k, ncols)
        tile = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(
            (cell, cell), Image.NEAREST
        )
        canvas.paste(tile, (c * cell, r * (cell + pad) + pad))
        draw.text((c * cell + 4, r * (cell + pad) + 3), label, fill="black")
    return np.asarray(canvas)


def source_settings(source: SourceImage) -> dict[str, Any]:
    return {
        "input": str(source.path),
        "input_metadata": source.metadata.to_dict(),
        "input_size": list(source.pixels.shape[-2:]),
    }
