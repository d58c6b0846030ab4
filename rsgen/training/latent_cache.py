"""Latent caching: encode every training image once with the frozen VAE and keep the posterior (mean, std)
on disk in safetensors shards, with each sample's captions, metadata and any mode-specific extras (the
low-res input of a super-resolution stage, a ControlNet's condition image). Training then samples latents
from the cached posterior and never decodes an image again.

With size bucketing (a dataset with ``buckets``) samples of different shapes are encoded bucket by bucket;
a shard then holds one tensor per bucket and name, keyed ``"<name>@<H>x<W>"`` (pixel shape), and each row
of its JSONL records its ``shape`` [H, W]; rows of one shape follow the order of that shape's tensors."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from rsgen.io import atomic_path, atomic_write_json
from rsgen.metadata import Metadata

log = logging.getLogger(__name__)

SHARD_SIZE = 2048

#: ``extras(batch) -> {name: (B, ...) tensor}``: mode-specific tensors cached beside the latents.
ExtrasFn = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def cache_fingerprint(parts: dict[str, Any]) -> str:
    """Hash of everything that determines the cache content (manifest, image size, VAE, extras)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_is_complete(cache_dir: str | Path) -> bool:
    """Whether ``cache_dir`` holds a finished cache (its ``cache.json`` says ``complete``)."""
    info = Path(cache_dir) / "cache.json"
    return info.is_file() and bool(json.loads(info.read_text()).get("complete"))


