"""WebDataset tar shards: written from manifest records, read back as a stream with bounded memory.

Each sample is ``<key>.png`` (or ``.jpg``: the decoded, windowed, band-selected, resampled RGB pixels) plus
``<key>.json`` (the manifest record). The files follow the WebDataset layout, so ``webdataset.WebDataset``
reads them too; :func:`iter_shards` needs only the standard library and keeps one sample in memory.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from rsgen.data.dataset import square_resize, to_tensor
from rsgen.data.images import SampleError, encode_jpeg, encode_png, load_image
from rsgen.data.manifest import resolve_path
from rsgen.errors import DataError
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)


def shard_key(record_id: str) -> str:
    """A WebDataset key: no dots (they separate the extension) and no slashes."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", record_id)


class ShardWriter:
    """Writes samples into ``<folder>/shard-000000.tar``, ... with at most ``max_samples`` per shard; each shard
    is written under a temporary name and renamed when complete."""

    def __init__(self, folder: str | Path, max_samples: int = 5000, prefix: str = "shard") -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_samples = max_samples
        self.prefix = prefix
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0
        self._keys: set[str] = set()

    def _open(self) -> None:
        path = self.folder / f"{self.prefix}-{len(self.paths):06d}.tar"
        self.paths.append(path)
        self._tar = tarfile.open(path.with_suffix(".tar.tmp"), "w")  # noqa: SIM115 - closed in _close_current
        self._count = 0

    def _close_current(self) -> None:
        if self._tar is not None:
            self._tar.close()
            tmp = self.paths[-1].with_suffix(".tar.tmp")
            tmp.replace(self.paths[-1])
            self._tar = None

    def write(self, key: str, files: dict[str, bytes]) -> None:
        """Add one sample: ``files`` maps an extension (``png``, ``json``) to its bytes."""
        if key in self._keys:
            raise DataError(f"shard key {key!r} written twice")
        self._keys.add(key)
        if self._tar is None or self._count >= self.max_samples:
            self._close_current()
            self._open()
        assert self._tar is not None
        for ext, data in files.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mtime = int(time.time())
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1

    def close(self) -> list[Path]:
        self._close_current()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_shards(
    records: Sequence[dict[str, Any]],
    folder: str | Path,
    *,
    root: str | Path = ".",
    max_samples: int = 5000,
    image_format: str = "png",
) -> list[Path]:
    """Decode each record (window, bands, GSD factor applied) and write it with its record into shards, one
    set of shards per split (``<folder>/<split>-000000.tar``). Records that fail to decode are skipped."""
    encode = encode_png if image_format == "png" else encode_jpeg
    by_split: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_split.setdefault(r.get("split", "train"), []).append(r)
    paths: list[Path] = []
    for split, recs in sorted(by_split.items()):
        with ShardWriter(folder, max_samples, prefix=split) as writer:
            for r in recs:
                try:
                    loaded = load_image(
                        resolve_path(r, root),
                        r.get("window"),
                        r.get("bands"),
                        float(r.get("gsd_factor") or 1.0),
                    )
                except SampleError as e:
                    log.warning("shards: skipped %s: %s", r["id"], e)
                    continue
                writer.write(
                    shard_key(r["id"]), {image_format: encode(loaded.array), "json": json.dumps(r).encode()}
                )
            paths += writer.paths
    return paths


def iter_shards(paths: Sequence[str | Path]) -> Iterator[dict[str, Any]]:
    """Stream samples ``{"__key__", "image" (H, W, 3) uint8, "record", ...}`` from shards; one sample is held
    in memory at a time. A corrupt member is skipped; a truncated shard ends early with a warning."""
    image_exts = ("png", "jpg", "jpeg", "tif", "tiff", "webp")
    for path in paths:
        try:
            tar = tarfile.open(path, "r|*")  # noqa: SIM115 - streaming mode, one member at a time; closed below
        except (tarfile.TarError, OSError) as e:
            log.warning("shard %s unreadable: %s", path, e)
            continue
        current: dict[str, Any] = {}
        try:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if current and current["__key__"] != key:
                    yield from _decode(current, image_exts)
                    current = {}
                f = tar.extractfile(member)
                current.setdefault("__key__", key)
                current[ext.lower()] = f.read() if f is not None else b""
            if current:
                yield from _decode(current, image_exts)
        except (tarfile.TarError, OSError, EOFError) as e:
            log.warning("shard %s truncated or corrupt: %s", path, e)
        finally:
            tar.close()


def _decode(raw: dict[str, Any], image_exts: Sequence[str]) -> Iterator[dict[str, Any]]:
    ext = next((e for e in image_exts if e in raw), None)
    if ext is None or "json" not in raw:
        log.warning("shard sample %s lacks an image or json; skipped", raw.get("__key__"))
        return
    try:
        loaded = load_image(Path(f"sample.{ext}"), data=raw[ext])
        record = json.loads(raw["json"])
    except (SampleError, json.JSONDecodeError) as e:
        log.warning("shard sample %s unreadable (%s); skipped", raw["__key__"], e)
        return
    yield {"__key__": raw["__key__"], "image": loaded.array, "record": record}


class ShardDataset(IterableDataset):
    """Streams training items (as :class:`~rsgen.data.dataset.ImageCaptionDataset` gives them) from shards;
    shards are divided among DataLoader workers and, with ``rank``/``world_size``, among processes."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        image_size: int = 64,
        random_caption: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("ShardDataset: no shard paths given")
        self.image_size = image_size
        self.random_caption = random_caption
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        part = self.paths[self.rank :: self.world_size][wid::nw]
        for n, sample in enumerate(iter_shards(part)):
            rec = sample["record"]
            pixels, scale = square_resize(sample["image"], self.image_size)
            meta = Metadata.from_dict(rec.get("metadata") or {})
            if meta.gsd_m is not None and scale != 1.0:
                meta = meta.replace(gsd_m=meta.gsd_m * scale)
            caps = rec.get("captions") or [""]
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, wid, n])
            caption = caps[int(rng.integers(len(caps)))] if self.random_caption else caps[0]
            yield {
                "pixel_values": to_tensor(pixels),
                "caption": caption,
                "metadata": meta,
                "index": n,
                "source": rec.get("source", ""),
                "label": rec.get("label"),
            }
