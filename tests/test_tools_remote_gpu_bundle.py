"""The remote-GPU bundle: quantized latents and the cut-vocabulary int8 text encoder restore to a cache and a
model folder that ``rsgen train --set data.cache_only=true`` trains from, with no manifest or images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.errors import ConfigError, DataError  # noqa: E402
from rsgen.models.text import load_text_encoder  # noqa: E402
from rsgen.training import train  # noqa: E402
from tools.remote_gpu.bundle import (  # noqa: E402
    cache_texts,
    dequantize_mean,
    pack,
    quantize_mean,
    subsample_mask,
    unpack,
)


def test_quantized_mean_is_within_half_a_step():
    mean = torch.randn(5, 4, 8, 8) * torch.tensor([0.5, 1.0, 2.0, 4.0])[None, :, None, None]
    q = quantize_mean(mean)
    assert q["codes"].dtype == torch.uint8 and q["lo"].shape == (5, 4)
    err = (dequantize_mean(q["codes"], q["lo"], q["step"]) - mean).abs()  # (5, 4, 8, 8)
    assert (err <= q["step"][..., None, None] / 2 + 1e-6).all()
    assert err.max() > 0  # it is a real quantization, not a copy


def test_pack_unpack_and_train_from_the_cache_alone(tmp_path):
    first = tmp_path / "first"
    train(tiny_config(first, max_steps=1), FakeImageCaptionDataset(12, 32), progress=False)
    cache = first / "latent-cache"
    keep = np.ones(12, bool)
    keep[[3, 7]] = False
    facts = pack(
        cache,
        tmp_path / "bundle",
        extra_texts=["a preview prompt about wetlands"],
        keep=keep,
        vae=first / "model",
    )
    assert facts["samples"] == 10 and facts["vae"]["decoder_parameters"] > 0
    te = facts["text_encoder"]
    assert te["vocab_kept"] < 200 and te["token_cosine_mean"] > 0.999
    assert not (tmp_path / "bundle" / "text-encoder" / "model.safetensors").exists()  # packed weights only

    out = tmp_path / "remote"
    rng_state = torch.random.get_rng_state()
    assert unpack(tmp_path / "bundle", out)["unpacked_samples"] == 10
    assert torch.equal(
        torch.random.get_rng_state(), rng_state
    )  # the seeded encoder leaves the caller's RNG alone
    original = load_file(str(next(cache.glob("shard-*.safetensors"))))
    restored = load_file(str(next((out / "latent-cache").glob("shard-*.safetensors"))))
    idx = torch.from_numpy(np.flatnonzero(keep))
    span = original["mean"][idx].float().amax(dim=(2, 3)) - original["mean"][idx].float().amin(dim=(2, 3))
    err = (restored["mean"].float() - original["mean"][idx].float()).abs().amax(dim=(2, 3))  # (N, C)
    assert (err <= span / 510 + 2e-3).all()
    assert restored["std"].shape == restored["mean"].shape
    assert set(cache_texts(out / "latent-cache")) <= set(cache_texts(cache))

    # The autoencoder travels as its decoder: the unpacked one decodes as the original (float16 weights).
    from rsgen.models.vae import load_vae

    vae, remote_vae = load_vae(first / "model"), load_vae(out / "vae")
    z = torch.randn(2, vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(vae.decode(z).sample, remote_vae.decode(z).sample, atol=2e-2)
    assert remote_vae.config.scaling_factor == vae.config.scaling_factor

    # subsample_mask keeps a fraction of one (sensor, GSD) group and every sample of the others.
    rows = [
        json.loads(r) for p in sorted(cache.glob("shard-*.jsonl")) for r in p.read_text().splitlines() if r
    ]
    gsds = [r["metadata"].get("gsd_m") for r in rows]
    mask = subsample_mask(cache, {("None", 10.0): 0.0})
    assert [not m for m in mask] == [g is not None and round(g, 1) == 10.0 for g in gsds]

    # The cut vocabulary tokenizes every packed text into the same pieces as the original.
    tok, _ = load_text_encoder(None)
    tok2, _ = load_text_encoder(out / "text-encoder")
    vocab = (out / "text-encoder" / "vocab.txt").read_text().splitlines()
    for text in cache_texts(out / "latent-cache") + ["a preview prompt about wetlands"]:
        assert [vocab[i] for i in tok2(text)["input_ids"]] == tok.convert_ids_to_tokens(
            tok(text)["input_ids"]
        )

    cfg = tiny_config(
        tmp_path / "run",
        max_steps=2,
        **{
            "data.cache_only": "true",
            "data.cache_dir": str(out / "latent-cache"),
            "text.encoder": str(out / "text-encoder"),
            "vae.pretrained": str(out / "vae"),
        },
    )
    result = train(cfg, progress=False)
    assert result.step == 2 and (result.model_dir / "unet").is_dir()
    assert json.loads((out / "latent-cache" / "cache.json").read_text())["num_samples"] == 10


def test_cache_only_without_a_cache_is_a_clear_error(tmp_path):
    cfg = tiny_config(
        tmp_path, max_steps=1, **{"data.cache_only": "true", "data.cache_dir": str(tmp_path / "x")}
    )
    with pytest.raises(ConfigError, match="cache_only"):
        train(cfg, progress=False)


REMOTE_SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "tools" / "remote_gpu").glob("*.sh"))


@pytest.mark.parametrize("script", REMOTE_SCRIPTS, ids=lambda p: p.name)
def test_remote_scripts_parse(script):
    """The lent-GPU scripts run where nothing can be fixed mid-call: at least their syntax must hold."""
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_remote_last_step_reads_the_newest_checkpoint(tmp_path):
    """remote_last_step (tools/remote_gpu/lib.sh) decides how far the lagging ablation arms are resumed."""
    lib = Path(__file__).resolve().parents[1] / "tools" / "remote_gpu" / "lib.sh"
    for name in ("step-0000250", "step-0002879", "step-0001000", "not-a-step"):
        (tmp_path / "run" / "checkpoints" / name).mkdir(parents=True)
    cmd = f'source "{lib}"; remote_last_step "{tmp_path / "run"}"; remote_last_step "{tmp_path / "none"}"'
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2879", "0"]


def test_pack_images_reproduces_the_datasets_pixels(tmp_path, fake_geotiff):
    """An image pack decodes, through the training dataset, to exactly the pixels of the original records (window
    read, GSD factor applied), keeps a JPEG's own bytes, splits the budget by source and skips a corrupt file."""
    from PIL import Image

    from rsgen.data.dataset import ImageCaptionDataset
    from tools.remote_gpu.bundle import pack_images

    tif = fake_geotiff("scene.tif", width=96, height=80)
    rng = np.random.default_rng(0)
    jpg = tmp_path / "tile.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(jpg, quality=90)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    meta = {"gsd_m": 10.0, "sensor": "Sentinel-2"}
    records = [
        {"id": "j1", "path": str(jpg), "split": "train", "source": "eurosat", "gsd_factor": 1.0, "metadata": meta},
        {"id": "j2", "path": str(jpg), "split": "train", "source": "eurosat", "gsd_factor": 2.0,
         "metadata": {**meta, "gsd_m": 20.0}},
        {"id": "bad", "path": "broken.jpg", "split": "train", "source": "eurosat", "metadata": meta},
        {"id": "t1", "path": str(tif), "window": [8, 4, 64, 64], "split": "train", "source": "naip",
         "metadata": {"gsd_m": 2.0}},
        {"id": "t2", "path": str(tif), "window": [0, 0, 64, 64], "gsd_factor": 2.0, "split": "train",
         "source": "naip", "metadata": {"gsd_m": 4.0}},
        {"id": "v", "path": str(jpg), "split": "val", "source": "eurosat", "metadata": meta},
    ]  # fmt: skip
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"captions": ["a scene"], **r}) + "\n" for r in records))

    facts = pack_images(manifest, tmp_path / "pack", max_bytes=10**7)
    assert facts["images"] == 4 and facts["sources"]["eurosat"]["skipped"] == 1
    assert sum(v["images"] for v in facts["sources"].values()) == facts["images"]
    packed = {
        r["id"]: r for r in map(json.loads, (tmp_path / "pack" / "manifest.jsonl").read_text().splitlines())
    }
    assert set(packed) == {"j1", "j2", "t1", "t2"}
    assert (tmp_path / "pack" / packed["j1"]["path"]).read_bytes() == jpg.read_bytes()
    assert packed["t2"]["size"] == [32, 32] and packed["t2"]["window"] is None

    def pixels(path: Path, rid: str) -> torch.Tensor:
        ds = ImageCaptionDataset(path, image_size=64, random_caption=False)
        i = next(k for k, r in enumerate(ds.records) if r["id"] == rid)
        item = ds[i]
        return item["pixel_values"], item["metadata"].gsd_m

    for rid in packed:
        want, got = pixels(manifest, rid), pixels(tmp_path / "pack" / "manifest.jsonl", rid)
        assert torch.equal(want[0], got[0]) and want[1] == got[1], rid

    # a budget that holds about one NAIP window: the eurosat share (0.9) fits both JPEG records, naip only one
    one = (tmp_path / "pack" / packed["t1"]["path"]).stat().st_size
    small = pack_images(
        manifest, tmp_path / "small", max_bytes=int(one * 1.05 / 0.1), shares={"eurosat": 0.9, "naip": 0.1}
    )
    assert small["sources"]["naip"]["images"] <= 1
    # a record without a source is counted under "" (the default shares cover every source, named or not)
    nameless = tmp_path / "nameless.jsonl"
    nameless.write_text(json.dumps({"id": "n", "path": str(jpg), "split": "train", "captions": ["x"]}) + "\n")
    assert pack_images(nameless, tmp_path / "nameless", max_bytes=10**6)["sources"] == {
        "": {"images": 1, "bytes": jpg.stat().st_size, "skipped": 0}
    }
    with pytest.raises(DataError, match="landsat"):
        pack_images(manifest, tmp_path / "x", max_bytes=10**6, shares={"landsat": 1.0})
