"""Duplicate detection: an exact pixel hash and a 64-bit perceptual hash (DCT pHash) with a near-duplicate
index (Hamming distance, pigeonhole lookup so each query touches only a few candidates).

Two images are not duplicates of each other when they share a group (a GSD copy of its own original) or
carry different acquisition dates (a re-visit of the same place is a time series, not a duplicate).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

_N = 32
_DCT = np.cos(np.pi / _N * (np.arange(_N)[:, None]) * (np.arange(_N)[None, :] + 0.5))  # (32, 32) DCT-II basis


def exact_hash(array: np.ndarray) -> str:
    """Hash of the decoded pixels and their shape (identical images, whatever the file encoding)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(array.shape).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def grey_std(array: np.ndarray) -> float:
    """Standard deviation of the grey image (0-255): near 0 means blank."""
    return float(np.asarray(array, dtype=np.float32).mean(axis=2).std())


def phash(array: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an (H, W, 3) uint8 image: robust to re-encoding, small shifts of
    brightness and rescaling (a downsampled copy hashes like its original)."""
    grey = (
        Image.fromarray(np.ascontiguousarray(array)).convert("L").resize((_N, _N), Image.Resampling.LANCZOS)
    )
    g = np.asarray(grey, dtype=np.float64)
    coeffs = (_DCT @ g @ _DCT.T)[:8, :8].ravel()  # (64,) lowest frequencies
    med = np.median(coeffs[1:])
    bits = coeffs > med
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def thumbnail(array: np.ndarray) -> bytes:
    """4x4 RGB thumbnail (48 bytes): confirms a pHash match in colour and coarse layout, since a pHash alone
    matches smooth images of different content (calm water vs. a bare field)."""
    small = Image.fromarray(np.ascontiguousarray(array)).resize((4, 4), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.uint8).tobytes()


def thumbnail_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference (0-255) of two thumbnails."""
    return float(np.abs(np.frombuffer(a, np.uint8).astype(np.int16) - np.frombuffer(b, np.uint8)).mean())


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@dataclass
class _Entry:
    id: str
    group: str
    date: str | None
    thumb: bytes = b""


@dataclass
class DuplicateIndex:
    """Exact and near-duplicate lookup over the images kept so far."""

    max_distance: int = 2
    max_thumbnail_difference: float = 8.0
    exact: dict[str, _Entry] = field(default_factory=dict)
    _entries: list[tuple[int, _Entry]] = field(default_factory=list)
    _buckets: list[dict[int, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._chunks = self._chunk_bounds(self.max_distance + 1)
        self._buckets = [{} for _ in self._chunks]

    @staticmethod
    def _chunk_bounds(n: int) -> list[tuple[int, int]]:
        # Split 64 bits into n chunks: two hashes within distance n - 1 agree exactly on at least one chunk.
        edges = np.linspace(0, 64, n + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]

    def _keys(self, h: int) -> list[int]:
        return [(h >> a) & ((1 << (b - a)) - 1) for a, b in self._chunks]

    @staticmethod
    def _related(a: _Entry, b: _Entry) -> bool:
        """Pairs that are never duplicates: same group, or different known dates."""
        return a.group == b.group or (a.date is not None and b.date is not None and a.date != b.date)

    def find(
        self, xhash: str, ph: int | None, group: str, date: str | None, thumb: bytes = b""
    ) -> tuple[str, str] | None:
        """``("exact_duplicate" | "near_duplicate", id of the kept image)`` or None. A near duplicate is within
        ``max_distance`` bits of pHash and, where both have thumbnails, within ``max_thumbnail_difference``."""
        me = _Entry("", group, date)
        hit = self.exact.get(xhash)
        if hit is not None and not self._related(hit, me):
            return "exact_duplicate", hit.id
        if ph is None or self.max_distance < 0:
            return None
        seen: set[int] = set()
        for bucket, key in zip(self._buckets, self._keys(ph), strict=True):
            for i in bucket.get(key, ()):
                if i in seen:
                    continue
                seen.add(i)
                other_hash, other = self._entries[i]
                if hamming(other_hash, ph) > self.max_distance or self._related(other, me):
                    continue
                if (
                    thumb
                    and other.thumb
                    and thumbnail_distance(thumb, other.thumb) > self.max_thumbnail_difference
                ):
                    continue
                return "near_duplicate", other.id
        return None

    def add(
        self, rid: str, xhash: str, ph: int | None, group: str, date: str | None, thumb: bytes = b""
    ) -> None:
        entry = _Entry(rid, group, date, thumb)
        self.exact.setdefault(xhash, entry)
        if ph is None:
            return
        i = len(self._entries)
        self._entries.append((ph, entry))
        for bucket, key in zip(self._buckets, self._keys(ph), strict=True):
            bucket.setdefault(key, []).append(i)
