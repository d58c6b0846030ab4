"""The resolution cascade (tiny random stages), the cascade over a scene of any size, and what-if sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipelines_tiny import tiny_pipeline

from rsgen.errors import ConfigError
from rsgen.metadata import Metadata
from rsgen.pipelines.cascade import Cascade, CascadeConfig, StageConfig, load_cascade, stage_sizes
from rsgen.pipelines.whatif import SourceImage, labelled_grid, parse_sweep, run_whatif, variants


def _config() -> CascadeConfig:
    return CascadeConfig(
        [StageConfig("base", "x"), StageConfig("sr2", "y", factor=2, steps=2, guidance_text=1.0)]
    )


@pytest.fixture(scope="module")
def pipes():
    torch.set_num_threads(1)
    return {"base": tiny_pipeline(), "sr2": tiny_pipeline(super_resolution=True)}


def test_cascade_stage_gsd_and_skip(pipes):
    cascade = Cascade(_config(), loader=lambda s: pipes[s.name])
    gsds: list[float] = []
    orig = pipes["sr2"].embed_metadata
    pipes["sr2"].embed_metadata = lambda metas, *a, **k: (gsds.append(metas[0].gsd_m), orig(metas, *a, **k))[
        1
    ]
    try:
        meta = Metadata(gsd_m=0.5, lat=10.0, lon=20.0)
        res = cascade(["a", "b"], meta, size=(64, 64), steps=2, n=1, seed=3, progress=False)
    finally:
        pipes["sr2"].embed_metadata = orig
    assert res.images.shape == (2, 64, 64, 3) and res.seeds == [3, 4]
    assert [m.gsd_m for m in res.stage_metadata] == [1.0, 0.5]  # each stage gets the GSD of its own output
    assert gsds and set(gsds) == {0.5}
    assert res.stage_guidance_meta == [1.0, 1.0]  # no scale given: each stage's model default
    pipes["base"].register_to_config(default_guidance_meta=2.0)
    try:
        assert cascade("a", meta, size=(64, 64), steps=1, progress=False).stage_guidance_meta == [2.0, 1.0]
        assert cascade("a", meta, size=(64, 64), steps=1, guidance_meta=3.0).stage_guidance_meta == [3.0, 3.0]
    finally:
        pipes["base"].register_to_config(default_guidance_meta=1.0)
    skipped = cascade("a", meta, size=(64, 64), steps=2, skip=["sr2"], progress=False)
    # The requested size and GSD describe the output: without the SR stage the base stage makes it directly.
    assert skipped.images.shape == (1, 64, 64, 3) and skipped.stage_metadata[0].gsd_m == 0.5
    with pytest.raises(ConfigError, match="base stage cannot be skipped"):
        cascade("a", meta, size=(64, 64), skip=["base"])
    with pytest.raises(ConfigError, match="not divisible"):
        stage_sizes(_config().stages, (63, 64))


def test_shipped_cascade_configs_load():
    for name in ("default", "tiny"):
        cfg = load_cascade(name)
        assert cfg.stages[0].factor == 1 and all(s.factor >= 2 for s in cfg.stages[1:])
    with pytest.raises(ConfigError, match="factor"):
        CascadeConfig([StageConfig("a", "x", factor=2)])


def test_whatif_sweep_keeps_seed_and_georef(pipes):
    field, values = parse_sweep("month=1..12:3")
    assert field == "month" and values == ["1", "4", "7", "10"]
    assert parse_sweep("gsd=0.5,1,2")[1] == ["0.5", "1", "2"]
    with pytest.raises(ConfigError):
        parse_sweep("colour=red")
    base = Metadata(gsd_m=1.0, date="2019-07-04")
    vs = variants(base, "fields", "month", values)
    assert [v.label for v in vs] == ["Jan", "Apr", "Jul", "Oct"] and vs[1].metadata.date.month == 4
    src = SourceImage(torch.rand(1, 3, 32, 32) * 2 - 1, None, base, None)
    res = run_whatif(
        pipes["base"], src, "fields", "month", values[:2], strength=0.5, steps=2, seed=1, progress=False
    )
    assert len(res.images) == 2 and np.abs(res.images[0] - res.images[1]).max() > 0
    g = run_whatif(pipes["base"], src, "fields", "gsd", ["2"], strength=0.5, steps=2, progress=False)
    assert g.images[0].shape == (16, 16, 3) and g.metadata[0].gsd_m == 2.0  # same footprint, coarser grid
    grid = labelled_grid(res.images, ["Jan", "Apr"], cell=32)
    assert grid.shape == (50, 64, 3) and grid.dtype == np.uint8


# ------------------------------------------------------------------------------------ cascade over a scene
def test_scene_cascade_size_gsd_transform_and_windows(pipes, tmp_path):
    from rsgen.io import GeoReference, read_geotiff
    from rsgen.pipelines import Tiling
    from rsgen.pipelines.scene import generate_scene, scene_boundaries, seam_ratio

    cascade = Cascade(_config(), loader=lambda s: pipes[s.name])
    georef = GeoReference.from_latlon_gsd(45.0, 7.0, 10.0, 160, 128)  # 160 wide, 128 high, at 10 m
    seen: dict[str, list] = {"base": [], "sr2": []}
    hooks = [
        pipes[k].unet.register_forward_pre_hook(lambda m, a, k=k: seen[k].append(tuple(a[0].shape[-2:])))
        for k in seen
    ]
    gsds: list[float] = []
    orig = pipes["sr2"].embed_metadata
    pipes["sr2"].embed_metadata = lambda metas, *a, **k: (gsds.append(metas[0].gsd_m), orig(metas, *a, **k))[
        1
    ]
    tiling = Tiling(window=8, overlap=3, decode_tile=8)
    try:
        path = generate_scene(
            pipes["base"],
            tmp_path / "out" / "scene.tif",
            "farmland with fields and a river",
            Metadata(gsd_m=10.0, lat=45.0, lon=7.0),
            height=128,
            width=160,
            georef=georef,
            tiling=tiling,
            num_inference_steps=2,
            guidance_text=1.0,
            seed=5,
            cascade=cascade,
            canvas_on_disk=True,
            progress=False,
        )
    finally:
        pipes["sr2"].embed_metadata = orig
        for hk in hooks:
            hk.remove()
    r = read_geotiff(path)
    assert r.array.shape == (3, 128, 160) and r.array.std() > 0
    assert r.georef is not None and r.georef.crs == georef.crs
    assert tuple(r.georef.transform) == pytest.approx(tuple(georef.transform))
    assert r.metadata.gsd_m == pytest.approx(10.0)
    # the base stage made the whole extent at 20 m (64x80 px = 16x20 latents), the x2 stage ran at 10 m;
    # both only ever saw 8x8 windows, and there were several of them
    assert set(gsds) == {10.0}
    assert max(max(s) for s in seen["base"]) == 8 and max(max(s) for s in seen["sr2"]) == 8
    assert len(seen["sr2"]) == 2 * len(tiling.windows(32, 40))
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "scene.tif"]  # temp area removed
    rows, cols = scene_boundaries(pipes["sr2"], tiling, 128, 160)
    assert rows and cols
    assert seam_ratio(r.array, rows, cols) < 1.1


def test_seam_ratio_sees_a_seam():
    from rsgen.pipelines.scene import seam_ratio

    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 64, 64)).cumsum(axis=2) * 0.1  # smooth along columns
    assert seam_ratio(img, [], [20, 40]) < 1.1
    img[:, :, 32:] += 3.0  # an offset between two halves
    assert seam_ratio(img, [], [32]) > 1.1


def test_scene_cascade_controls_resampled_to_base_grid():
    from rsgen.pipelines.pipeline import ControlInput
    from rsgen.pipelines.scene_cascade import controls_on_grid

    img = torch.zeros(1, 3, 8, 8)
    img[:, 0, :, 4:] = 1.0  # a class map: left half class A, right half class B
    img[:, 1, ::2, ::2] = 1.0
    seg, canny = controls_on_grid(
        [ControlInput(img, kind="landcover"), ControlInput(img, kind="canny")], (4, 4)
    )
    assert seg.image.shape == (1, 3, 4, 4) and set(seg.image.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(canny.image[0, 1], torch.full((4, 4), 0.25))  # area-averaged


def test_generate_cli_runs_a_cascade_scene_like_a_reference(pipes, tmp_path, monkeypatch):
    """``rsgen generate --cascade NAME --like REF.tif`` on a scene: the block-wise scene path, output on the
    reference's footprint at the requested size, the final GSD recorded."""
    import importlib

    import yaml

    from rsgen.cli import main
    from rsgen.io import GeoReference, read_geotiff, write_geotiff

    try:  # jobs.py is moving to rsgen.cli.jobs
        jobs = importlib.import_module("rsgen.cli.jobs")
    except ImportError:
        jobs = importlib.import_module("rsgen.pipelines.jobs")
    monkeypatch.setattr(jobs, "SCENE_MIN_SIDE", 64)  # a "large" scene at a test's size
    for name, pipe in pipes.items():
        pipe.save_pretrained(tmp_path / name)
    stages = [
        {"name": "base", "model": str(tmp_path / "base")},
        {"name": "sr2", "model": str(tmp_path / "sr2"), "factor": 2, "steps": 1, "guidance_text": 1.0},
    ]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"stages": stages}))
    ref = GeoReference.from_latlon_gsd(47.0, -99.0, 4.0, 32, 32)
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8")
    write_geotiff(tmp_path / "ref_20190704.tif", img, ref, layout="HWC")
    args = [
        "generate",
        "fields",
        "--cascade",
        str(tmp_path / "c.yaml"),
        "--like",
        str(tmp_path / "ref_20190704.tif"),
    ]
    args += ["--size", "64", "--window", "8", "--overlap", "2", "--steps", "1", "--guidance-text", "1"]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress", "--format", "tif"]) == 0
    (tif,) = (tmp_path / "out").glob("*.tif")
    r = read_geotiff(tif)
    assert r.array.shape == (3, 64, 64) and r.tags["RSGEN_PROMPT"] == "fields"
    assert tuple(r.georef.transform) == pytest.approx(tuple(ref.resized(64, 64).transform))
    assert r.metadata.gsd_m == pytest.approx(2.0)  # 32 px at 4 m -> 64 px at 2 m
    assert str(r.metadata.date) == "2019-07-04"
    assert '"scene": true' in tif.with_suffix(".json").read_text()  # went through the block-wise scene path


