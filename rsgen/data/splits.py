"""Stable train/val/test assignment: a split is a pure function of a record's group key and a salt, so
re-running curation or adding files never moves an existing record to another split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from rsgen.errors import DataError


def split_fraction(key: str, salt: str = "rsgen") -> float:
    """A uniform number in [0, 1) determined by ``key`` (blake2b, independent of Python's hash seed)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_split(key: str, val: float = 0.05, test: float = 0.05, salt: str = "rsgen") -> str:
    """``train`` / ``val`` / ``test`` for a group key; records that share a key (copies of one image, windows
    of one place) always share a split."""
    if val < 0 or test < 0 or val + test >= 1:
        raise DataError(f"split fractions val={val}, test={test}: each must be >= 0 and together < 1")
    u = split_fraction(key, salt)
    if u < test:
        return "test"
    if u < test + val:
        return "val"
    return "train"


def heldout_by_class(
    keys: Sequence[str], labels: Sequence[str | None], fraction: float, salt: str = "rsgen-heldout"
) -> set[str]:
    """The held-out keys: per label, the ``round(fraction * n)`` keys (file names) with the smallest
    :func:`split_fraction`, so every class is held out in the same proportion, the choice is a pure function of
    the files and adding a file moves at most one other per class."""
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"held-out fraction {fraction}: expected a number in [0, 1)")
    by_label: dict[str | None, list[str]] = {}
    for key, label in zip(keys, labels, strict=True):
        by_label.setdefault(label, []).append(key)
    out: set[str] = set()
    for members in by_label.values():
        ranked = sorted(set(members), key=lambda k: (split_fraction(k, salt), k))
        out.update(ranked[: round(fraction * len(ranked))])
    return out
