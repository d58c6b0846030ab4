"""The training loop: a tiny model overfits a fixed batch, exact resume, every mode runs, no / partial
metadata in training and sampling, export round-trips through the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.errors import ConfigError  # noqa: E402
from rsgen.metadata import Metadata  # noqa: E402
from rsgen.models.super_resolution import low_res_channels  # noqa: E402
from rsgen.training import train  # noqa: E402
from rsgen.training.checkpoint import (  # noqa: E402
    checkpoint_dirs,
    checkpoint_tensors,
    compare_checkpoints,
)
from rsgen.training.diffusion import diffusion_target, loss_weights, make_noise_scheduler  # noqa: E402
from rsgen.training.sampler import ResumableSampler  # noqa: E402
from rsgen.training.tasks import DiffusionTask  # noqa: E402


def test_tiny_model_overfits_a_fixed_batch(tmp_path):
    """Same batch, same noise and timesteps every step: the loss must fall at least 5x in 60 steps."""
    cfg = tiny_config(
        tmp_path,
        **{
            "text.caption_dropout": 0.0,
            "metadata.all_dropout": 0.0,
            "metadata.field_dropout": 0.0,
            "diffusion.snr_gamma": "null",
        },
    )
    torch.manual_seed(0)
    task = DiffusionTask(cfg, torch.device("cpu"))
    ds = FakeImageCaptionDataset(8, 32)
    from rsgen.data.dataset import collate_samples

    batch = collate_samples([ds[i] for i in range(8)])
    params = [p for m in task.trainable.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    losses = []
    for _ in range(60):
        loss, _ = task.loss(batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"


def test_resume_is_exact(tmp_path):
    """Stop at step 3, resume to 6: parameters, EMA and optimizer equal an uninterrupted run to step 6."""
    ds = FakeImageCaptionDataset(16, 32)  # 2 batches per epoch: the run crosses epochs and stops mid-epoch
    common = {"checkpoint_every": 3, "max_steps": 6}
    full = train(tiny_config(tmp_path / "full", **common), ds, progress=False)
    part = train(tiny_config(tmp_path / "part", **{**common, "max_steps": 3}), ds, progress=False)
    assert part.step == 3
    resumed = train(tiny_config(tmp_path / "part", **common), ds, progress=False)
    assert resumed.step == 6 and len(resumed.losses) == 3
    assert resumed.losses == pytest.approx(full.losses[3:], rel=0, abs=0)
    a, b = checkpoint_dirs(tmp_path / "full")[-1], checkpoint_dirs(tmp_path / "part")[-1]
    n, differ, worst = compare_checkpoints(a, b)  # model, EMA and optimizer moments
    assert n > 100 and any(k.startswith("optimizer/") for k in checkpoint_tensors(a))
    assert (differ, worst) == (0, 0.0)


def test_base_model_trains_exports_and_samples_with_no_and_partial_metadata(tmp_path):
    ds = FakeImageCaptionDataset(16, 32)  # mixes full, partial and empty metadata
    result = train(tiny_config(tmp_path, max_steps=4, sample_every=4), ds, progress=False)
    assert (tmp_path / "samples" / "step-0000004.png").is_file()
    assert (tmp_path / "latent-cache" / "cache.json").is_file()
    assert list((tmp_path / "checkpoints").iterdir())
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    from rsgen.pipelines import RSGenPipeline

    pipe = RSGenPipeline.from_pretrained(str(result.model_dir))
    for meta in (None, Metadata(gsd_m=0.5), Metadata(date="2019-07", lat=10, lon=20)):
        out = pipe("a forest", meta, num_inference_steps=2, output_type="pt", progress=False)
        assert out.images.shape == (1, 3, 32, 32) and torch.isfinite(out.images).all()


@pytest.mark.slow
def test_vae_sr_and_controlnet_modes(tmp_path):
    ds = FakeImageCaptionDataset(8, 32)
    vae = train(tiny_config(tmp_path / "vae", "vae", max_steps=2, sample_every=2), ds, progress=False)
    assert (vae.model_dir / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "vae" / "samples" / "step-0000002.png").is_file()
    base = train(
        tiny_config(tmp_path / "base", max_steps=2, **{"vae.pretrained": str(vae.model_dir)}),
        ds,
        progress=False,
    )
    sr = train(
        tiny_config(tmp_path / "sr", "sr", max_steps=2, **{"vae.pretrained": str(vae.model_dir)}),
        ds,
        progress=False,
    )
    from diffusers import UNet2DConditionModel

    from rsgen.models.metadata_embedding import MetadataEmbedding

    assert UNet2DConditionModel.from_pretrained(
        sr.model_dir / "unet"
    ).config.in_channels == 4 + low_res_channels(2, 4)
    assert MetadataEmbedding.from_pretrained(sr.model_dir / "metadata_embedding").config.use_noise_level
    cn = train(
        tiny_config(
            tmp_path / "cn", "controlnet", max_steps=2, sample_every=2, init_from=str(base.model_dir)
        ),
        ds,
        progress=False,
    )
    assert (cn.model_dir / "controlnet" / "config.json").is_file()
    assert len(cn.losses) == 2
    from PIL import Image

    preview = Image.open(tmp_path / "cn" / "samples" / "step-0000002.png")  # conditions above samples
    assert preview.height > 2 * 32 and preview.width > 32

    # decoder-only fine-tuning (with the spectral and adversarial terms): encoder, quant_conv and the latent
    # scale stay exactly as they were; the discriminator is checkpointed, never exported
    dec = train(
        tiny_config(
            tmp_path / "dec",
            "vae",
            max_steps=3,
            **{
                "vae.pretrained": str(vae.model_dir),
                "vae.train_decoder_only": True,
                "vae.gradient_weight": 0.5,
                "vae.spectral_weight": 0.5,
                "vae.adversarial_weight": 0.1,
                "vae.discriminator_channels": 16,
                "vae.discriminator_layers": 2,
                "optim.lr": 1e-2,
            },
        ),
        ds,
        progress=False,
    )
    ckpt = load_file(dec.checkpoint / "model.safetensors")
    assert any(k.startswith("discriminator.") for k in ckpt) and any(
        k.startswith("vae.decoder.") for k in ckpt
    )
    assert not (dec.model_dir / "discriminator").exists()
    before = load_file(vae.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    after = load_file(dec.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    for name, tensor in before.items():
        if name.startswith(("encoder.", "quant_conv.")):
            torch.testing.assert_close(after[name], tensor, rtol=0, atol=0)
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith("decoder."))
    import json

    scale = json.loads((vae.model_dir / "vae" / "config.json").read_text())["scaling_factor"]
    assert json.loads((dec.model_dir / "vae" / "config.json").read_text())["scaling_factor"] == scale
    with pytest.raises(ConfigError, match="train_decoder_only"):
        train(tiny_config(tmp_path / "dec2", "vae", max_steps=1, **{"vae.train_decoder_only": True}), ds)


def test_max_minutes_stops_and_checkpoints(tmp_path):
    result = train(
        tiny_config(tmp_path, max_steps=1000, max_minutes=0.0), FakeImageCaptionDataset(8, 32), progress=False
    )
    assert result.stopped_by == "max_minutes" and result.step == 1
    assert checkpoint_dirs(tmp_path)[-1].name == "step-0000001"


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="mode=controlnet needs init_from"):
        tiny_config(tmp_path, "controlnet")
    with pytest.raises(ConfigError, match="unknown key"):
        tiny_config(tmp_path, **{"optim.lrr": 1})
    with pytest.raises(ConfigError, match="data.manifest"):
        train(tiny_config(tmp_path), progress=False)


def test_min_snr_weights_and_v_target():
    sched = make_noise_scheduler(
        tiny_config(Path("."), **{"diffusion.prediction_type": "v_prediction"}).diffusion
    )
    t = torch.tensor([0, 500, 999])
    w = loss_weights(sched, t, snr_gamma=5.0)
    alpha = sched.alphas_cumprod[t]
    snr = alpha / (1 - alpha)
    torch.testing.assert_close(w, torch.clamp(snr, max=5.0) / (snr + 1))
    x, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    v = diffusion_target(sched, x, eps, t)
    a = alpha.sqrt().view(-1, 1, 1, 1)
    s = (1 - alpha).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(v, a * eps - s * x)
    assert torch.equal(loss_weights(sched, t, None), torch.ones(3))


def test_sampler_resumes_mid_epoch_and_shards():
    full = list(ResumableSampler(20, 4, seed=3))
    s = ResumableSampler(20, 4, seed=3)
    s.set_epoch(0, skip_batches=2)
    assert list(s) == full[8:]
    r0, r1 = ResumableSampler(20, 4, 3, 0, 2), ResumableSampler(20, 4, 3, 1, 2)
    a, b = list(r0), list(r1)
    assert len(a) == len(b) == 8 and not set(a) & set(b)


def test_latent_cache_is_rebuilt_when_the_resampling_rule_changes(tmp_path, monkeypatch):
    import json

    import rsgen.training.loop as loop

    ds = FakeImageCaptionDataset(8, 32)
    train(tiny_config(tmp_path / "a", max_steps=1), ds, progress=False)
    before = json.loads((tmp_path / "a" / "latent-cache" / "cache.json").read_text())["fingerprint"]
    train(tiny_config(tmp_path / "b", max_steps=1), ds, progress=False)
    same = json.loads((tmp_path / "b" / "latent-cache" / "cache.json").read_text())["fingerprint"]
    monkeypatch.setattr(loop, "RESAMPLING_RULE", "another rule")
    train(tiny_config(tmp_path / "c", max_steps=1), ds, progress=False)
    other = json.loads((tmp_path / "c" / "latent-cache" / "cache.json").read_text())["fingerprint"]
    assert before == same != other  # a cache made under another rule holds other pixels: never reused
