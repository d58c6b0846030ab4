"""Readers of image-caption sources. Each enumerates manifest records cheaply (:meth:`Reader.records`, no
pixels decoded) and, iterated, yields decoded samples ``{"image" (H, W, 3) uint8, "captions", "metadata",
"source", "label", "conditions", "record"}``; a bad sample is skipped and counted in ``reader.skipped``.

Records whose captions are to be written from the label carry a ``_caption`` instruction that
:func:`finalize_record` carries out once the image is decoded (so GSD-augmented copies are captioned with
their true GSD).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rsgen.data.captions import CaptionWriter, clean_captions
from rsgen.data.images import IMAGE_SUFFIXES, LoadedImage, SampleError, load_image
from rsgen.data.splits import heldout_by_class
from rsgen.errors import DataError, MetadataError
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)

# UC Merced land-use classes in the order of UCM-captions' numbered file names (100 images each).
UCM_CLASSES = (
    "agricultural",
    "airplane",
    "baseballdiamond",
    "beach",
    "buildings",
    "chaparral",
    "denseresidential",
    "forest",
    "freeway",
    "golfcourse",
    "harbor",
    "intersection",
    "mediumresidential",
    "mobilehomepark",
    "overpass",
    "parkinglot",
    "river",
    "runway",
    "sparseresidential",
    "storagetanks",
    "tenniscourt",
)
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


def dropped(record: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    """A record that is counted as dropped for ``reason`` without being decoded."""
    return {**record, "_drop": reason, "_drop_message": message}


def finalize_record(
    record: dict[str, Any], loaded: LoadedImage, writer: CaptionWriter | None = None
) -> dict[str, Any]:
    """Complete a record once its image is decoded: size, exact GSD of a resampled copy, captions written
    from the label. Raises SampleError("empty_caption") when no caption is left."""
    rec = {k: v for k, v in record.items() if not k.startswith("_")}
    h, w = loaded.array.shape[:2]
    rec["size"] = [w, h]
    meta = Metadata.from_dict(rec.get("metadata") or {})
    native_gsd = record.get("_native_gsd")
    if native_gsd is not None:  # a GSD-resampled copy: the true factor follows from the whole-pixel sizes
        sw, sh = loaded.source_size
        meta = meta.replace(gsd_m=float(native_gsd) * ((sw / w) * (sh / h)) ** 0.5)
    rec["metadata"] = meta.to_dict()
    spec = record.get("_caption")
    if spec is not None:
        writer = writer or CaptionWriter(seed=int(spec.get("seed", 0)))
        rec["captions"] = writer.captions(
            spec.get("label"),
            meta,
            n=int(spec.get("n", 5)),
            key=rec["id"],
            place=spec.get("place"),
            false_color=bool(rec.get("false_color")),
        )
        rec["caption_source"] = "written"
    else:
        rec["caption_source"] = "human"
    rec["captions"] = clean_captions(rec.get("captions") or [])
    phrases = record.get("_metadata_phrases")
    if phrases is not None and spec is None:  # human captions as written, plus the writer's metadata phrases
        writer = writer or CaptionWriter(seed=int(phrases.get("seed", 0)))
        rec["captions"] = writer.with_metadata(rec["captions"], meta, rec["id"], place=phrases.get("place"))
    if not rec["captions"]:
        raise SampleError("empty_caption", f"{rec['id']}: no caption left after cleaning")
    return rec


class Reader:
    """Base of all readers: common options and the decode loop."""

    kind = "base"

    def __init__(
        self,
        name: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        split: str | None = None,
        gsd_factors: Sequence[float] = (1.0,),
        captions_per_image: int = 5,
        caption_seed: int = 0,
        place: str | None = None,
        label: str | None = None,
        conditions: Mapping[str, str | Path] | None = None,
        limit: int | None = None,
        heldout: float = 0.0,
        caption_metadata: bool = True,
    ) -> None:
        try:
            self.base_metadata = Metadata.from_dict(dict(metadata or {}))
        except MetadataError as e:
            raise DataError(f"source {name}: metadata: {e}") from None
        bad = [f for f in gsd_factors if not f >= 1.0]
        if bad:
            raise DataError(f"source {name}: gsd_factors {bad}: each must be >= 1 (1 = native GSD)")
        self.name = name
        self.split = split
        self.gsd_factors = tuple(float(f) for f in gsd_factors)
        self.captions_per_image = captions_per_image
        self.caption_seed = caption_seed
        self.place = place
        self.label = label
        self.conditions = {k: Path(v) for k, v in (conditions or {}).items()}
        self.limit = limit
        if not 0.0 <= heldout < 1.0:
            raise DataError(f"source {name}: heldout {heldout}: expected a fraction in [0, 1), e.g. 0.2")
        self.heldout = heldout
        self.caption_metadata = caption_metadata
        self.skipped: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------------- records
    def entries(self) -> Iterator[dict[str, Any]]:
        """One record per source image at its native GSD (subclasses)."""
        raise NotImplementedError

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record, GSD-augmented copies included, in a stable order. With ``heldout``, that fraction of
        each class (chosen by file name, :func:`rsgen.data.splits.heldout_by_class`) is split ``val``."""
        entries: Iterator[dict[str, Any]] = itertools.islice(self.entries(), self.limit)
        if self.heldout:
            listed = list(entries)
            held = heldout_by_class(
                [Path(e["path"]).name for e in listed], [e.get("label") for e in listed], self.heldout
            )
            entries = iter([{**e, "split": "val"} if Path(e["path"]).name in held else e for e in listed])
        for entry in entries:
            if entry.get("captions") and "_caption" not in entry and self.caption_metadata:
                entry = {**entry, "_metadata_phrases": {"seed": self.caption_seed, "place": self.place}}
            yield from self.gsd_copies(entry)

    def gsd_copies(self, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The entry at each GSD factor: the whole image averaged down, with the true new GSD set once the
        decoded size is known (see :func:`finalize_record`)."""
        for f in self.gsd_factors:
            if f == 1.0:
                yield entry
                continue
            if "_drop" in entry:
                continue
            yield {
                **entry,
                "id": f"{entry['id']}@x{f:g}",
                "gsd_factor": f,
                "_native_gsd": entry.get("metadata", {}).get("gsd_m"),
            }

    def base_record(self, rid: str, path: Path, **fields: Any) -> dict[str, Any]:
        meta = fields.pop("metadata", None) or self.base_metadata
        rec: dict[str, Any] = {
            "id": f"{self.name}/{rid}",
            "path": str(path.resolve()),
            "window": None,
            "bands": None,
            "captions": [],
            "metadata": meta.to_dict(),
            "split": self.split,
            "source": self.name,
            "label": self.label,
            "false_color": False,
            "gsd_factor": 1.0,
            "conditions": self.find_conditions(path),
            "group": f"{self.name}/{rid}",
        }
        rec.update(fields)
        return rec

    def caption_spec(self, label: str | None) -> dict[str, Any]:
        return {"label": label, "n": self.captions_per_image, "seed": self.caption_seed, "place": self.place}

    def find_conditions(self, image_path: Path) -> dict[str, str] | None:
        """Condition images with the same file stem in each configured condition folder."""
        if not self.conditions:
            return None
        out = {}
        for ctype, folder in self.conditions.items():
            for suffix in (".png", ".tif", ".jpg"):
                p = folder / (image_path.stem + suffix)
                if p.is_file():
                    out[ctype] = str(p.resolve())
                    break
        return out or None

    # ------------------------------------------------------------------------------------------ samples
    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        """Decode one record into a sample; raises SampleError with a drop reason."""
        if "_drop" in record:
            raise SampleError(record["_drop"], record.get("_drop_message", record["_drop"]))
        loaded = load_image(
            record["path"], record.get("window"), record.get("bands"), float(record.get("gsd_factor") or 1.0)
        )
        rec = finalize_record(record, loaded)
        return {
            "image": loaded.array,  # (H, W, 3) uint8
            "valid": loaded.valid,  # (H, W) bool
            "captions": rec["captions"],
            "metadata": Metadata.from_dict(rec["metadata"]),
            "source": self.name,
            "label": rec.get("label"),
            "conditions": rec.get("conditions"),
            "record": rec,
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for record in self.records():
            try:
                yield self.load(record)
            except SampleError as e:
                self.skipped[e.reason] += 1
                log.warning("%s: skipped %s: %s", self.name, record.get("id"), e)


def _image_files(root: Path, extensions: Sequence[str]) -> list[Path]:
    exts = {e.lower() for e in extensions}
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())


class ClassFolderReader(Reader):
    """``root/<Class>/<image>`` (EuroSAT layout); captions written from the class label and metadata."""

    kind = "class_folder"

    def __init__(
        self, name: str, root: str | Path, *, extensions: Sequence[str] = IMAGE_SUFFIXES, **kw: Any
    ) -> None:
        super().__init__(name, **kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"source {name}: image folder {self.root} does not exist")
        self.extensions = extensions

    def entries(self) -> Iterator[dict[str, Any]]:
        for path in _image_files(self.root, self.extensions):
            label = path.parent.name if path.parent != self.root else self.label
            rid = path.relative_to(self.root).with_suffix("").as_posix()
            yield self.base_record(rid, path, label=label, _caption=self.caption_spec(label))


PATH_KEYS = ("path", "file", "filename", "file_name", "image")
CAPTION_KEYS = ("captions", "caption", "text", "sentences")


class ImageListReader(Reader):
    """Images listed with labels and/or captions, paths relative to ``root``; one or more lists, each a JSON
    list of ``{"path", "label", "captions"}`` (UCM, AID-RSICD), a JSON object ``{file: caption or [captions]}``
    or a CSV with a path column (``path``/``file``/``filename``/``image``) and optional ``label`` and
    ``caption`` columns (several rows of one file: several captions). Human captions are kept as written
    (cleaned; the caption writer may add metadata phrases); an image with a label only gets captions written
    from it. ``unlisted_images``: images under ``root`` that no list names are counted as ``no_caption``."""

    kind = "image_list"

    def __init__(
        self,
        name: str,
        root: str | Path,
        annotations: Sequence[str | Path],
        *,
        unlisted_images: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"source {name}: image folder {self.root} does not exist")
        if not annotations:
            raise DataError(f"source {name}: no image list given (annotations: a JSON or CSV file)")
        self.annotations = [Path(a) for a in annotations]
        self.unlisted_images = unlisted_images

    def entries(self) -> Iterator[dict[str, Any]]:
        listed: dict[str, tuple[str | None, list[str]]] = {}
        for path in self.annotations:
            for rel, label, captions in read_image_list(path, self.name):
                old_label, old_captions = listed.get(rel, (None, []))
                listed[rel] = (label or old_label, old_captions + captions)
        for rel, (label, captions) in listed.items():
            label = label or self.label
            rec = self.base_record(Path(rel).as_posix(), self.root / rel, label=label, captions=captions)
            yield rec if captions else {**rec, "_caption": self.caption_spec(label)}
        if self.unlisted_images:
            named = {(self.root / rel).resolve() for rel in listed}
            for path in _image_files(self.root, IMAGE_SUFFIXES):
                if path.resolve() not in named:
                    rid = path.relative_to(self.root).as_posix()  # with its suffix: a.jpg, a.png differ
                    yield dropped(
                        self.base_record(rid, path), "no_caption", f"{path}: not named in the caption list"
                    )


def read_image_list(path: Path, name: str = "") -> list[tuple[str, str | None, list[str]]]:
    """``(relative path, label or None, captions)`` per row of an image list (see :class:`ImageListReader`)."""
    where = f"source {name}: {path}" if name else str(path)
    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise DataError(f"{where}: no such file")
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix.lower() == ".json":
        data = _load_json(path, name)
        if isinstance(data, dict):
            rows = [
                {"path": k, **v} if isinstance(v, dict) else {"path": k, "captions": v}
                for k, v in data.items()
            ]
        elif isinstance(data, list) and all(isinstance(r, dict) for r in data):
            rows = data
        else:
            raise DataError(f"{where}: expected a list of records or an object file -> caption(s)")
    else:
        raise DataError(f"{where}: an image list must be a .json or .csv file")
    out = []
    for n, row in enumerate(rows, 1):
        rel = next((str(row[k]) for k in PATH_KEYS if row.get(k)), None)
        if rel is None:
            raise DataError(f"{where}: row {n} has no {'/'.join(PATH_KEYS)} column")
        raw = next((row[k] for k in CAPTION_KEYS if row.get(k)), [])
        captions = (
            [raw]
            if isinstance(raw, str)
            else [c.get("raw", "") if isinstance(c, dict) else str(c) for c in raw]
        )
        label = row.get("label") or None
        out.append((rel, str(label) if label is not None else None, [c for c in captions if str(c).strip()]))
    return out


class KarpathyReader(Reader):
    """Karpathy-format caption json (UCM-captions, Sydney-captions, RSICD) plus an image folder."""

    kind = "karpathy"

    def __init__(
        self,
        name: str,
        annotations: str | Path,
        images: str | Path,
        *,
        use_source_split: bool = True,
        label_from: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.annotations = Path(annotations)
        self.images = Path(images)
        self.use_source_split = use_source_split
        self.label_from = label_from

    def entries(self) -> Iterator[dict[str, Any]]:
        data = _load_json(self.annotations, self.name)
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list):
            raise DataError(
                f"source {self.name}: {self.annotations} has no 'images' list (not Karpathy format)"
            )
        for i, item in enumerate(images):
            sentences = item.get("sentences", []) if isinstance(item, dict) else None
            if not isinstance(sentences, list) or not all(isinstance(s, dict | str) for s in sentences):
                raise DataError(
                    f"source {self.name}: {self.annotations}: images[{i}] must be an object whose 'sentences' "
                    "is a list of {raw, tokens} objects (Karpathy format)"
                )
            fname = str(item.get("filename", ""))
            folder = self.images / str(item["filepath"]) if item.get("filepath") else self.images
            path = folder / fname
            raw = [
                s if isinstance(s, str) else s.get("raw") or " ".join(s.get("tokens", [])) for s in sentences
            ]
            split = KARPATHY_SPLITS.get(str(item.get("split"))) if self.use_source_split else None
            rec = self.base_record(
                Path(fname).stem,
                path,
                captions=raw,
                split=split or self.split,
                label=label_for(fname, self.label_from) or self.label,
            )
            yield rec


class CocoCaptionsReader(Reader):
    """COCO-captions json (``images`` + ``annotations``) plus an image folder."""

    kind = "coco"

    def __init__(
        self,
        name: str,
        annotations: str | Path,
        images: str | Path,
        *,
        label_from: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.annotations = Path(annotations)
        self.images = Path(images)
        self.label_from = label_from

    def entries(self) -> Iterator[dict[str, Any]]:
        data = _load_json(self.annotations, self.name)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DataError(
                f"source {self.name}: {self.annotations} has no 'images' list (not COCO captions)"
            )
        caps: dict[Any, list[str]] = {}
        for ann in data.get("annotations", []):
            caps.setdefault(ann.get("image_id"), []).append(ann.get("caption", ""))
        for img in sorted(data["images"], key=lambda i: str(i.get("file_name"))):
            fname = str(img.get("file_name", ""))
            yield self.base_record(
                Path(fname).stem,
                self.images / fname,
                captions=caps.get(img.get("id"), []),
                label=label_for(fname, self.label_from) or self.label,
            )


class FmowReader(Reader):
    """fMoW-style data: each image with a JSON of the same stem holding ``gsd``, ``timestamp``,
    ``cloud_cover`` (percent), ``off_nadir_angle_dbl``, ``raw_location`` (WKT polygon, lon lat) and
    ``bounding_boxes`` (``category``, ``box`` [x, y, w, h]). Optionally crops each image to its box."""

    kind = "fmow"

    def __init__(self, name: str, root: str | Path, *, crop_to_box: bool = False, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"source {name}: folder {self.root} does not exist")
        self.crop_to_box = crop_to_box

    def entries(self) -> Iterator[dict[str, Any]]:
        for js in sorted(self.root.rglob("*.json")):
            image = next((js.with_suffix(s) for s in IMAGE_SUFFIXES if js.with_suffix(s).is_file()), None)
            rid = js.relative_to(self.root).with_suffix("").as_posix()
            if image is None:
                continue
            base = self.base_record(rid, image)
            try:
                info = json.loads(js.read_text())
                meta, label, box = fmow_metadata(info)
            except (json.JSONDecodeError, MetadataError, ValueError, TypeError, KeyError) as e:
                yield dropped(base, "bad_metadata", f"{js}: {e}")
                continue
            label = label or self.label
            yield {
                **base,
                "metadata": self.base_metadata.merged_with(meta).to_dict(),
                "label": label,
                "window": box if self.crop_to_box else None,
                "_caption": self.caption_spec(label),
            }


def fmow_metadata(info: Mapping[str, Any]) -> tuple[Metadata, str | None, list[int] | None]:
    """Metadata, category and first bounding box of one fMoW JSON."""
    lat = lon = None
    loc = info.get("raw_location") or ""
    nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", str(loc))]
    if len(nums) >= 2:
        lons, lats = nums[0::2], nums[1::2]
        pts = list(zip(lons, lats, strict=False))
        if len(pts) > 1 and pts[0] == pts[-1]:
            pts = pts[:-1]
        lon, lat = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    cloud = info.get("cloud_cover")
    if cloud is not None:
        cloud = float(cloud) / 100.0 if float(cloud) > 1.0 else float(cloud)
    meta = Metadata(
        gsd_m=info.get("gsd"),
        lat=lat,
        lon=lon,
        date=info.get("timestamp"),
        cloud_cover=cloud,
        off_nadir_deg=info.get("off_nadir_angle_dbl"),
        sensor=info.get("sensor_platform_name"),
        extra={k: info[k] for k in ("country_code", "utm") if k in info},
    )
    boxes = info.get("bounding_boxes") or []
    label = boxes[0].get("category") if boxes else None
    box = [int(v) for v in boxes[0]["box"]] if boxes and boxes[0].get("box") else None
    return meta, label, box


def label_for(filename: str, rule: str | None) -> str | None:
    """A class label from a file name: ``ucm_index`` (UCM-captions numbering), ``prefix`` (RSICD
    ``square_221.jpg`` -> ``square``), or a regular expression with one group."""
    if not rule:
        return None
    stem = Path(filename).stem
    if rule == "ucm_index":
        return UCM_CLASSES[(int(stem) - 1) // 100] if stem.isdigit() and 1 <= int(stem) <= 2100 else None
    if rule == "prefix":
        m = re.match(r"([A-Za-z]+(?:_[A-Za-z]+)*?)_?\d+$", stem)
        return m.group(1) if m else None
    m = re.search(rule, stem)
    return m.group(1) if m else None


def _load_json(path: Path, name: str) -> Any:
    if not path.is_file():
        raise DataError(f"source {name}: annotation file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"source {name}: {path}: invalid JSON ({e.msg} at line {e.lineno})") from None
