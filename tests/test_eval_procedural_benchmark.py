"""Tests of the procedural benchmark (SYNTHETIC): scoring the real procedural scenes as if generated gives near
perfect agreement and shuffled metadata / layouts score worse; the whole benchmark runs end to end on tiny random
models and writes its report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from eval_fakes import one_thread  # noqa: F401
from pipelines_tiny import tiny_pipeline

from rsgen.data.procedural import write_procedural_set
from rsgen.errors import ConfigError
from rsgen.eval.procedural_benchmark import (
    ProceduralBenchmarkConfig,
    layout_iou,
    load_benchmark_config,
    load_requests,
    measure_road_width,
    run_benchmark,
    score_image_set,
)
from rsgen.eval.procedural_segmenter import (
    LayoutSegmenter,
    SegmenterConfig,
    load_segmenter,
    predict_layout,
    save_segmenter,
    segmenter_for,
)


@pytest.fixture(scope="module")
def procedural_set(tmp_path_factory):
    """40 scenes of 32 px, half of them held out (val)."""
    out = tmp_path_factory.mktemp("procedural")
    return write_procedural_set(out, 40, size=32, seed=3, val=0.5, progress=False)


def test_real_scenes_score_near_perfect_and_shuffled_worse(procedural_set):
    req = load_requests(procedural_set, "val", 30)
    assert len(req) >= 12
    res = score_image_set(req.images, req, None)  # the exact masks as the layout found
    asked, shuffled = res["rules"]["requested"], res["rules"]["shuffled"]
    assert asked["synthetic"] and res["layout"]["synthetic"]
    assert asked["cloud_fraction_mae"] < 0.06
    assert asked["greenness_mae"] < 0.05
    assert asked["snow_cover_mae"] < 0.16
    for key in ("cloud_fraction_mae", "greenness_mae", "autumn_mae", "snow_cover_mae"):
        assert asked[key] < shuffled[key], key
    assert asked["correlation"]["greenness"]["r"] > 0.95
    assert asked["correlation"]["cloud_fraction"]["r"] > 0.95
    if asked["n_object_scale_log2"] >= 3:
        assert asked["object_scale_log2_mae"] < 0.35
    layout = res["layout"]
    assert layout["requested"]["mean"]["iou"] == pytest.approx(1.0)
    assert layout["shuffled"]["mean"]["iou"] < 0.6


def test_layout_iou_constructed_case():
    a = {
        "roads": np.zeros((8, 8), bool),
        "buildings": np.zeros((8, 8), bool),
        "water": np.zeros((8, 8), bool),
    }
    a["roads"][2:4] = True
    a["buildings"][5:7, 5:7] = True
    half = {k: v.copy() for k, v in a.items()}
    half["roads"][3] = False  # half of the road found
    res = layout_iou([half], [a])
    assert res["roads"]["iou"] == pytest.approx(0.5)
    assert res["buildings"]["iou"] == pytest.approx(1.0)
    assert math.isnan(res["water"]["iou"])  # neither asked nor found: not counted
    assert res["mean"]["iou"] == pytest.approx(0.75)


@pytest.mark.parametrize("width", [3, 4, 6, 9])
def test_road_width_of_a_constructed_road(width):
    roads = np.zeros((32, 32), bool)
    roads[10 : 10 + width] = True
    assert measure_road_width(roads) == pytest.approx(width, abs=0.6)
    assert math.isnan(measure_road_width(np.zeros((32, 32), bool)))


def test_segmenter_save_load_and_reuse(tmp_path, procedural_set, one_thread):  # noqa: F811
    cfg = SegmenterConfig(width=4, steps=3, batch_size=4, max_train=8)
    path = tmp_path / "seg.safetensors"
    model = segmenter_for(procedural_set, path, cfg, progress=False)
    again = segmenter_for(procedural_set, path, cfg, progress=False)  # reused, not retrained
    for (k, v), (_, w) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    masks = predict_layout(model, images)
    assert len(masks) == 2 and masks[0]["roads"].shape == (32, 32)
    other = LayoutSegmenter(4)
    save_segmenter(other, tmp_path / "other.safetensors", {"note": "x"})
    loaded, info = load_segmenter(tmp_path / "other.safetensors")
    assert info["note"] == "x" and info["width"] == 4


def test_config_loads_and_rejects_bad_values():
    cfg = load_benchmark_config("procedural_benchmark", ["n=10"])
    assert cfg.n == 10 and cfg.split == "val"
    with pytest.raises(ConfigError):
        ProceduralBenchmarkConfig(prompt="loud")
    with pytest.raises(ConfigError):
        ProceduralBenchmarkConfig(n=1)


def test_benchmark_end_to_end_on_tiny_random_models(tmp_path, procedural_set, one_thread):  # noqa: F811
    from rsgen.models.controlnet import controlnet_from_unet
    from rsgen.models.vae import vae_scale_factor
    from rsgen.pipelines import RSGenPipeline

    base = tiny_pipeline()
    controlnet = controlnet_from_unet(base.unet, vae_scale_factor(base.vae))
    control = RSGenPipeline(**{**base.components, "controlnet": controlnet})
    control_dir = tmp_path / "control-model"
    control.save_pretrained(control_dir)  # the control model goes through from_pretrained
    cfg = ProceduralBenchmarkConfig(
        manifest=str(procedural_set),
        n=4,
        control_model=str(control_dir),
        out_dir=str(tmp_path / "bench"),
        num_inference_steps=2,
        batch_size=3,
        grid_scenes=3,
        segmenter=SegmenterConfig(width=4, steps=3, batch_size=4, max_train=8),
    )
    report = run_benchmark(cfg, pipelines={"base": base}, progress=False)
    out = tmp_path / "bench"
    assert set(report["sets"]) == {"real", "real_vae", "base", "control"}
    saved = json.loads((out / "report.json").read_text())
    assert saved["synthetic"] is True and saved["n_scenes"] == 4
    md = (out / "report.md").read_text()
    assert md.count("SYNTHETIC benchmark") >= 4  # every section
    assert (out / "grid.png").stat().st_size > 0
    metrics = {row["metric"] for row in saved["summary"]}
    assert {"cloud_fraction_mae", "snow_cover_mae", "greenness_mae", "shadow_direction_accuracy"} <= metrics
    assert {"object_scale_log2_mae", "iou_roads", "iou_buildings", "iou_water"} <= metrics
