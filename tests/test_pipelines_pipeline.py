"""RSGenPipeline on a tiny random model: reproducibility (stored numbers), per-sample seeds, metadata
subsets, guidance branch skipping, tiling equivalence, ControlNet, img2img, SR stage, save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipelines_tiny import tiny_pipeline

from rsgen.errors import ConfigError, MetadataError
from rsgen.metadata import Metadata
from rsgen.pipelines import ControlInput, RSGenPipeline, Tiling

META = Metadata(gsd_m=0.6, lat=47.0, lon=-99.0, date="2019-07-04", cloud_cover=0.1)


@pytest.fixture(scope="module")
def pipe() -> RSGenPipeline:
    torch.set_num_threads(1)
    return tiny_pipeline()


def run(pipe, **kw):
    args = dict(
        prompt="a river through farmland", metadata=META, num_inference_steps=3, seed=7, progress=False
    )
    args.update(kw)
    return pipe(**args)


def test_same_seed_same_output_and_stored_numbers(pipe):
    a = run(pipe).images
    b = run(pipe).images
    assert a.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    # Stored from this tiny model (seed 0 weights, seed 7 noise): a silent change in sampling shows up here.
    got = [float(a[0, 0, 0, 0]), float(a[0, 16, 16, 1]), float(a[0, 31, 5, 2]), float(a.mean())]
    np.testing.assert_allclose(got, STORED, atol=2e-4)


STORED = [0.5296895, 0.6926022, 0.3533755, 0.5111792]  # tied to configs/tiny.yaml shapes


def test_per_sample_seed_regenerates_one_image(pipe):
    batch = run(pipe, prompt=["a forest", "a city"], n=2, seed=100)
    assert batch.seeds == [100, 101, 102, 103]
    alone = run(pipe, prompt="a city", seed=batch.seeds[3])
    np.testing.assert_allclose(alone.images[0], batch.images[3], atol=1e-4)
    assert np.abs(batch.images[0] - batch.images[1]).max() > 1e-3  # different seeds differ


def test_absent_and_partial_metadata(pipe):
    none = run(pipe, metadata=None).images
    empty = run(pipe, metadata=Metadata()).images
    np.testing.assert_array_equal(none, empty)  # no metadata == every field missing
    partial = run(pipe, metadata=Metadata(gsd_m=2.0)).images
    full = run(pipe).images
    assert np.isfinite(partial).all()
    assert np.abs(partial - none).max() > 1e-4 and np.abs(partial - full).max() > 1e-4
    mixed = run(pipe, prompt=["a", "b"], metadata=[None, Metadata(date="2020")]).images
    assert mixed.shape[0] == 2


def _count_unet_samples(pipe, **kw) -> list[int]:
    sizes: list[int] = []
    handle = pipe.unet.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        run(pipe, **kw)
    finally:
        handle.remove()
    return sizes


@pytest.mark.parametrize(
    ("gt", "gm", "per_step"), [(1.0, 1.0, 1), (4.0, 1.0, 2), (1.0, 3.0, 2), (4.0, 3.0, 3)]
)
def test_guidance_scale_one_skips_unconditional_pass(pipe, gt, gm, per_step):
    sizes = _count_unet_samples(pipe, guidance_text=gt, guidance_meta=gm)
    assert sizes == [per_step] * 3  # 3 steps, one UNet call each, batch = branches x 1 image


def test_guidance_scales_change_output(pipe):
    base = run(pipe, guidance_text=1.0, guidance_meta=1.0).images
    meta = run(pipe, guidance_text=1.0, guidance_meta=4.0).images
    assert np.abs(base - meta).max() > 1e-4


def test_window_covering_image_equals_untiled(pipe):
    plain = run(pipe, height=64, width=64).images
    tiled = run(pipe, height=64, width=64, tiling=Tiling(window=16, overlap=4, decode_tile=16)).images
    np.testing.assert_array_equal(plain, tiled)  # 64 px = 16 latents: one window, one decode tile
    small = run(pipe, height=64, width=64, tiling=Tiling(window=8, overlap=4, decode_tile=8)).images
    assert np.isfinite(small).all() and small.shape == plain.shape


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler", "euler-a", "unipc", "ddpm"])
def test_schedulers_by_name(pipe, name):
    out = run(pipe, scheduler=name, num_inference_steps=2).images
    assert np.isfinite(out).all()


def test_controlnet_noop_at_init_and_start_end(pipe):
    from rsgen.models.controlnet import controlnet_from_unet

    net = controlnet_from_unet(pipe.unet, pipe.latent_factor)
    cond = torch.rand(1, 3, 32, 32)
    plain = run(pipe).images
    calls: list[int] = []
    h = net.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        ctl = run(
            pipe, controls=[ControlInput(cond, 1.0, 0.0, 0.5, net, "canny")], num_inference_steps=4
        ).images
        both = run(
            pipe,
            controls=[ControlInput(cond, 0.5, 0.0, 1.0, net), ControlInput(cond, 1.0, 0.5, 1.0, net)],
            num_inference_steps=4,
        ).images
    finally:
        h.remove()
    assert calls.count(1) == 2 + 6  # first half of 4 steps; then 4 + 2 for the two controls
    np.testing.assert_allclose(run(pipe, num_inference_steps=4).images, ctl, atol=1e-6)  # zero convs: no-op
    assert both.shape == plain.shape


def test_img2img_strength(pipe):
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    sizes = _count_unet_samples(pipe, image=image, strength=0.5, num_inference_steps=4, guidance_text=1.0)
    assert len(sizes) == 2  # half of the steps
    out = run(pipe, image=image, strength=0.5).images
    assert out.shape == (1, 32, 32, 3)


def test_super_resolution_stage():
    sr = tiny_pipeline(super_resolution=True)
    assert sr.is_super_resolution
    low = torch.rand(2, 3, 32, 32) * 2 - 1
    out = sr(
        ["a", "b"],
        META,
        height=64,
        width=64,
        low_res=low,
        num_inference_steps=2,
        guidance_text=1.0,
        progress=False,
    )
    assert out.images.shape == (2, 64, 64, 3)
    with pytest.raises(ConfigError, match="low_res"):
        sr("a", None, height=64, width=64, num_inference_steps=2, progress=False)


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    for sub in ("unet", "vae", "metadata_embedding", "text_encoder", "tokenizer", "scheduler"):
        assert (tmp_path / "m" / sub).is_dir()
    assert not list((tmp_path / "m").rglob("*.bin"))
    loaded = RSGenPipeline.from_pretrained(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(pipe).images, run(loaded).images)


def test_clear_errors(pipe):
    with pytest.raises(ConfigError, match="multiple of 8"):  # tiny: VAE factor 4 x UNet down-sampling 2
        run(pipe, height=36, width=32)
    with pytest.raises(ConfigError, match="unknown scheduler 'heun2'"):
        run(pipe, scheduler="heun2")
    with pytest.raises(ConfigError, match="steps=-3"):
        run(pipe, num_inference_steps=-3)
    with pytest.raises(ConfigError, match="strength"):
        run(pipe, image=torch.zeros(1, 3, 32, 32), strength=1.5)
    with pytest.raises(ConfigError, match="guidance scale"):
        run(pipe, guidance_text=-1)
    with pytest.raises(MetadataError, match=r"lat=95 is outside"):
        run(pipe, metadata=Metadata(lat=95, lon=0))


def test_default_guidance_meta_is_saved_with_the_model_and_used_when_none_is_given(pipe, tmp_path):
    """A call without guidance_meta uses the model's default_guidance_meta (saved in model_index.json)."""
    assert (
        pipe.config.default_guidance_meta == 1.0 and _count_unet_samples(pipe, guidance_text=4.0) == [2] * 3
    )
    pipe.register_to_config(default_guidance_meta=3.0)
    try:
        pipe.save_pretrained(tmp_path / "m")
    finally:
        pipe.register_to_config(default_guidance_meta=1.0)
    loaded = RSGenPipeline.from_pretrained(tmp_path / "m")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.default_guidance_meta == 3.0 and loaded.resolve_guidance_meta(None) == 3.0
    assert _count_unet_samples(loaded, guidance_text=4.0) == [3] * 3  # the metadata branch is run
    np.testing.assert_array_equal(run(loaded).images, run(pipe, guidance_meta=3.0).images)
    assert loaded.resolve_guidance_meta(1.0) == 1.0  # a given scale wins
    with pytest.raises(ConfigError, match="default_guidance_meta"):
        RSGenPipeline(**{k: v for k, v in pipe.components.items()}, default_guidance_meta=-1.0)
