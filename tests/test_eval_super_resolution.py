"""Super-resolution quality: a perfect upscaler scores perfectly, bicubic is in between, the colour fix pulls a
wrong-coloured upscaler towards the originals; the report runs end to end on a saved tiny stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from data_fixtures import textured  # noqa: E402

from rsgen.errors import DataError  # noqa: E402
from rsgen.eval.super_resolution import (  # noqa: E402
    run_sr_quality,
    score_upscaled,
    super_resolution_quality,
    to_unit_nchw,
)
from rsgen.io import write_png  # noqa: E402


def _images(n: int = 6, size: int = 32) -> np.ndarray:
    return np.stack([textured(i, size) for i in range(n)])  # (N, S, S, 3) uint8


def test_scores_move_the_right_way():
    real = to_unit_nchw(_images())
    perfect = score_upscaled(real, real)
    assert perfect.psnr_db == 100.0 and perfect.ssim > 0.999 and perfect.spectral_distance < 1e-6
    blurred = F.interpolate(
        F.interpolate(real, scale_factor=0.25, mode="area"), size=(32, 32), mode="bicubic"
    )
    soft = score_upscaled(real, blurred)
    assert soft.psnr_db < 40 and soft.ssim < perfect.ssim and soft.spectral_distance > 0.01
    with pytest.raises(DataError, match="do not match"):
        score_upscaled(real, real[:, :, :16])


def test_quality_of_perfect_bicubic_and_miscoloured_upscalers():
    images = _images()
    real = to_unit_nchw(images)

    def oracle(low, prompts, seed):  # knows the originals: what a perfect stage would give
        return real[seed : seed + len(low)]

    q, sets = super_resolution_quality(oracle, images, ["p"] * len(images), 4, batch_size=4)
    assert q.num_images == 6 and q.factor == 4 and q.size == 32
    assert q.scores["stage"].psnr_db > 60 and q.scores["stage"].psnr_db > q.scores["bicubic"].psnr_db + 10
    assert set(sets) == {"low", "stage", "stage_color_fix", "bicubic", "real"}
    assert sets["low"].shape == images.shape

    def tinted(low, prompts, seed):  # right detail, wrong colours
        return (real[seed : seed + len(low)] * 0.5 + torch.tensor([0.4, 0.0, 0.3])[:, None, None]).clamp(0, 1)

    q2, _ = super_resolution_quality(tinted, images, ["p"] * len(images), 4, batch_size=4)
    assert q2.scores["stage_color_fix"].psnr_db > q2.scores["stage"].psnr_db + 5
    with pytest.raises(DataError, match="multiple of the factor"):
        super_resolution_quality(oracle, images[:, :30, :30], ["p"] * 6, 4)


@pytest.mark.slow
def test_run_sr_quality_on_a_saved_tiny_stage(tmp_path):
    from rsgen.pipelines.cascade import StageConfig, load_stage

    torch.manual_seed(0)
    pipe = load_stage(StageConfig("sr", "does/not/exist", random_config="tiny", factor=2))
    pipe.save_pretrained(tmp_path / "sr", safe_serialization=True)
    for i, im in enumerate(_images(3)):
        write_png(tmp_path / "ref" / f"{i}.png", im)
    result = run_sr_quality(
        str(tmp_path / "sr"), str(tmp_path / "out"), str(tmp_path / "ref"), 3, gsd_m=1.0, size=32, steps=2
    )
    assert set(result["scores"]) == {"stage", "stage_color_fix", "bicubic"}
    assert result["class_accuracy_real"] is None  # an unlabelled folder: no classifier
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["factor"] == 2 and saved["num_images"] == 3
    text = (tmp_path / "out" / "report.md").read_text()
    assert "bicubic" in text and "colour fix" in text and (tmp_path / "out" / "comparison.png").is_file()
