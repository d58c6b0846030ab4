"""A folder of generated images with their prompts and metadata, as the evaluation reads it.

Accepted layouts (checked in this order for each image):

1. a JSONL index in the folder (``generated.jsonl``, ``samples.jsonl``, ``prompts.jsonl`` or ``manifest.jsonl``),
   one record per image: ``{"path": "img_0001.png", "prompt": "...", "metadata": {...}, "label": "Forest",
   "seed": 3, "guidance_scale": 5.0, "steps": 30}`` (``file``/``image`` accepted for ``path``, ``caption`` for
   ``prompt``); paths relative to the folder; ``prompt_set``: the prompt set an image belongs to (reported in
   its own section, not in the headline metrics). Optional, for control faithfulness: ``"conditions": {"canny":
   "img_0001.condition-canny.png"}`` (the ControlNet condition images), ``"condition_sources": {"canny":
   "tile.tif:1,2,3"}`` (what each was drawn from) and ``"real_image"`` (the real image of a mask condition);
2. a JSON sidecar beside each image (``img.png.json`` or ``img.json``) with the same keys, or as
   ``rsgen generate`` writes it (metadata fields at the top level, settings under ``"generation"``);
3. the tags rsgen writes into its GeoTIFFs (``RSGEN_PROMPT``, ``RSGEN_METADATA``, ``RSGEN_SEED``, ...).

Images that cannot be decoded, or records whose image is missing, are skipped and counted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.errors import DataError, MetadataError
from rsgen.eval.reference_data import IMAGE_SUFFIXES, load_image_rgb, resize_rgb
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)

INDEX_NAMES = ("generated.jsonl", "samples.jsonl", "prompts.jsonl", "manifest.jsonl")
CONDITION_MARK = ".condition-"  # `rsgen generate` writes ControlNet conditions as <stem>.condition-<type>.png


@dataclass
class GeneratedSample:
    """What one generated image was asked to show."""

    path: Path
    prompt: str | None = None
    metadata: Metadata = field(default_factory=Metadata)
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # seed, guidance_scale, steps, ...
    native_size: tuple[int, int] | None = None  # (H, W) of the file, before resizing for evaluation
    conditions: dict[str, Path] = field(default_factory=dict)  # ControlNet condition type -> its image
    condition_sources: dict[str, str] = field(default_factory=dict)  # type -> source it was drawn from
    real_image: Path | None = None  # the real image a mask condition belongs to (e.g. --like)

    def effective_gsd(self, size: int) -> float | None:
        """The requested GSD after the image is resized to ``size`` px wide (what a predictor sees)."""
        if self.metadata.gsd_m is None:
            return None
        width = self.native_size[1] if self.native_size else size
        return self.metadata.gsd_m * width / size


@dataclass
class GeneratedSet:
    """Images ``(N, H, W, 3)`` uint8 and the matching :class:`GeneratedSample` records."""

    images: np.ndarray
    samples: list[GeneratedSample]
    root: Path
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, index: np.ndarray | list[int]) -> GeneratedSet:
        index = np.asarray(index, dtype=np.int64)
        return GeneratedSet(self.images[index], [self.samples[i] for i in index], self.root)

    def main_index(self) -> list[int]:
        """Indexes of the main set: not the extra images of guidance / steps sweeps (records with a ``sweep``
        key naming what was swept) nor those of prompt sets (a ``prompt_set`` key naming the set), so that the
        headline metrics use one sampling setting and the class prompts."""
        return [
            i
            for i, s in enumerate(self.samples)
            if not s.extra.get("sweep") and not s.extra.get("prompt_set")
        ]

    def prompt_sets(self) -> dict[str, list[int]]:
        """Indexes of each prompt set's images (records with ``prompt_set``), in order of first appearance."""
        return {k: v for k, v in self.group_by("prompt_set").items() if k}

    def main(self) -> GeneratedSet:
        """The main set (see :meth:`main_index`)."""
        keep = self.main_index()
        if len(keep) == len(self.samples):
            return self
        return GeneratedSet(self.images[keep], [self.samples[i] for i in keep], self.root, self.skipped)

    def group_by(self, key: str) -> dict[Any, list[int]]:
        """Indexes of samples sharing ``extra[key]`` (e.g. ``guidance_scale``, ``steps``); None when absent."""
        groups: dict[Any, list[int]] = {}
        for i, s in enumerate(self.samples):
            groups.setdefault(s.extra.get(key), []).append(i)
        return groups


def _resolve(rel: str, root: Path) -> Path:
    return Path(rel) if Path(rel).is_absolute() else root / rel


