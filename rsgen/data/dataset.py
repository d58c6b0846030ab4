"""Training-side view of a manifest: a map-style ``torch`` dataset of (image, caption, metadata) samples.

A sample that fails to decode is skipped (the next record is returned instead) and counted in
``dataset.skipped``, never fatal. Images are centre-cropped to a square and resized to ``image_size`` (or,
with size bucketing, to the (height, width) bucket closest to their aspect ratio); the returned metadata's
``gsd_m`` is the GSD of the returned pixels (the record's GSD times the resize factor), so a model never sees
a GSD that does not match its input.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rsgen.data.images import load_image
from rsgen.data.manifest import SPLITS, iter_manifest, record_defaults, record_metadata, resolve_path
from rsgen.data.resampling import show_at
from rsgen.errors import DataError
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)


def square_resize(array: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Centre-crop (H, W, 3) uint8 to a square and resize it to (size, size, 3); returns it and the scale
    (source pixels per output pixel, i.e. the factor the GSD grows by)."""
    return crop_resize(array, size, size)


def crop_resize(array: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float]:
    """Centre-crop (H, W, 3) uint8 to the aspect ratio of ``height`` x ``width`` (the largest such crop) and
    resize it to (height, width, 3); returns it and the scale (source pixels per output pixel; when rounding
    the crop to whole pixels makes the two axes differ slightly, their geometric mean, as the area GSD)."""
    h, w = array.shape[:2]
    s = min(h / height, w / width)
    ch, cw = (h, w) if h * width == w * height else (min(h, round(height * s)), min(w, round(width * s)))
    if height == width:
        ch = cw = min(h, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = array[top : top + ch, left : left + cw]
    if (ch, cw) == (height, width):
        return np.ascontiguousarray(crop), 1.0
    out = show_at(crop, height, width)
    sy, sx = ch / height, cw / width
    return out, sy if sy == sx else math.sqrt(sy * sx)


def nearest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> int:
    """Index of the (height, width) bucket whose aspect ratio is closest (in log ratio) to width x height."""
    ratio = math.log(width / height)
    return min(range(len(buckets)), key=lambda i: abs(math.log(buckets[i][1] / buckets[i][0]) - ratio))


def random_orientation(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) -> one of its orientations, same shape: a rotation by a multiple of 90 degrees (180 only when
    H != W, so the shape is kept) then, with probability 1/2, a mirror image."""
    h, w = array.shape[:2]
    k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
    out = np.rot90(array, k, axes=(0, 1))
    if rng.integers(2):
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1)  # (3, H, W)
    return t / 127.5 - 1.0


class ImageCaptionDataset(Dataset):
    """Samples of one split of a manifest.

    Item: ``{"pixel_values": (3, S, S) float in [-1, 1], "caption": str, "metadata": Metadata, "index": int,
    "source": str, "label": str | None}``. ``random_caption`` picks one of the record's captions per epoch
    (deterministic in seed, epoch and index; see :meth:`set_epoch`), else always the first.
    ``sources`` keeps only those sources; ``allow_upsampling=False`` drops records smaller than ``image_size``
    (e.g. 32 px GSD copies when training at 64 px, where upsampling would only blur them back to the native GSD).

    ``flips_rotations``: each sample is shown in one of the 8 orientations of the square's symmetry group
    (rotations by 90 degrees and mirror images; non-square buckets: rotation by 180 degrees and mirror images),
    drawn per epoch like the caption. A nadir image has no "up": every orientation is an image the sensor
    could have taken, with the same GSD, date and place (see docs/data.md).

    ``buckets`` (size bucketing): (height, width) shapes; each record is shown at the bucket closest to its
    aspect ratio (from the record's ``size``, without decoding; no ``size``: the bucket closest to square),
    centre-cropped and resized to it, and ``pixel_values`` is (3, height, width); ``allow_upsampling=False``
    then drops records smaller than their bucket. :attr:`bucket_ids` says which bucket each record is in.
    """

    def __init__(
        self,
        manifest: str | Path | Sequence[dict[str, Any]],
        split: str | None = "train",
        image_size: int = 64,
        random_caption: bool = True,
        seed: int = 0,
        *,
        root: str | Path | None = None,
        sources: Sequence[str] | None = None,
        allow_upsampling: bool = True,
        max_retries: int = 20,
        buckets: Sequence[tuple[int, int]] | None = None,
        flips_rotations: bool = False,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise DataError(f"split {split!r}: expected one of {', '.join(SPLITS)} (or None for all)")
        if image_size < 1:
            raise DataError(f"image_size={image_size}: expected a positive number of pixels")
        self.buckets = [(int(h), int(w)) for h, w in buckets] if buckets is not None else None
        if self.buckets is not None and (not self.buckets or min(min(b) for b in self.buckets) < 1):
            raise DataError(
                f"buckets={buckets}: expected a non-empty list of positive (height, width) shapes"
            )
        if isinstance(manifest, str | Path):
            self.root = Path(root) if root is not None else Path(manifest).parent
            records = iter_manifest(manifest)
        else:
            self.root = Path(root) if root is not None else Path.cwd()
            records = (record_defaults(r) for r in manifest)
        self.records = [
            r
            for r in records
            if (split is None or r["split"] == split)
            and (sources is None or r.get("source") in sources)
            and (allow_upsampling or self._fits(r, image_size))
        ]
        self.split = split
        self.image_size = image_size
        self.random_caption = random_caption
        self.seed = seed
        self.epoch = 0
        self.max_retries = max_retries
        self.skipped = 0
        self.flips_rotations = flips_rotations

    def __len__(self) -> int:
        return len(self.records)

    def _fits(self, record: dict[str, Any], image_size: int) -> bool:
        """Whether the record is at least as large as the shape it is shown at (no upsampling)."""
        if self.buckets is None:
            return min(record.get("size") or [image_size]) >= image_size
        if not record.get("size"):
            return True
        w, h = record["size"]
        bh, bw = self.buckets[self.bucket_of(record)]
        return h >= bh and w >= bw

    def bucket_of(self, record: dict[str, Any]) -> int:
        """The bucket a record is shown at (0 when bucketing is off)."""
        if self.buckets is None:
            return 0
        w, h = record.get("size") or (1, 1)
        return nearest_bucket(int(w), int(h), self.buckets)

    @property
    def bucket_ids(self) -> list[int]:
        """Per record, the index of its bucket in :attr:`buckets` (all 0 when bucketing is off)."""
        return [self.bucket_of(r) for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Change the random caption choice (call once per epoch)."""
        self.epoch = epoch

    @property
    def labels(self) -> list[str | None]:
        return [r.get("label") for r in self.records]

    def load(self, index: int) -> dict[str, Any]:
        """One sample; raises DataError when its image cannot be used."""
        rec = self.records[index]
        loaded = load_image(
            resolve_path(rec, self.root),
            rec.get("window"),
            rec.get("bands"),
            float(rec.get("gsd_factor") or 1.0),
        )
        if self.buckets is None:
            pixels, scale = square_resize(loaded.array, self.image_size)
        else:
            pixels, scale = crop_resize(loaded.array, *self.buckets[self.bucket_of(rec)])
        meta = record_metadata(rec)
        if meta.gsd_m is not None and scale > 1.0:
            # Shown smaller than stored: each pixel covers more ground. Shown larger (upsampled), the image holds
            # no finer detail than its source, so its *effective* GSD stays the source's (a 16 px 40 m copy
            # shown at 64 px is a 40 m image, not a 10 m one): the GSD the model learns is what it looks like.
            meta = meta.replace(gsd_m=meta.gsd_m * scale)
        if self.flips_rotations:
            pixels = random_orientation(pixels, np.random.default_rng([self.seed, self.epoch, index, 1]))
        captions = rec.get("captions") or [""]
        if self.random_caption and len(captions) > 1:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            caption = captions[int(rng.integers(len(captions)))]
        else:
            caption = captions[0]
        return {
            "pixel_values": to_tensor(pixels),  # (3, S, S); bucketed: (3, height, width)
            "caption": caption,
            "metadata": meta,
            "index": index,
            "source": rec.get("source", ""),
            "label": rec.get("label"),
        }

    def _fallbacks(self, index: int) -> Iterator[int]:
        """``index``, then the records after it (wrapping around) that may stand in for it when it fails to
        load: with bucketing only those of the same bucket, so that a batch keeps one shape."""
        n = len(self.records)
        want = self.bucket_of(self.records[index % n]) if self.buckets is not None else None
        for k in itertools.count():
            i = (index + k) % n
            if want is None or self.bucket_of(self.records[i]) == want:
                yield i

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.records:
            raise IndexError("empty dataset")
        for i in itertools.islice(self._fallbacks(index), self.max_retries):
            try:
                return self.load(i)
            except DataError as e:
                self.skipped += 1
                log.warning("skipping sample %d (%s): %s", i, self.records[i].get("id"), e)
        raise DataError(
            f"{self.max_retries} consecutive samples from index {index} failed to load; "
            f"is the manifest's image folder {self.root} right?"
        )


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items of :class:`ImageCaptionDataset` (of one shape): ``pixel_values`` (B, 3, S, S), ``captions`` list[str],
    ``metadata`` list[Metadata], ``index`` LongTensor (B,), ``labels`` list."""
    return {
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),  # (B, 3, S, S)
        "captions": [s["caption"] for s in samples],
        "metadata": [s["metadata"] if s["metadata"] is not None else Metadata() for s in samples],
        "index": torch.tensor([int(s["index"]) for s in samples], dtype=torch.long),  # (B,)
        "labels": [s.get("label") for s in samples],
    }
