"""Pure sampling helpers: window layouts and blending weights, decode tiles, guidance math, per-sample noise,
schedulers by name, the latent canvas, one scheduler stepping a scene band by band."""

from __future__ import annotations

import pytest
import torch

from rsgen.errors import ConfigError
from rsgen.pipelines.canvas import LatentCanvas
from rsgen.pipelines.guidance import FULL, NO_META, NO_TEXT, GuidanceScales, combine_guidance
from rsgen.pipelines.noise import make_generators, per_sample_noise, sample_seeds
from rsgen.pipelines.schedulers import (
    SCHEDULER_NAMES,
    canonical_scheduler_name,
    make_scheduler,
    scheduler_name_of,
)
from rsgen.pipelines.windows import Window, blend_weights, decode_tiles, row_bands, window_layout


@pytest.mark.parametrize(
    ("h", "w", "win", "ov"), [(16, 16, 16, 4), (40, 23, 8, 3), (100, 7, 16, 8), (5, 5, 8, 2)]
)
def test_window_layout_covers_grid_with_overlap(h, w, win, ov):
    wins = window_layout(h, w, win, ov)
    cover = torch.zeros(h, w)
    for x in wins:
        assert x.top >= 0 and x.bottom <= h and x.left >= 0 and x.right <= w
        cover[x.slices()] += 1
    assert (cover >= 1).all()
    if h > win:  # neighbours share at least `ov` rows
        tops = sorted({x.top for x in wins})
        assert all(b - a <= win - ov for a, b in zip(tops, tops[1:], strict=False))


def test_blend_weights_sum_positive_and_interior_one():
    h = w = 40
    wins = window_layout(h, w, 16, 6)
    total = torch.zeros(1, 1, h, w)
    for x in wins:
        wt = blend_weights(x, h, w, 6)
        assert wt.shape == (1, 1, x.height, x.width) and (wt > 0).all() and wt.max() == 1
        total[:, :, x.slices()[0], x.slices()[1]] += wt
    assert (total > 0.1).all()
    assert blend_weights(Window(0, 0, 16, 16), 16, 16, 6).eq(1).all()  # one window: plain average


def test_decode_tiles_partition_grid():
    cover = torch.zeros(37, 20)
    for ctx, core in decode_tiles(37, 20, 8, 3):
        assert ctx.top <= core.top and ctx.bottom >= core.bottom and ctx.left <= core.left
        cover[core.slices()] += 1
    assert cover.eq(1).all()
    assert [b.height for b in row_bands(10, 4, 4)] == [4, 4, 2]


def test_guidance_math_and_branches():
    e = {
        FULL: torch.full((1, 4, 2, 2), 1.0),
        NO_TEXT: torch.full((1, 4, 2, 2), 0.5),
        NO_META: torch.zeros(1, 4, 2, 2),
    }
    assert GuidanceScales(1, 1).branches() == (FULL,)
    assert GuidanceScales(3, 1).branches() == (FULL, NO_TEXT)
    assert GuidanceScales(1, 2).branches() == (FULL, NO_META)
    out = combine_guidance(e, GuidanceScales(3.0, 2.0))  # 1 + 2 * 0.5 + 1 * 1
    assert torch.allclose(out, torch.full_like(out, 3.0))
    with pytest.raises(ConfigError, match="guidance scale"):
        GuidanceScales(-1, 1)


def test_per_sample_noise_independent_of_batch():
    seeds = sample_seeds(10, 3)
    assert seeds == [10, 11, 12]
    batch = per_sample_noise((3, 4, 8, 8), make_generators(seeds))
    alone = per_sample_noise((1, 4, 8, 8), make_generators([12]))
    assert torch.equal(batch[2:], alone)
    with pytest.raises(ConfigError):
        sample_seeds([1, 2], 3)


def test_schedulers_by_name_and_errors():
    for name in SCHEDULER_NAMES:
        s = make_scheduler(name)
        assert scheduler_name_of(s) == name
    assert canonical_scheduler_name("DPMSolver++") == "dpm++"
    assert canonical_scheduler_name("euler_a") == "euler-a"
    with pytest.raises(ConfigError, match="unknown scheduler 'plms'; expected one of"):
        make_scheduler("plms")


@pytest.mark.parametrize("on_disk", [False, True])
def test_latent_canvas(tmp_path, on_disk):
    c = LatentCanvas(4, 10, 12, tmp_path if on_disk else None)
    win = Window(2, 3, 5, 6)
    c.write(win, torch.ones(1, 4, 5, 6))
    c.add(Window(0, 0, 4, 4), torch.ones(1, 4, 4, 4))
    full = c.read(Window(0, 0, 10, 12))
    assert full.shape == (1, 4, 10, 12) and full.sum() == 4 * (30 + 16)
    assert full[0, 0, 3, 3] == 2
    c.fill(0.0)
    assert c.read(win).abs().sum() == 0
    c.close()
    assert not list(tmp_path.glob("canvas-*"))


def _step_scene(name: str, bands: list[Window], tmp_path, outputs: list[torch.Tensor], x0: torch.Tensor):
    """Step a (1, 4, H, W) latent through ``outputs`` with one SceneScheduler over ``bands`` (history on disk);
    returns the final latent and the largest number of history stores / sample-shaped scheduler tensors seen."""
    from rsgen.pipelines.multidiffusion import SceneScheduler, sample_state

    sched = make_scheduler(name)
    sched.set_timesteps(len(outputs))
    canvas = LatentCanvas(4, x0.shape[-2], x0.shape[-1], tmp_path)
    canvas.write(Window(0, 0, x0.shape[-2], x0.shape[-1]), x0)
    scene = SceneScheduler(sched, len(bands))
    scene.bind(canvas.like)
    gens = make_generators([3])
    max_stores = max_held = 0
    for t, out in zip(sched.timesteps, outputs, strict=True):
        scene.begin_step()
        for band in bands:
            x = canvas.read(band)
            rows, cols = band.slices()
            canvas.write(band, scene.step(band, out[:, :, rows, cols], t, x, gens))
            max_held = max(max_held, len(sample_state(sched, tuple(x.shape))))
        max_stores = max(max_stores, len(scene.history))
    result = canvas.read(Window(0, 0, x0.shape[-2], x0.shape[-1]))
    scene.close()
    canvas.close()
    return result, max_stores, max_held


@pytest.mark.parametrize("name", ["dpm++", "unipc", "euler", "ddim"])
def test_scene_scheduler_state_does_not_grow_with_bands(tmp_path, name):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 24, 16, generator=g)
    outputs = [torch.randn(1, 4, 24, 16, generator=g) for _ in range(4)]
    # the whole latent stepped at once by a plain diffusers scheduler
    ref = make_scheduler(name)
    ref.set_timesteps(4)
    x = x0.clone()
    for t, out in zip(ref.timesteps, outputs, strict=True):
        x = ref.step(out, t, x, return_dict=False)[0]
    results = {}
    for n in (2, 6):  # 12-row and 4-row bands
        bands = row_bands(24, 16, 24 // n)
        results[n] = _step_scene(name, bands, tmp_path, outputs, x0)
        torch.testing.assert_close(results[n][0], x, rtol=1e-5, atol=1e-5)
    # history: the same number of scene-sized stores (DPM++: 2 = its order; none for a one-step scheduler)
    # for 2 or 6 bands, and the scheduler itself never keeps a band's history between bands
    assert results[2][1] == results[6][1] == {"dpm++": 2, "unipc": 3, "euler": 0, "ddim": 0}[name]
    assert results[2][2] == results[6][2] == 0
    assert not list(tmp_path.glob("canvas-*"))  # the history files are removed
