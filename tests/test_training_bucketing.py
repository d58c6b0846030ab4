"""Size bucketing: automatic buckets, assignment by aspect ratio from the manifest, crop/resize and the GSD of
bucketed pixels, one-shape batches that resume mid-epoch exactly and shard across processes, per-bucket
latent caches, and a tiny bucketed training run on mixed-aspect PNGs that resumes exactly."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.data.dataset import ImageCaptionDataset, collate_samples, crop_resize, square_resize  # noqa: E402
from rsgen.errors import ConfigError  # noqa: E402
from rsgen.training import train  # noqa: E402
from rsgen.training.bucketing import (  # noqa: E402
    BucketedBatchSampler,
    auto_buckets,
    nearest_bucket,
    training_buckets,
)
from rsgen.training.latent_cache import CachedLatentDataset, build_latent_cache  # noqa: E402

BUCKETS_64 = [(64, 32), (64, 64), (32, 64)]  # (height, width): automatic buckets of 64 px with 32 px steps
# (width, height) of the fake images: four landscape (-> 32x64), four square-ish, four portrait (-> 64x32).
SIZES = [
    (96, 48),
    (100, 40),
    (128, 64),
    (91, 50),
    (64, 64),
    (80, 72),
    (70, 70),
    (90, 80),
    (48, 96),
    (40, 100),
    (64, 128),
    (50, 91),
]


def write_manifest(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """Smooth random PNGs of the given (width, height) and a manifest with their ``size`` at 10 m GSD."""
    rng = np.random.default_rng(0)
    recs = []
    for i, (w, h) in enumerate(sizes):
        low = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        (root / "img").mkdir(parents=True, exist_ok=True)
        Image.fromarray(low).resize((w, h), Image.Resampling.BILINEAR).save(root / "img" / f"{i}.png")
        recs.append(
            {
                "id": f"fake/{i}",
                "path": f"img/{i}.png",
                "captions": [f"a field {i}", "farmland"],
                "split": "train",
                "source": "fake",
                "metadata": {"gsd_m": 10.0},
                "size": [w, h],
            }
        )
    path = root / "manifest.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def test_auto_buckets():
    assert auto_buckets(64, 32) == BUCKETS_64
    sd = auto_buckets(512, 64)
    assert (512, 512) in sd and (256, 512) in sd and (512, 256) in sd
    for h, w in sd:
        assert h % 64 == 0 and w % 64 == 0 and 0.5 <= w / h <= 2.0
        assert 0.5 * 512**2 <= h * w <= 512**2 and (w, h) in sd
    assert [w / h for h, w in sd] == sorted(w / h for h, w in sd)
    with pytest.raises(ConfigError, match="multiple of the bucket step"):
        auto_buckets(48, 32)


def test_training_buckets_from_config(tmp_path):
    assert training_buckets(tiny_config(tmp_path)) is None
    cfg = tiny_config(tmp_path, **{"data.bucketing": "true", "data.image_size": 64})
    assert training_buckets(cfg) == BUCKETS_64  # tiny VAE: 4 px per latent cell, x 8 cells = 32 px steps
    cfg = tiny_config(tmp_path, **{"data.bucketing": "true", "data.buckets": "[[32, 48], [48, 32]]"})
    assert training_buckets(cfg) == [(32, 48), (48, 32)]
    with pytest.raises(ConfigError, match=r"\[30, 48\]"):
        training_buckets(tiny_config(tmp_path, **{"data.bucketing": "true", "data.buckets": "[[30, 48]]"}))


def test_bucket_assignment_from_manifest_sizes(tmp_path):
    assert nearest_bucket(96, 48, BUCKETS_64) == 2 and nearest_bucket(48, 96, BUCKETS_64) == 0
    assert nearest_bucket(80, 72, BUCKETS_64) == 1 and nearest_bucket(91, 50, BUCKETS_64) == 2
    manifest = write_manifest(tmp_path, [*SIZES, (40, 40), (70, 30)])
    # the images are never decoded to assign buckets: corrupt them all
    for png in (tmp_path / "img").iterdir():
        png.write_bytes(b"not a png")
    ds = ImageCaptionDataset(manifest, image_size=64, buckets=BUCKETS_64, allow_upsampling=False)
    assert len(ds) == 12  # 40x40 < 64x64 and 70x30 < 64x32 (their buckets) are left out, not upsampled
    assert ds.bucket_ids == [2] * 4 + [1] * 4 + [0] * 4
    ds_up = ImageCaptionDataset(manifest, image_size=64, buckets=BUCKETS_64, allow_upsampling=True)
    assert ds_up.bucket_ids[-2:] == [1, 2]
    square = ImageCaptionDataset(manifest, image_size=64, allow_upsampling=False)
    assert len(square) == 6 and square.buckets is None  # default: square crops, only records >= 64 px a side


def test_bucketed_samples_shape_and_gsd(tmp_path):
    manifest = write_manifest(tmp_path, SIZES)
    ds = ImageCaptionDataset(manifest, image_size=64, buckets=BUCKETS_64, allow_upsampling=False)
    for i, (w, h) in enumerate(SIZES):
        item = ds[i]
        bh, bw = BUCKETS_64[ds.bucket_ids[i]]
        assert item["pixel_values"].shape == (3, bh, bw)
        # the largest centre crop of the bucket's aspect ratio, in whole pixels, shown at bh x bw
        s = min(h / bh, w / bw)
        ch, cw = (min(h, w),) * 2 if bh == bw else (min(h, round(bh * s)), min(w, round(bw * s)))
        assert item["metadata"].gsd_m == pytest.approx(10.0 * math.sqrt(ch / bh * cw / bw), rel=1e-12)
    assert ds[1]["metadata"].gsd_m == pytest.approx(12.5)  # 100x40 -> crop 80x40 -> 64x32
    assert ds[0]["metadata"].gsd_m == pytest.approx(15.0)  # 96x48 -> 64x32
    assert ds[4]["metadata"].gsd_m == 10.0  # 64x64 kept as is
    arr = np.random.default_rng(1).integers(0, 256, (50, 91, 3), dtype=np.uint8)
    out, scale = crop_resize(arr, 32, 64)
    assert out.shape == (32, 64, 3) and scale == pytest.approx(math.sqrt(46 / 32 * 91 / 64))
    for shape in [(48, 80), (80, 48), (64, 64)]:  # squares: crop_resize is square_resize
        sq = np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8)
        a, sa = square_resize(sq, 32)
        b, sb = crop_resize(sq, 32, 32)
        assert np.array_equal(a, b) and sa == sb == min(shape) / 32


def test_batches_one_bucket_deterministic_and_exactly_resumable():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 3, 50).tolist()  # 50 samples in 3 buckets of uneven size
    s = BucketedBatchSampler(ids, 4, seed=7)
    seen_epochs = []
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) == s.batches_per_epoch == sum(ids.count(b) // 4 for b in range(3))
        for batch in batches:
            assert len(batch) == 4 and len({ids[i] for i in batch}) == 1  # never mixes shapes
        flat = [i for b in batches for i in b]
        assert len(set(flat)) == len(flat)
        seen_epochs.append(batches)
    assert seen_epochs[0] != seen_epochs[1]
    again = BucketedBatchSampler(ids, 4, seed=7)
    again.set_epoch(1)
    assert list(again) == seen_epochs[1]
    for k in (1, 5, len(seen_epochs[2]) - 1):  # resume mid-epoch: exactly the remaining batches
        resumed = BucketedBatchSampler(ids, 4, seed=7)
        resumed.set_epoch(2, skip_batches=k)
        assert list(resumed) == seen_epochs[2][k:] and len(resumed) == len(seen_epochs[2]) - k
    r0, r1 = BucketedBatchSampler(ids, 4, 7, 0, 2), BucketedBatchSampler(ids, 4, 7, 1, 2)
    a, b = list(r0), list(r1)
    assert len(a) == len(b) == len(seen_epochs[0]) // 2
    assert [x for pair in zip(a, b, strict=True) for x in pair] == seen_epochs[0][: 2 * len(a)]
    with pytest.raises(ValueError, match="no bucket holds a full batch"):
        BucketedBatchSampler([0, 1, 2, 0, 1, 2], 3)


def test_latent_cache_keeps_per_bucket_shapes(tmp_path):
    manifest = write_manifest(tmp_path, SIZES)
    ds = ImageCaptionDataset(manifest, image_size=64, buckets=BUCKETS_64, random_caption=False)

    def encode(pixels):  # (B, 3, H, W) -> (B, 3, H/4, W/4) twice
        mean = torch.nn.functional.avg_pool2d(pixels, 4)
        return mean, torch.ones_like(mean)

    def extras(batch):
        return {"low_res": torch.nn.functional.avg_pool2d(batch["pixel_values"], 2)}

    cache = build_latent_cache(ds, collate_samples, encode, tmp_path / "cache", "fp", extras, batch_size=3)
    cached = CachedLatentDataset(cache, random_caption=False)
    assert len(cached) == len(ds) and cached.buckets == sorted(BUCKETS_64)
    for i in range(len(cached)):
        item = cached[i]
        pixels = ds[item["index"]]["pixel_values"]  # (3, H, W)
        assert item["latent_mean"].shape == (3, pixels.shape[1] // 4, pixels.shape[2] // 4)
        assert item["low_res"].shape == (3, pixels.shape[1] // 2, pixels.shape[2] // 2)
        torch.testing.assert_close(item["latent_mean"], encode(pixels[None])[0][0], atol=2e-3, rtol=0)
        assert cached.buckets[cached.bucket_ids[i]] == tuple(pixels.shape[1:])
        assert item["caption"] == ds.records[item["index"]]["captions"][0]


def test_tiny_bucketed_training_runs_and_resumes_exactly(tmp_path):
    manifest = write_manifest(tmp_path / "data", SIZES)
    common = {
        "data.manifest": str(manifest),
        "data.image_size": 64,
        "data.bucketing": "true",
        "optim.batch_size": 2,
        "max_steps": 8,
        "checkpoint_every": 4,
        "log_every": 4,
    }
    # 6 one-bucket batches per epoch: 8 steps cross an epoch; the interrupted run stops mid-epoch at step 4
    full = train(tiny_config(tmp_path / "full", **common), progress=False)
    assert full.step == 8 and all(math.isfinite(x) for x in full.losses)
    from safetensors import safe_open

    shard = next((tmp_path / "full" / "latent-cache").glob("shard-*.safetensors"))
    with safe_open(str(shard), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert shapes["mean@32x64"][1:] == (4, 8, 16) and shapes["mean@64x32"][1:] == (4, 16, 8)
    assert shapes["mean@64x64"][1:] == (4, 16, 16)
    part = train(tiny_config(tmp_path / "part", **{**common, "max_steps": 4}), progress=False)
    assert part.losses == pytest.approx(full.losses[:4], rel=0, abs=0)
    resumed = train(tiny_config(tmp_path / "part", **common), progress=False)
    assert resumed.step == 8 and resumed.losses == pytest.approx(full.losses[4:], rel=0, abs=0)


def test_bucketing_needs_a_bucketed_dataset(tmp_path):
    with pytest.raises(ConfigError, match="no size buckets"):
        train(
            tiny_config(tmp_path, **{"data.bucketing": "true", "data.cache_latents": "false"}),
            FakeImageCaptionDataset(8, 32),
            progress=False,
        )