@torch.no_grad()
def build_latent_cache(
    dataset: Dataset,
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    cache_dir: str | Path,
    fingerprint: str,
    extras: ExtrasFn | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> Path:
    """Encode ``dataset`` into ``cache_dir`` (resumable shard by shard; reused when the fingerprint matches).

    ``encode(pixels (B, 3, S, S)) -> (mean, std)``, each (B, C, h, w). Returns the cache folder. A dataset
    with ``buckets`` (and ``bucket_ids``) is encoded one bucket at a time (batches of one shape).
    """
    cache_dir = Path(cache_dir)
    info_path = cache_dir / "cache.json"
    n = len(dataset)  # type: ignore[arg-type]
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fingerprint and info.get("complete"):
            return cache_dir
        if info.get("fingerprint") != fingerprint:
            for f in cache_dir.glob("shard-*"):
                f.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(info_path, {"fingerprint": fingerprint, "num_samples": n, "complete": False})
    records = getattr(dataset, "records", None)
    bucket_ids = dataset.bucket_ids if getattr(dataset, "buckets", None) is not None else None
    shards = range(0, n, SHARD_SIZE)
    for shard_no, start in enumerate(tqdm(shards, desc="caching latents", unit="shard")):
        tensors_path = cache_dir / f"shard-{shard_no:05d}.safetensors"
        rows_path = cache_dir / f"shard-{shard_no:05d}.jsonl"
        if tensors_path.is_file() and rows_path.is_file():
            continue
        indices = list(range(start, min(start + SHARD_SIZE, n)))
        if bucket_ids is None:
            groups = [indices]
        else:
            groups = [
                [i for i in indices if bucket_ids[i] == b] for b in sorted({bucket_ids[i] for i in indices})
            ]
        parts: dict[str, list[torch.Tensor]] = {}
        rows: list[str] = []
        for group in groups:
            loader = DataLoader(
                torch.utils.data.Subset(dataset, group),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=collate,
            )
            for batch in loader:
                h, w = batch["pixel_values"].shape[-2:]  # (B, 3, H, W): one shape per batch
                suffix = "" if bucket_ids is None else f"@{h}x{w}"
                mean, std = encode(batch["pixel_values"])
                parts.setdefault("mean" + suffix, []).append(mean.half().cpu())
                parts.setdefault("std" + suffix, []).append(std.half().cpu())
                for name, value in (extras(batch) if extras else {}).items():
                    parts.setdefault(name + suffix, []).append(value.cpu())
                for j, idx in enumerate(batch["index"].tolist()):
                    rec = records[idx] if records is not None else None
                    captions = (
                        list(rec.get("captions") or [""]) if rec is not None else [batch["captions"][j]]
                    )
                    meta = batch["metadata"][j]
                    row = {
                        "index": idx,
                        "captions": captions,
                        "metadata": meta.to_dict(),
                        "label": batch["labels"][j],
                    }
                    if bucket_ids is not None:
                        row["shape"] = [int(h), int(w)]
                    rows.append(json.dumps(row))
        with atomic_path(tensors_path) as tmp:
            save_file({k: torch.cat(v).contiguous() for k, v in parts.items()}, str(tmp))
        with atomic_path(rows_path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    atomic_write_json(info_path, {"fingerprint": fingerprint, "num_samples": n, "complete": True})
    return cache_dir


class CachedLatentDataset(Dataset):
    """Items of a latent cache: ``latent_mean``/``latent_std`` (C, h, w) float32, ``caption`` (one of the
    record's captions, chosen per epoch like :class:`rsgen.data.dataset.ImageCaptionDataset` does),
    ``metadata``, ``index``, ``label`` and the cached extras. A bucketed cache has items of several shapes:
    ``buckets`` lists the pixel shapes (H, W) and ``bucket_ids`` each item's (None / all 0 when unbucketed)."""

    def __init__(self, cache_dir: str | Path, random_caption: bool = True, seed: int = 0) -> None:
        cache_dir = Path(cache_dir)
        tensors: dict[str, dict[str, list[torch.Tensor]]] = {}  # shape key ("" unbucketed) -> name -> parts
        counts: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.locate: list[tuple[str, int]] = []  # item -> (shape key, row in that shape's tensors)
        for path in sorted(cache_dir.glob("shard-*.safetensors")):
            for k, v in load_file(str(path)).items():
                name, _, key = k.partition("@")
                tensors.setdefault(key, {}).setdefault(name, []).append(v)
            for line in path.with_suffix(".jsonl").read_text().splitlines():
                if not line:
                    continue
                row = json.loads(line)
                key = "x".join(str(d) for d in row["shape"]) if "shape" in row else ""
                self.locate.append((key, counts.get(key, 0)))
                counts[key] = counts.get(key, 0) + 1
                self.rows.append(row)
        self.tensors = {key: {k: torch.cat(v) for k, v in named.items()} for key, named in tensors.items()}
        keys = sorted(counts, key=lambda s: tuple(int(d) for d in s.split("x")) if s else ())
        self.buckets = [tuple(int(d) for d in k.split("x")) for k in keys] if keys and keys != [""] else None
        self.bucket_ids = (
            [keys.index(key) for key, _ in self.locate] if self.buckets else [0] * len(self.rows)
        )
        self.metadata = [Metadata.from_dict(r["metadata"]) for r in self.rows]
        self.random_caption, self.seed, self.epoch = random_caption, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        captions = row["captions"]
        if self.random_caption and len(captions) > 1:
            rng = np.random.default_rng([self.seed, self.epoch, row["index"]])
            caption = captions[int(rng.integers(len(captions)))]
        else:
            caption = captions[0]
        key, pos = self.locate[i]
        item = {k: v[pos] for k, v in self.tensors[key].items()}
        item["latent_mean"] = item.pop("mean").float()
        item["latent_std"] = item.pop("std").float()
        item.update(caption=caption, metadata=self.metadata[i], index=row["index"], label=row["label"])
        return item


def collate_cached(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch cached items: tensors stacked (B, ...), ``captions``/``metadata``/``labels`` lists, ``index`` (B,)."""
    out: dict[str, Any] = {
        "captions": [s["caption"] for s in samples],
        "metadata": [s["metadata"] for s in samples],
        "labels": [s["label"] for s in samples],
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
    }
    for k, v in samples[0].items():
        if isinstance(v, torch.Tensor):
            out[k] = torch.stack([s[k] for s in samples])
    return out


__all__ = [
    "CachedLatentDataset",
    "build_latent_cache",
    "cache_fingerprint",
    "cache_is_complete",
    "collate_cached",
]
