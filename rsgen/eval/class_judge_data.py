"""The real labelled images the class judges learn from and are scored on (EuroSAT, UC Merced, AID).

Splits: EuroSAT's ``train`` / ``val`` folders, UC Merced's ``train.json`` / ``val.json``, and for AID (which
ships no split) every fifth image of each class in file-name order is held out (:func:`aid_is_held_out`).
A file that cannot be decoded is skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rsgen.errors import DataError
from rsgen.eval.class_judge_training import JudgeTrainingSet

log = logging.getLogger(__name__)

LABEL_SETS = ("eurosat", "ucm", "aid")
AID_HELD_OUT_EVERY = 5


def aid_is_held_out(index_in_class: int) -> bool:
    """AID's held-out rule: the image at this position in its class's sorted file list is for evaluation."""
    return index_in_class % AID_HELD_OUT_EVERY == 0


def _eurosat(root: Path, split: str) -> list[tuple[Path, str]]:
    table = root / "eurosat-rgb" / f"{split}.csv"
    if not table.is_file():
        raise DataError(f"EuroSAT split table not found: {table}")
    with table.open(newline="") as f:
        return [(root / "eurosat-rgb" / r["path"], r["label"]) for r in csv.DictReader(f)]


def _ucm(root: Path, split: str) -> list[tuple[Path, str]]:
    table = root / "ucm" / f"{split}.json"
    if not table.is_file():
        raise DataError(f"UC Merced split file not found: {table}")
    return [(root / "ucm" / r["path"], r["label"]) for r in json.loads(table.read_text())]


def _aid(root: Path, split: str) -> list[tuple[Path, str]]:
    base = root / "aid-rsicd"
    rows: dict[str, str] = {}
    captions = base / "captions_val.json"
    extra = base / "labels_extra.csv"
    if not captions.is_file() or not extra.is_file():
        raise DataError(f"AID files not found under {base} (captions_val.json, labels_extra.csv)")
    for r in json.loads(captions.read_text()):
        rows[r["path"]] = r["label"]
    with extra.open(newline="") as f:
        for r in csv.DictReader(f):
            rows[r["path"]] = r["label"]
    by_class: dict[str, list[str]] = {}
    for path, label in rows.items():
        by_class.setdefault(label, []).append(path)
    want_held_out = split != "train"
    out = []
    for label in sorted(by_class):
        for i, path in enumerate(sorted(by_class[label])):
            if aid_is_held_out(i) == want_held_out:
                out.append((base / path, label))
    return out


LISTERS: dict[str, Callable[[Path, str], list[tuple[Path, str]]]] = {
    "eurosat": _eurosat,
    "ucm": _ucm,
    "aid": _aid,
}


def list_judge_images(name: str, root: Path, split: str) -> list[tuple[Path, str]]:
    """``(path, class name)`` of label set ``name``'s ``split`` (``train`` or ``val``) under the data root."""
    if name not in LISTERS:
        raise DataError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}")
    if split not in ("train", "val"):
        raise DataError(f"split must be 'train' or 'val', got {split!r}")
    return LISTERS[name](Path(root), split)


def decode_square(data: bytes | Path, size: int) -> np.ndarray:
    """An image file (path or bytes) as RGB uint8 ``(3, size, size)``, resized with Lanczos when needed; its size
    is checked from the header before decoding (:func:`rsgen.safety.open_image`)."""
    import io

    from rsgen.safety import open_image

    with open_image(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.LANCZOS)
        return np.asarray(im).transpose(2, 0, 1).copy()


def build_set(
    name: str, items: Iterable[tuple[bytes | Path, str]], size: int, classes: tuple[str, ...] | None = None
) -> tuple[JudgeTrainingSet, int]:
    """Decode ``(file, class)`` pairs into a :class:`JudgeTrainingSet` of ``size`` px; returns it and the skip count."""
    items = list(items)
    classes = classes or tuple(sorted({label for _, label in items}))
    index = {c: i for i, c in enumerate(classes)}
    images, labels, skipped = [], [], 0
    for data, label in items:
        try:
            images.append(decode_square(data, size))
        except (
            DataError,
            OSError,
            ValueError,
        ) as e:  # DataError: unreadable or too large (safety.open_image)
            skipped += 1
            log.warning("%s: skipped an unreadable image (%s)", name, e)
            continue
        labels.append(index[label])
    if not images:
        raise DataError(f"{name}: no readable images")
    return (
        JudgeTrainingSet(
            name, classes, torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long)
        ),
        skipped,
    )


def load_judge_set(
    name: str, root: Path, split: str, size: int, classes: tuple[str, ...] | None = None
) -> tuple[JudgeTrainingSet, int]:
    """One label set's real images of ``split`` at ``size`` px, and how many files were skipped."""
    return build_set(name, list_judge_images(name, root, split), size, classes)