def test_scene_cascade_land_cover_map_steers_the_base_stage(pipes, tmp_path):
    """A land-cover map on the final grid reaches the base stage's ControlNet window by window, resampled onto
    the base grid by nearest neighbour (only class colours); the super-resolution stage runs without it."""
    from rsgen.conditions import condition_to_tensor
    from rsgen.conditions.landcover import CLASS_IDS, landcover_ids, landcover_image
    from rsgen.models.controlnet import controlnet_from_unet
    from rsgen.pipelines import Tiling
    from rsgen.pipelines.pipeline import ControlInput
    from rsgen.pipelines.scene import generate_scene

    ids = np.full((64, 96), CLASS_IDS["cropland"])
    ids[:, 40:56] = CLASS_IDS["water"]  # a river across the fields
    control = ControlInput(condition_to_tensor(landcover_image(ids))[None], kind="landcover")
    control.controlnet = controlnet_from_unet(pipes["base"].unet, pipes["base"].latent_factor)
    seen: list[torch.Tensor] = []
    hook = control.controlnet.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["controlnet_cond"][0].clone()), with_kwargs=True
    )
    cascade = Cascade(_config(), loader=lambda s: pipes[s.name])
    try:
        generate_scene(
            pipes["base"],
            tmp_path / "lc.tif",
            "farmland with fields and a river",
            Metadata(gsd_m=10.0),
            height=64,
            width=96,
            tiling=Tiling(window=4, overlap=1, decode_tile=4),
            num_inference_steps=1,
            guidance_text=1.0,
            cascade=cascade,
            controls=[control],
            progress=False,
        )
    finally:
        hook.remove()
    # base grid: 32x48 px = 8x12 latents in 4x4 windows (16x16 px crops of the map), one step
    assert len(seen) == len(Tiling(window=4, overlap=1).windows(8, 12))
    crops = [landcover_ids((c.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for c in seen]
    assert all(c.shape == (16, 16) for c in crops)
    assert {int(v) for c in crops for v in np.unique(c)} == {CLASS_IDS["cropland"], CLASS_IDS["water"]}
