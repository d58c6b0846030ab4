"""Control faithfulness: edge F1 / SSIM and mask IoU move the right way on constructed cases, references
(shuffled, real) are reported, and `rsgen generate --control` -> `rsgen evaluate` carries the conditions through."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_fakes import one_thread, smooth_images, tiny_net  # noqa: F401

from rsgen.conditions import SEGMENTATION_PALETTE, make_condition
from rsgen.errors import ConfigError
from rsgen.eval import control_faithfulness as cf
from rsgen.eval.generated_set import load_generated_set, write_generated_set
from rsgen.io import write_png

pytestmark = pytest.mark.usefixtures("one_thread")


def line_map(seed: int, size: int = 64, n: int = 6) -> np.ndarray:
    """(size, size) bool map of ``n`` random horizontal / vertical one-pixel lines."""
    rng = np.random.default_rng(seed)
    m = np.zeros((size, size), bool)
    for _ in range(n):
        pos, a, b = rng.integers(4, size - 4), *sorted(rng.integers(0, size, 2))
        if rng.random() < 0.5:
            m[pos, a : b + 8] = True
        else:
            m[a : b + 8, pos] = True
    return m


def block_scene(seed: int, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 scene of random flat rectangles (fields, roofs): strong, known edges."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 90, np.uint8)
    for _ in range(6):
        r, c = rng.integers(0, size - 12, 2)
        h, w = rng.integers(8, 24, 2)
        img[r : r + h, c : c + w] = rng.integers(0, 256, 3)
    return img


def test_edge_f1_self_shifted_unrelated() -> None:
    a = line_map(0)
    assert cf.edge_f1(a, a).f1 == 1.0
    shifted = np.roll(a, 1, axis=1)
    assert cf.edge_f1(shifted, a, tolerance=2).f1 > 0.95
    assert cf.edge_f1(np.roll(a, (6, 6), axis=(0, 1)), a, tolerance=2).f1 < 0.5  # beyond the tolerance
    unrelated = cf.edge_f1(line_map(1), a, tolerance=1)
    assert unrelated.f1 < 0.4
    empty = np.zeros_like(a)
    assert cf.edge_f1(empty, empty).f1 == 1.0 and cf.edge_f1(empty, a).f1 == 0.0
    # the torch dilation fallback (no scipy) agrees with the distance transform within its range
    d_scipy, d_torch = cf._distance_to(a), cf._distance_by_dilation(a)
    for t in (1.0, 1.5, 2.0, 3.0):
        assert np.array_equal(d_scipy <= t, d_torch <= t)


def test_ssim_of_condition_maps() -> None:
    a = (line_map(0)[:, :, None] * np.full(3, 255)).astype(np.uint8)
    b = (line_map(1)[:, :, None] * np.full(3, 255)).astype(np.uint8)
    s = cf.condition_ssim([a, a], [a, b])
    assert s[0] == pytest.approx(1.0, abs=1e-4) and s[1] < 0.7  # sparse maps share their black background


def test_canny_reextraction_own_vs_other() -> None:
    images = [block_scene(i) for i in range(4)]
    conds = [make_condition("canny", im, size=(64, 64)) for im in images]
    res = cf.control_faithfulness("canny", images, conds, real_images=images, seed=0)
    assert res.family == "edges" and res.num_generated == 4 and res.num_real == 4
    assert res.metrics["F1"] > 0.99 and res.metrics["SSIM"] > 0.99
    assert res.shuffled["F1"] < 0.5 and res.shuffled["SSIM"] < 0.5
    assert res.real is not None and res.real["F1"] > 0.99
    # generated at another size than the condition: re-extracted on the condition's grid, still faithful
    big = [np.kron(im, np.ones((2, 2, 1), np.uint8)) for im in images]
    assert cf.control_faithfulness("canny", big, conds).metrics["F1"] > 0.8
    md = cf.control_markdown([res.to_dict()])
    assert "| canny | F1 (tolerance 2 px) |" in md and "shuffled" in md


def test_mask_iou_perfect_and_constant_segmenter(tmp_path) -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 32, 32), bool)
    for m in masks:
        r, c = rng.integers(0, 20, 2)
        m[r : r + 10, c : c + 8] = True
    conds = [np.repeat(m[:, :, None] * np.uint8(255), 3, axis=2) for m in masks]  # footprints maps
    images = [np.where(m[:, :, None], 210, 60).astype(np.uint8) * np.ones(3, np.uint8) for m in masks]

    def perfect(rgb: np.ndarray) -> np.ndarray:
        return rgb[:, :, 0] > 128

    res = cf.control_faithfulness("footprints", images, conds, images, segmenter=perfect)
    assert res.metrics["IoU"] == 1.0 and res.real == {"IoU": 1.0} and res.shuffled["IoU"] < 0.5
    const = cf.control_faithfulness(
        "footprints", images, conds, segmenter=lambda rgb: np.zeros(rgb.shape[:2])
    )
    assert const.metrics["IoU"] == 0.0
    # segmentation: palette-coded classes, per-class IoU
    classes = np.zeros((2, 32, 32), np.int64)
    classes[0, :, 16:] = 3
    classes[1, 16:, :] = 5
    seg_conds = [SEGMENTATION_PALETTE[c] for c in classes]  # (32, 32, 3) colours
    seg_images = [np.repeat((c * 40).astype(np.uint8)[:, :, None], 3, axis=2) for c in classes]
    seg = cf.control_faithfulness(
        "segmentation", seg_images, seg_conds, segmenter=lambda rgb: rgb[:, :, 0].astype(np.int64) // 40
    )
    assert seg.metrics["mIoU"] == 1.0 and set(seg.per_class_iou) == {"0", "3", "5"}
    assert seg.shuffled["mIoU"] < 0.6
    # a segmenter given as file.py:function
    (tmp_path / "myseg.py").write_text("def run(rgb):\n    return rgb[:, :, 0] > 128\n")
    fn = cf.load_segmenter(f"{tmp_path / 'myseg.py'}:run")
    assert cf.control_faithfulness("footprints", images, conds, segmenter=fn).metrics["IoU"] == 1.0
    with pytest.raises(ConfigError):
        cf.load_segmenter("no_such_module_xyz:run")
    with pytest.raises(ConfigError):
        cf.control_faithfulness("footprints", images, conds)  # no segmenter: never guessed


def _conditioned_set(tmp_path: Path) -> Path:
    """A generated set: 4 scenes with their canny conditions, 2 footprints maps without a segmenter."""
    images = np.stack([block_scene(i) for i in range(4)])
    records = []
    for i, im in enumerate(images):
        real = tmp_path / f"real_{i}.png"
        write_png(real, im)
        cond = f"img_{i:05d}.condition-canny.png"
        write_png(tmp_path / "gen" / cond, make_condition("canny", im, size=(64, 64)))
        rec = {
            "prompt": "a dense forest",
            "metadata": {"gsd_m": 10.0},
            "conditions": {"canny": cond},
            "condition_sources": {"canny": str(real)},
        }
        if i < 2:
            write_png(tmp_path / "gen" / f"fp_{i}.png", np.zeros((64, 64, 3), np.uint8))
            rec["conditions"]["footprints"] = f"fp_{i}.png"
        records.append(rec)
    return write_generated_set(tmp_path / "gen", images, records)


def test_evaluate_folder_control_section(tmp_path) -> None:
    from rsgen.eval.evaluate import EvaluateConfig, evaluate_folder
    from rsgen.eval.reference_data import EUROSAT_CLASSES

    folder = _conditioned_set(tmp_path)
    data = load_generated_set(folder, size=32)
    assert data.samples[0].conditions["canny"] == folder / "img_00000.condition-canny.png"
    net = tiny_net(num_classes=10, size=32)
    net.register_to_config(class_names=EUROSAT_CLASSES)
    net.save_pretrained(tmp_path / "net")
    cfg = EvaluateConfig(
        reference=str(folder),
        image_size=32,
        feature_net=str(tmp_path / "net"),
        gsd_predictor=str(tmp_path / "none"),
        year_predictor=str(tmp_path / "none"),
        rs_clip=str(tmp_path / "none"),
    )
    report = evaluate_folder(folder, tmp_path / "out", cfg)
    (canny,) = report["control_faithfulness"]
    assert canny["kind"] == "canny" and canny["num_generated"] == 4 and canny["num_real"] == 4
    assert canny["metrics"]["F1"] > 0.99 and canny["shuffled"]["F1"] < 0.5 and canny["real"]["F1"] > 0.99
    assert any("'footprints' (IoU): no segmenter" in m for m in report["not_measured"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Control faithfulness" in md and "| canny | F1" in md
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert math.isclose(saved["control_faithfulness"][0]["metrics"]["F1"], canny["metrics"]["F1"])


def test_generate_with_control_records_conditions(tmp_path, monkeypatch) -> None:
    """`rsgen generate --control canny=...` saves the condition beside the image and names it in the sidecar;
    the evaluation reads it back from the sidecar (no generated.jsonl)."""
    from pipelines_tiny import tiny_pipeline

    from rsgen.cli import main
    from rsgen.models.controlnet import controlnet_from_unet

    torch.manual_seed(0)
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "model")
    controlnet_from_unet(pipe.unet, pipe.latent_factor).save_pretrained(tmp_path / "cn")
    src = tmp_path / "tile.png"
    write_png(src, block_scene(0, size=32))
    out = tmp_path / "out"
    args = ["generate", "a field", "--model", str(tmp_path / "model"), "--steps", "1", "--n", "2"]
    args += ["--controlnet", f"canny={tmp_path / 'cn'}", "--control", f"canny={src}", "--size", "32"]
    assert main([*args, "--out", str(out), "--format", "png", "--no-progress"]) == 0
    sidecar = json.loads((out / "rsgen_0000_s0.json").read_text())
    assert sidecar["generation"]["conditions"] == {"canny": "rsgen_0000_s0.condition-canny.png"}
    assert sidecar["generation"]["condition_sources"]["canny"] == str(src.resolve())
    data = load_generated_set(out, size=32)
    assert len(data) == 2 and data.samples[0].prompt == "a field"  # condition PNGs are not samples
    results, missing = cf.control_section(data)
    assert results[0]["kind"] == "canny" and results[0]["num_real"] == 2
    assert results[0]["real"]["F1"] > 0.99 and not missing
    monkeypatch.chdir(tmp_path)  # a folder given relative to the working directory reads the same
    assert [s.path.name for s in load_generated_set("out", size=32).samples] == [
        "rsgen_0000_s0.png",
        "rsgen_0001_s1.png",
    ]
