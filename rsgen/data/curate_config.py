"""Typed configuration of a curation run (``configs/data/<name>.yaml``), and the reader each source makes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rsgen.errors import ConfigError
from rsgen.paths import REPO_ROOT, datasets_dir

SourceKind = Literal["class_folder", "karpathy", "coco", "fmow", "geotiff_windows"]


@dataclass
class SourceConfig:
    """One source. ``root``: image folder (GeoTIFF folder or file for ``geotiff_windows``); ``annotations``:
    caption json (karpathy / coco). ``split``: a fixed split for every record, or null for the stable hash split.
    Paths may use ``${datasets}`` (the shared real data sets) and are otherwise relative to the repository."""

    name: str
    kind: SourceKind
    root: str = ""
    annotations: str = ""
    split: Literal["train", "val", "test"] | None = None
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
    from rsgen.data.readers import ClassFolderReader, CocoCaptionsReader, FmowReader, KarpathyReader

    common: dict[str, Any] = dict(
        metadata=src.metadata,
        split=src.split,
        gsd_factors=src.gsd_factors,
        captions_per_image=src.captions_per_image,
        caption_seed=caption_seed,
        place=src.place,
        label=src.label,
        limit=src.limit,
        conditions={k: expand_path(v) for k, v in src.conditions.items()},
    )
    if src.kind == "class_folder":
        return ClassFolderReader(src.name, expand_path(src.root), **common)
    if src.kind == "karpathy":
        return KarpathyReader(
            src.name,
            expand_path(src.annotations),
            expand_path(src.root),
            use_source_split=src.use_source_split,
            label_from=src.label_from,
            **common,
        )
    if src.kind == "coco":
        return CocoCaptionsReader(
            src.name, expand_path(src.annotations), expand_path(src.root), label_from=src.label_from, **common
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