def _record_to_sample(record: dict[str, Any], root: Path, where: str) -> GeneratedSample:
    settings = record.get("generation")
    if isinstance(settings, dict) and "metadata" not in record:  # an `rsgen generate` sidecar
        meta = {k: v for k, v in record.items() if k not in ("generation", "path")}
        record = {**settings, "metadata": meta, "path": record.get("path")}
    rel = record.get("path") or record.get("file") or record.get("image")
    if not rel:
        raise DataError(f"{where}: record has no 'path'")
    path = Path(rel) if Path(rel).is_absolute() else root / rel
    meta_raw = record.get("metadata") or {}
    if isinstance(meta_raw, str):
        meta_raw = json.loads(meta_raw)
    try:
        metadata = Metadata.from_dict(meta_raw)
    except MetadataError as e:
        raise DataError(f"{where}: {e}") from None
    prompt = record.get("prompt", record.get("caption"))
    known = {"path", "file", "image", "metadata", "prompt", "caption", "label"}
    known |= {"conditions", "condition_sources", "real_image"}
    extra = {k: v for k, v in record.items() if k not in known}
    label = record.get("label")
    sample = GeneratedSample(path, prompt, metadata, str(label) if label is not None else None, extra)
    from rsgen.conditions.sources import split_band

    for key, value in (record.get("conditions") or {}).items():
        sample.conditions[str(key)] = _resolve(str(value), root)
    for key, value in (record.get("condition_sources") or {}).items():
        src, band = split_band(str(value))
        bands = "" if band is None else ":" + ",".join(map(str, np.atleast_1d(band)))
        sample.condition_sources[str(key)] = str(_resolve(src, root)) + bands
    if record.get("real_image"):
        sample.real_image = _resolve(str(record["real_image"]), root)
    return sample


def _sample_from_sidecar_or_tags(path: Path) -> GeneratedSample:
    for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if sidecar.is_file():
            record = json.loads(sidecar.read_text())
            record.setdefault("path", path.name)  # relative to the sidecar's folder
            return _record_to_sample(record, path.parent, str(sidecar))
    if path.suffix.lower() in (".tif", ".tiff"):
        from rsgen.io import read_geotiff

        raster = read_geotiff(path)
        tags = raster.tags
        extra: dict[str, Any] = {}
        for key in ("SEED", "GUIDANCE_SCALE", "STEPS", "LABEL"):
            if f"RSGEN_{key}" in tags:
                try:
                    extra[key.lower()] = json.loads(tags[f"RSGEN_{key}"])
                except json.JSONDecodeError:
                    extra[key.lower()] = tags[f"RSGEN_{key}"]
        label = extra.pop("label", None)
        meta = Metadata.from_json(tags["RSGEN_METADATA"]) if "RSGEN_METADATA" in tags else raster.metadata
        return GeneratedSample(path, tags.get("RSGEN_PROMPT"), meta, label, extra)
    return GeneratedSample(path)


def load_generated_set(folder: str | Path, size: int = 64, max_images: int | None = None) -> GeneratedSet:
    """Read a folder of generated images with prompts/metadata (see module doc); images resized to ``size``."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"generated-image folder not found: {root}")
    index = next((root / n for n in INDEX_NAMES if (root / n).is_file()), None)
    samples: list[GeneratedSample] = []
    skipped = 0
    if index is not None:
        for lineno, line in enumerate(index.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                samples.append(_record_to_sample(json.loads(line), root, f"{index}:{lineno}"))
            except (json.JSONDecodeError, DataError) as e:
                log.warning("skipping %s:%d: %s", index, lineno, e)
                skipped += 1
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and CONDITION_MARK not in p.name  # not condition images
        )
        stems = {p.with_suffix("") for p in files if p.suffix.lower() == ".png"}
        files = [p for p in files if p.suffix.lower() == ".png" or p.with_suffix("") not in stems]  # tif+png
        for p in files:
            try:
                samples.append(_sample_from_sidecar_or_tags(p))
            except (json.JSONDecodeError, DataError, MetadataError) as e:
                log.warning("skipping %s: %s", p, e)
                skipped += 1
    if max_images is not None:
        samples = samples[:max_images]
    images, kept = [], []
    for s in samples:
        try:
            rgb = load_image_rgb(s.path)
            s.native_size = (int(rgb.shape[0]), int(rgb.shape[1]))
            images.append(resize_rgb(rgb, size))
            kept.append(s)
        except Exception as e:  # unreadable image: counted, not fatal
            log.warning("skipping %s: %s", s.path, e)
            skipped += 1
    if not kept:
        raise DataError(f"{root}: no readable generated images (skipped {skipped})")
    if skipped:
        log.warning("%s: skipped %d unreadable samples", root, skipped)
    return GeneratedSet(np.stack(images), kept, root, skipped)


def write_generated_set(
    folder: str | Path, images: np.ndarray | Sequence[np.ndarray], samples: list[dict[str, Any]]
) -> Path:
    """Write ``(N, H, W, 3)`` uint8 images (or a list of ``(H, W, 3)`` of different sizes) as PNGs plus
    ``generated.jsonl`` (records as in the module doc)."""
    from rsgen.io import atomic_write_text, write_png

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, record) in enumerate(zip(images, samples, strict=True)):
        name = record.get("path") or f"img_{i:05d}.png"
        write_png(root / name, image)
        lines.append(json.dumps({**record, "path": name}, default=str))
    atomic_write_text(root / "generated.jsonl", "\n".join(lines) + "\n")
    return root
