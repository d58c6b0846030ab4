"""Typed configuration of a curation run (``configs/data/<name>.yaml``), and the reader each source makes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rsgen.errors import ConfigError
from rsgen.paths import REPO_ROOT, datasets_dir

SourceKind = Literal["class_folder", "image_list", "karpathy", "coco", "fmow", "geotiff_windows"]


@dataclass
class SourceConfig:
    """One source. ``root``: image folder (GeoTIFF folder or file for ``geotiff_windows``); ``annotations``:
    caption json (karpathy / coco), or one or more image lists (``image_list``: JSON / CSV of path, label,
    captions; see :class:`rsgen.data.readers.ImageListReader`). ``split``: a fixed split for every record, or
    null for the stable hash split. ``heldout``: this fraction of each class (chosen by file name) is split
    ``val`` instead, never trained on. ``caption_metadata``: human captions get the caption writer's metadata
    phrases (GSD, date, place where known) as written captions do. Paths may use ``${datasets}`` (the shared
    real data sets) and are otherwise relative to the repository."""

    name: str
    kind: SourceKind
    root: str = ""
    annotations: str | list[str] = ""
    split: Literal["train", "val", "test"] | None = None
    heldout: float = 0.0
    caption_metadata: bool = True
    unlisted_images: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    label_from: str | None = None
    place: str | None = None
    gsd_factors: list[float] = field(default_factory=lambda: [1.0])
    window: int = 64
    stride: int | None = None
    bands: list[int] | None = None
    false_color: bool = False
    pattern: str = "*.tif"
    require_crs: bool = True
    use_source_split: bool = True
    crop_to_box: bool = False
    conditions: dict[str, str] = field(default_factory=dict)
    captions_per_image: int = 5
    limit: int | None = None


@dataclass
class ChecksConfig:
    """Per-image checks: smallest side in pixels, grey std below which an image is blank, least valid
    (non-nodata) fraction."""

    min_size: int = 16
    blank_std: float = 0.1
    min_valid_fraction: float = 0.9


@dataclass
class DedupeConfig:
    """Exact (pixel hash) and near (pHash within ``max_distance`` bits, confirmed by a 4x4 thumbnail) duplicate
    removal; near-duplicate search is skipped for images whose grey std is below ``low_texture_std`` (a pHash
    of a nearly uniform image is noise)."""

    exact: bool = True
    near: bool = True
    max_distance: int = 2
    max_thumbnail_difference: float = 8.0
    low_texture_std: float = 6.0


@dataclass
class SplitConfig:
    val: float = 0.05
    test: float = 0.05
    salt: str = "rsgen"


@dataclass
class ShardConfig:
    """WebDataset tar shards of the kept samples (decoded, windowed, resampled pixels + a JSON record)."""

    enabled: bool = False
    max_samples: int = 5000
    image_format: Literal["png", "jpg"] = "png"


@dataclass
class CurateConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    manifest_format: Literal["jsonl", "parquet", "both"] = "jsonl"
    caption_seed: int = 0
    workers: int = 2
    report: bool = True

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"curation sources: duplicate source name(s) {', '.join(dup)}")


def expand_path(text: str) -> Path:
    """``${datasets}`` -> the shared data sets; ``~`` and ``$VARS`` expanded; relative -> the repository root."""
    if not text:
        raise ConfigError("a source path is empty")
    s = text.replace("${datasets}", str(datasets_dir()))
    p = Path(os.path.expandvars(os.path.expanduser(s)))
    return p if p.is_absolute() else REPO_ROOT / p


def make_reader(src: SourceConfig, caption_seed: int = 0):  # -> Reader
    """The reader for one configured source."""
    from rsgen.data.geotiff_windows import GeoTiffWindowReader
    from rsgen.data.readers import (
        ClassFolderReader,
        CocoCaptionsReader,
        FmowReader,
        ImageListReader,
        KarpathyReader,
    )

    common: dict[str, Any] = dict(
        metadata=src.metadata,
        split=src.split,
        gsd_factors=src.gsd_factors,
        captions_per_image=src.captions_per_image,
        caption_seed=caption_seed,
        place=src.place,
        label=src.label,
        limit=src.limit,
        heldout=src.heldout,
        caption_metadata=src.caption_metadata,
        conditions={k: expand_path(v) for k, v in src.conditions.items()},
    )
    if src.kind == "class_folder":
        return ClassFolderReader(src.name, expand_path(src.root), **common)
    if src.kind == "image_list":
        lists = [src.annotations] if isinstance(src.annotations, str) else list(src.annotations)
        return ImageListReader(
            src.name,
            expand_path(src.root),
            [expand_path(a) for a in lists if a],
            unlisted_images=src.unlisted_images,
            **common,
        )
    if src.kind == "karpathy":
        return KarpathyReader(
            src.name,
            expand_path(_one(src)),
            expand_path(src.root),
            use_source_split=src.use_source_split,
            label_from=src.label_from,
            **common,
        )
    if src.kind == "coco":
        return CocoCaptionsReader(
            src.name, expand_path(_one(src)), expand_path(src.root), label_from=src.label_from, **common
        )
    if src.kind == "fmow":
        return FmowReader(src.name, expand_path(src.root), crop_to_box=src.crop_to_box, **common)
    if src.kind == "geotiff_windows":
        return GeoTiffWindowReader(
            src.name,
            expand_path(src.root),
            size=src.window,
            stride=src.stride,
            bands=src.bands,
            false_color=src.false_color,
            pattern=src.pattern,
            require_crs=src.require_crs,
            **common,
        )
    raise ConfigError(f"source {src.name}: unknown kind {src.kind!r}")


def _one(src: SourceConfig) -> str:
    """The single annotation file of a karpathy / coco source."""
    if isinstance(src.annotations, str):
        return src.annotations
    if len(src.annotations) != 1:
        raise ConfigError(f"source {src.name}: kind {src.kind} takes one annotations file, not a list")
    return src.annotations[0]


CAPTION_LISTS = ("captions.json", "captions.csv")


def folder_config(
    folder: str | Path,
    *,
    metadata: dict[str, Any] | None = None,
    label: str | None = None,
    place: str | None = None,
    split: str | None = None,
    heldout: float = 0.0,
    name: str | None = None,
) -> dict[str, Any]:
    """A one-source curation config (as data for :func:`rsgen.config.load_config`, so overrides apply) for a
    plain folder: images with ``captions.json`` / ``captions.csv`` (file name -> caption(s); images it does not
    name are counted as ``no_caption``), else class subfolders ``<Class>/*.jpg|png|tif`` (captions written
    from the folder name and the metadata). ``metadata``: what is known of every image (gsd_m, lat, lon,
    date, sensor)."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"curate {folder}: no such folder")
    lists = [str(root / n) for n in CAPTION_LISTS if (root / n).is_file()]
    source: dict[str, Any] = {
        "name": name or root.name or "folder",
        "root": str(root),
        "metadata": {k: v for k, v in (metadata or {}).items() if v is not None},
        "label": label,
        "place": place,
        "split": split,
        "heldout": heldout,
    }
    if lists:
        source.update(kind="image_list", annotations=lists, unlisted_images=True)
    else:
        from rsgen.data.images import IMAGE_SUFFIXES

        has_classes = any(
            sub.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in sub.rglob("*"))
            for sub in root.iterdir()
        )
        if not has_classes and label is None:
            raise ConfigError(
                f"curate {folder}: found neither {' nor '.join(CAPTION_LISTS)} nor class subfolders "
                f"({folder}/<Class>/*.jpg); add one of them, or give --label for loose images"
            )
        source["kind"] = "class_folder"
    return {"sources": [source]}


def source_records(config: str | Path, source: str, split: str | None = None) -> list[dict[str, Any]]:
    """The records of one source of a curation config, without decoding (paths, labels, captions as written,
    metadata), at native GSD, of ``split`` if given: e.g. ``source_records("curated", "aid", "val")`` is the
    AID held-out set that evaluation and class judges use, chosen exactly as curation chooses it."""
    from rsgen.config import load_config

    cfg = load_config(CurateConfig, config, subdir="data")
    src = next((s for s in cfg.sources if s.name == source), None)
    if src is None:
        names = ", ".join(s.name for s in cfg.sources)
        raise ConfigError(f"curation config {config}: no source {source!r} (sources: {names})")
    return [
        r
        for r in make_reader(src, cfg.caption_seed).records()
        if (split is None or r.get("split") == split) and float(r.get("gsd_factor") or 1.0) == 1.0
    ]
