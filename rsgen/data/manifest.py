"""The manifest: one JSON record per image (JSONL, or Parquet where pyarrow is installed).

Record fields (see ``notes/contracts.md``): ``id``, ``path`` (relative to the manifest's folder, or absolute),
``window`` ``[col_off, row_off, width, height]`` or null, ``bands`` (1-based) or null, ``captions``,
``metadata`` (``Metadata.to_dict()``), ``split``, ``source``, ``label``, ``false_color``, ``gsd_factor``,
``conditions`` ``{type: path}`` or null. Curation adds ``group`` (the key the split is hashed from),
``size`` ``[width, height]`` of the decoded image, ``phash`` and ``caption_source`` (``human``: captions written
by people, kept as written; ``written``: by :class:`rsgen.data.captions.CaptionWriter` from label and metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rsgen.errors import DataError
from rsgen.metadata import Metadata

SPLITS = ("train", "val", "test")
REQUIRED_FIELDS = ("id", "path", "captions", "split")


def record_defaults(record: dict[str, Any]) -> dict[str, Any]:
    """The record with every optional contract field present."""
    out = {
        "window": None,
        "bands": None,
        "metadata": {},
        "source": "",
        "label": None,
        "false_color": False,
        "gsd_factor": 1.0,
        "conditions": None,
    }
    out.update(record)
    return out


def iter_manifest(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL manifest, streamed; a malformed line is a DataError naming the line."""
    path = Path(path)
    if path.suffix == ".parquet":
        yield from read_parquet(path)
        return
    if not path.is_file():
        raise DataError(f"manifest {path}: no such file")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise DataError(
                    f"manifest {path}:{lineno}: not UTF-8 text (a JSONL manifest is expected)"
                ) from None
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"manifest {path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"manifest {path}:{lineno}: a record must be a JSON object")
            missing = [k for k in REQUIRED_FIELDS if k not in rec]
            if missing:
                raise DataError(f"manifest {path}:{lineno}: record lacks {', '.join(missing)}")
            yield record_defaults(rec)


def read_manifest(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """All records (of one split, if given)."""
    if split is not None and split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
    return [r for r in iter_manifest(path) if split is None or r["split"] == split]


def write_manifest(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write records atomically as JSONL (``.jsonl``) or Parquet (``.parquet``); returns the count."""
    from rsgen.io import atomic_path

    path = Path(path)
    if path.suffix == ".parquet":
        return write_parquet(records, path)
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=False, ensure_ascii=False) + "\n")
            n += 1
    return n


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError(
            "Parquet manifests need the pyarrow package (pip install pyarrow); use .jsonl"
        ) from None
    return pyarrow


# Parquet stores nested fields as JSON strings so the schema stays flat and stable.
_JSON_COLUMNS = ("window", "bands", "captions", "metadata", "conditions", "size")


def write_parquet(records: Iterable[dict[str, Any]], path: Path) -> int:
    pa = _pyarrow()
    from rsgen.io import atomic_path

    rows = [{k: (json.dumps(v) if k in _JSON_COLUMNS else v) for k, v in r.items()} for r in records]
    with atomic_path(path) as tmp:
        pa.parquet.write_table(pa.Table.from_pylist(rows), tmp)
    return len(rows)


def read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    pa = _pyarrow()
    for row in pa.parquet.read_table(path).to_pylist():
        yield record_defaults(
            {k: (json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}
        )


def resolve_path(record: dict[str, Any], root: str | Path) -> Path:
    """The record's image path: absolute as given, else relative to the manifest's folder ``root``."""
    p = Path(record["path"])
    return p if p.is_absolute() else Path(root) / p


def record_metadata(record: dict[str, Any]) -> Metadata:
    """The record's Metadata (invalid metadata is a DataError naming the record)."""
    try:
        return Metadata.from_dict(record.get("metadata") or {})
    except Exception as e:  # MetadataError
        raise DataError(f"record {record.get('id')}: {e}") from None
