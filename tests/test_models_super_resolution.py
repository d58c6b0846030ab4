"""Super-resolution stage: the low-res image folded onto the latent grid keeps every pixel for any factor;
x2 and x4 tiny stages train, export, and sample through the pipeline and the cascade; training crops have the
right shapes, alignment and GSDs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from pipelines_tiny import tiny_pipeline  # noqa: E402
from training_fakes import FakeImageCaptionDataset, one_thread, tiny_config  # noqa: E402, F401

from rsgen.data.dataset import ImageCaptionDataset, collate_samples  # noqa: E402
from rsgen.errors import ConfigError  # noqa: E402
from rsgen.metadata import Metadata  # noqa: E402
from rsgen.models.super_resolution import (  # noqa: E402
    color_fix,
    degrade,
    fold_low_res,
    low_res_channels,
    low_res_condition,
    low_res_noise_scheduler,
    low_res_scale,
    unfold_low_res,
)
from rsgen.pipelines import RSGenPipeline  # noqa: E402
from rsgen.pipelines.cascade import Cascade, CascadeConfig, StageConfig, load_stage  # noqa: E402
from rsgen.training.tasks import SuperResolutionTask  # noqa: E402

CPU = torch.device("cpu")


def test_low_res_channels_for_factors_and_vae_factors():
    assert low_res_channels(4, 4) == 3 and low_res_scale(4, 4) == 1  # x4 upscaler layout: unchanged
    assert low_res_channels(2, 4) == 12 and low_res_scale(2, 4) == 2
    assert low_res_channels(8, 4) == 3  # input smaller than the latent grid: upsampled, 3 channels
    assert low_res_channels(2, 8) == 48 and low_res_channels(3, 4) == 12  # ceil(4 / 3) = 2


@pytest.mark.parametrize("factor", [2, 4])
def test_fold_keeps_every_input_pixel(factor):
    vae_factor, latent = 4, (6, 8)
    low = torch.rand(2, 3, latent[0] * vae_factor // factor, latent[1] * vae_factor // factor) * 2 - 1
    s = low_res_scale(factor, vae_factor)
    cond = fold_low_res(low, latent, s)
    assert cond.shape == (2, low_res_channels(factor, vae_factor), *latent)
    assert torch.equal(unfold_low_res(cond, s), low)  # nothing resized, nothing lost
    # With noise augmentation the fold holds the noisy input pixel for pixel.
    g = torch.Generator().manual_seed(1)
    level = torch.tensor([0, 300])
    noisy = low_res_noise_scheduler().add_noise(low, torch.randn(low.shape, generator=g), level)
    cond = low_res_condition(low, latent, level, torch.Generator().manual_seed(1), s)
    assert torch.allclose(unfold_low_res(cond, s), noisy)


def test_fold_of_a_non_dividing_factor_is_the_resized_input():
    low = torch.rand(1, 3, 16, 16)  # x3 on a factor-4 VAE: 48 px output, 12x12 latents, s = 2
    cond = fold_low_res(low, (12, 12), low_res_scale(3, 4))
    resized = F.interpolate(low, size=(24, 24), mode="bicubic", align_corners=False)
    assert cond.shape == (1, 12, 12, 12) and torch.equal(unfold_low_res(cond, 2), resized)


def _train_steps(task: SuperResolutionTask, batch: dict, steps: int) -> list[float]:
    params = [p for m in task.trainable.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for i in range(steps):
        loss, _ = task.loss(batch, torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize("factor", [2, 4])
def test_sr_stage_trains_and_samples_through_pipeline_and_cascade(tmp_path, factor):
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path, "sr", **{"sr.factor": factor, "sr.crop": 16})
    task = SuperResolutionTask(cfg, CPU)
    assert task.unet.config.in_channels == 4 + low_res_channels(factor, 4)
    batch = collate_samples([FakeImageCaptionDataset(4, 32)[i] for i in range(4)])
    before = task.unet.conv_in.weight.detach().clone()
    losses = _train_steps(task, batch, 3)
    assert all(np.isfinite(losses)) and not torch.equal(before, task.unet.conv_in.weight)

    pipe = RSGenPipeline.from_pretrained(str(task.export(tmp_path / "model", {})))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.is_super_resolution and pipe.sr_factor == factor  # read from the saved UNet config
    low = torch.rand(2, 3, 64 // factor, 64 // factor) * 2 - 1
    out = pipe(
        ["a", "b"],
        Metadata(gsd_m=0.5),
        height=64,
        width=64,
        low_res=low,
        num_inference_steps=2,
        guidance_text=1.0,
        output_type="pt",
        progress=False,
    )
    assert out.images.shape == (2, 3, 64, 64) and torch.isfinite(out.images).all()
    # colour fix: the output's own low band is replaced with the input's (mid-range input: no clamping)
    low_mid = low * 0.3
    opts = dict(
        height=64, width=64, low_res=low_mid, num_inference_steps=2, guidance_text=1.0, output_type="pt"
    )
    raw = pipe(["a", "b"], None, progress=False, **opts).images
    fixed = pipe(["a", "b"], None, progress=False, color_fix=True, **opts).images
    small = 64 // factor
    target = (low_mid + 1) / 2
    shrink = lambda x: F.interpolate(x, size=(small, small), mode="area")  # noqa: E731
    assert (shrink(fixed) - target).abs().mean() < 0.5 * (shrink(raw) - target).abs().mean()
    assert (shrink(fixed) - target).abs().mean() < 0.03

    cascade = Cascade(
        CascadeConfig([StageConfig("base", "x"), StageConfig("sr", "y", factor=factor, steps=2)]),
        loader=lambda s: tiny_pipeline() if s.name == "base" else pipe,
    )
    res = cascade("a forest", Metadata(gsd_m=0.5), size=(64, 64), steps=2, guidance_text=1.0, progress=False)
    assert [im.shape for im in res.stage_images] == [(1, 64 // factor, 64 // factor, 3), (1, 64, 64, 3)]
    assert [m.gsd_m for m in res.stage_metadata] == [0.5 * factor, 0.5]
    wrong = 4 if factor == 2 else 2
    bad = Cascade(
        CascadeConfig([StageConfig("base", "x"), StageConfig("sr", "y", factor=wrong)]),
        loader=lambda s: tiny_pipeline() if s.name == "base" else pipe,
    )
    with pytest.raises(ConfigError, match=f"x{factor} super-resolution"):
        bad("a", None, size=(64, 64), steps=1, progress=False)


def test_color_fix_keeps_the_input_low_band_and_the_output_detail():
    torch.manual_seed(0)
    # (B, 3, h, w): a smooth low-res image (white noise has no band below its own resolution to keep)
    low = F.interpolate(torch.rand(2, 3, 3, 3) * 0.6 - 0.3, size=(8, 8), mode="bilinear", align_corners=False)
    detail = torch.randn(2, 3, 32, 32) * 0.1  # fine texture of a model's output
    wrong = F.interpolate(torch.rand(2, 3, 8, 8), size=(32, 32), mode="bilinear", align_corners=False)
    out = wrong + detail  # a model's output with the wrong colours
    fixed = color_fix(out, low)  # (B, 3, 32, 32)
    assert fixed.shape == out.shape
    own = F.interpolate(fixed, size=(8, 8), mode="area")
    assert (own - low).abs().mean() < 0.03 < (F.interpolate(out, size=(8, 8), mode="area") - low).abs().mean()
    # the detail above the input's resolution stays: high-pass parts of output and fixed output agree
    hp = lambda x: (x - F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)).flatten()  # noqa: E731
    assert torch.corrcoef(torch.stack([hp(fixed), hp(out)]))[0, 1] > 0.8
    smooth = F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)
    assert (color_fix(smooth, low) - smooth).abs().max() < 0.05  # already consistent: about unchanged


def test_random_cascade_stage_gets_the_stage_factor():
    pipe = load_stage(StageConfig("sr", "does/not/exist", random_config="tiny", factor=4))
    assert pipe.untrained and pipe.sr_factor == 4 and pipe.unet.config.in_channels == 4 + 3


def _geotiff(path: Path, side: int, gsd: float) -> Path:
    from rsgen.io import GeoReference, write_geotiff

    rng = np.random.default_rng(0)
    image = (rng.random((side // 8, side // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    image = (image.astype(np.int16) + rng.integers(-20, 20, image.shape)).clip(0, 255).astype(np.uint8)
    write_geotiff(path, image, GeoReference.from_latlon_gsd(47.0, 8.0, gsd, side, side), layout="HWC")
    return path


def test_crop_batch_shapes_alignment_and_gsd(tmp_path):
    from rsgen.data.geotiff_windows import GeoTiffWindowReader

    factor, crop = 2, 32
    tif = _geotiff(tmp_path / "scene.tif", 128, 0.5)
    records = list(GeoTiffWindowReader("fake", tif, size=64, stride=64, gsd_factors=[1, 2]).records())
    ds = ImageCaptionDataset(records, split=None, image_size=64)
    batch = collate_samples([ds[i] for i in range(len(ds))])
    assert sorted({round(m.gsd_m, 3) for m in batch["metadata"]}) == [0.5, 1.0]  # native and averaged windows

    cfg = tiny_config(tmp_path, "sr", **{"sr.factor": factor, "sr.crop": crop, "data.image_size": 64})
    task = SuperResolutionTask(cfg, CPU)
    mean, std = task.encode_for_cache(batch["pixel_values"])  # (B, 4, 16, 16): as the latent cache holds them
    cached = {**batch, "latent_mean": mean, "latent_std": std, **task.cache_extras(batch)}
    out = task.crop_batch(cached, torch.Generator().manual_seed(0))
    b = len(ds)
    assert out["latent_mean"].shape == out["latent_std"].shape == (b, 4, crop // 4, crop // 4)
    assert out["low_res"].shape == (b, 3, crop // factor, crop // factor)
    assert out["pixel_values"].shape == (b, 3, crop, crop)
    for i, meta in enumerate(out["metadata"]):
        # The low-res crop is the degraded output crop: the same ground with `factor` times fewer pixels (away
        # from the crop's border, where the triangle filter of the whole image also sees beyond the crop).
        assert torch.allclose(
            out["low_res"][i].float()[:, 1:-1, 1:-1],
            degrade(out["pixel_values"][i : i + 1], factor)[0][:, 1:-1, 1:-1],
            atol=2e-3,
        )
        window_m = ds.records[int(out["index"][i])]["window"][2] * 0.5  # ground side of the 64 px image
        crop_m = window_m * crop / 64
        output_gsd, input_gsd = crop_m / out["pixel_values"].shape[-1], crop_m / out["low_res"].shape[-1]
        assert meta.gsd_m == pytest.approx(output_gsd)  # the stage is told the GSD of its output
        assert output_gsd == pytest.approx(input_gsd / factor)
        # Latent crop and pixel crop come from the same place of the full image.
        full = batch["pixel_values"][i]
        pos = [
            (t, left)
            for t in range(0, 64 - crop + 1, 4)
            for left in range(0, 64 - crop + 1, 4)
            if torch.equal(full[:, t : t + crop, left : left + crop], out["pixel_values"][i])
        ]
        assert len(pos) == 1
        t, left = pos[0]
        assert torch.equal(
            out["latent_mean"][i], mean[i, :, t // 4 : (t + crop) // 4, left // 4 : (left + crop) // 4]
        )
    loss, _ = task.loss(cached, torch.Generator().manual_seed(0))  # the loss runs on the crops
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="sr.crop"):
        SuperResolutionTask(tiny_config(tmp_path, "sr", **{"sr.crop": 20}), CPU)
