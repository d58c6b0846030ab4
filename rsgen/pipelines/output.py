"""Writing generated images: GeoTIFF (with CRS, transform and generation tags) and/or PNG, plus a JSON sidecar
holding the image's metadata fields (so :func:`rsgen.metadata.read_geotiff_metadata` reads them back) and,
under ``"generation"``, every setting needed to regenerate it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.errors import ConfigError
from rsgen.io import GeoReference, atomic_write_json, generation_tags, write_geotiff, write_png
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)

FORMATS = ("tif", "png")


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Normalise output formats (``tif``/``tiff``/``geotiff``, ``png``); ConfigError for others."""
    out = []
    for f in formats:
        key = {"tiff": "tif", "geotiff": "tif"}.get(f.lower().lstrip("."), f.lower().lstrip("."))
        if key not in FORMATS:
            raise ConfigError(f"output format {f!r}: expected tif or png")
        out.append(key)
    if not out:
        raise ConfigError("no output format given: expected tif and/or png")
    return tuple(dict.fromkeys(out))


def sidecar_record(metadata: Metadata | None, generation: Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar JSON: metadata fields at the top level, settings under ``generation``."""
    record: dict[str, Any] = dict(metadata.to_dict()) if metadata is not None else {}
    record["generation"] = dict(generation)
    return record


def write_image(
    stem: str | Path,
    image: np.ndarray,
    *,
    georef: GeoReference | None,
    metadata: Metadata | None,
    generation: Mapping[str, Any],
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write one (H, W, 3) uint8 image as ``stem.tif`` and/or ``stem.png`` and ``stem.json``; returns the paths."""
    stem = Path(stem)
    written = []
    tags = generation_tags(
        metadata,
        prompt=generation.get("prompt"),
        seed=generation.get("seed"),
        model_id=generation.get("model"),
        settings=dict(generation),
    )
    for fmt in check_formats(formats):
        path = stem.with_name(stem.name + "." + fmt)
        if fmt == "tif":
            write_geotiff(path, image, georef, metadata=metadata, tags=tags)
        else:
            write_png(path, image, text={"rsgen": str(generation.get("prompt", ""))})
        written.append(path)
    side = stem.with_name(stem.name + ".json")
    atomic_write_json(side, sidecar_record(metadata, generation))
    written.append(side)
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return written
