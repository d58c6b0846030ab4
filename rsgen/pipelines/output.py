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
from rsgen.io import GeoReference, atomic_group, generation_tags, json_text, write_geotiff, write_png
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
    extra_files: Mapping[str, np.ndarray] | None = None,
) -> list[Path]:
    """Write one (H, W, 3) uint8 image as ``stem.tif`` and/or ``stem.png`` with ``stem.json`` (and
    ``extra_files``: (H, W, 3) uint8 PNGs by file name beside it, e.g. its ControlNet conditions); returns the
    paths, extras first and the image(s) last.

    The atomic rule: every file is written under a temporary name (``.NAME.PID.RANDOM.tmp``) and renamed into
    place only when all are complete, extras and sidecar first and the image(s) last, so an image on disk always
    has its sidecar; a failure removes every temporary file (a killed run's are removed by the next run).
    """
    stem = Path(stem)
    tags = generation_tags(
        metadata,
        prompt=generation.get("prompt"),
        seed=generation.get("seed"),
        model_id=generation.get("model"),
        settings=dict(generation),
    )
    sidecar = json_text(sidecar_record(metadata, generation), stem.with_name(stem.name + ".json"))
    extras = dict(extra_files or {})
    targets = [stem.with_name(name) for name in extras]
    targets.append(stem.with_name(stem.name + ".json"))
    fmts = check_formats(formats)
    targets += [stem.with_name(stem.name + "." + fmt) for fmt in fmts]
    with atomic_group(targets) as temps:
        for tmp, extra in zip(temps[: len(extras)], extras.values(), strict=True):
            write_png(tmp, extra, layout="HWC")
        temps[len(extras)].write_text(sidecar, encoding="utf-8")
        for tmp, fmt in zip(temps[len(extras) + 1 :], fmts, strict=True):
            if fmt == "tif":
                write_geotiff(tmp, image, georef, metadata=metadata, tags=tags, layout="HWC")
            else:
                write_png(tmp, image, text={"rsgen": str(generation.get("prompt", ""))}, layout="HWC")
    log.info("wrote %s", ", ".join(str(p) for p in targets))
    return targets
