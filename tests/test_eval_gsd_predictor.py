"""GSD predictor: resampling, the faithfulness score, and (shipped model) blur reads as a coarser GSD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_fakes import one_thread  # noqa: F401

from rsgen.errors import DataError, WeightsNotFoundError
from rsgen.eval.gsd_predictor import (
    DEFAULT_GSD_PREDICTOR_DIR,
    RESAMPLE_KERNELS,
    GeoScene,
    _sample_batch,
    degrade,
    gsd_faithfulness,
    kernel_sensitivity,
    load_gsd_predictor,
    log2_errors,
    predict_gsd,
    resample_window,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resample_window_and_degrade_shapes() -> None:
    scene = GeoScene("fake", torch.rand(3, 300, 200), gsd_m=1.0)
    win = resample_window(scene, target_gsd=2.5, size=64, rng=np.random.default_rng(0))
    assert win.shape == (3, 64, 64)
    x = torch.rand(2, 3, 64, 64)
    blurred = degrade(x, 4.0)
    assert blurred.shape == x.shape
    # coarsening removes high frequencies: neighbouring pixels become more alike
    assert (blurred.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()).item()
    # every kernel pair coarsens; box averaging then bicubic (the curated copies) differs from bilinear both ways
    outs = {k: degrade(x, 4.0, k) for k in RESAMPLE_KERNELS}
    for out in outs.values():
        assert (
            out.shape == x.shape
            and (out.diff(dim=-1).abs().mean() < 0.5 * x.diff(dim=-1).abs().mean()).item()
        )
    assert not torch.allclose(outs[("area", "bicubic")], outs[("bilinear", "bilinear")], atol=1e-3)


def test_kernel_mix_draws_the_rule_for_its_share_and_nearest_enlargement_makes_blocks() -> None:
    from rsgen.eval.gsd_predictor import KERNEL_MIX_RULE_SHARE, RULE, _pick_kernels

    assert _pick_kernels(np.random.default_rng(0), 5, kernel_mix=False) == [RULE] * 5
    picks = _pick_kernels(np.random.default_rng(0), 4000, kernel_mix=True)
    assert np.mean([p == RULE for p in picks]) == pytest.approx(KERNEL_MIX_RULE_SHARE, abs=0.03)
    assert set(picks) == set(RESAMPLE_KERNELS)  # every pair is drawn, nearest-neighbour enlargement included
    x = torch.rand(1, 3, 64, 64)
    blocks = degrade(x, 4.0, ("bilinear", "nearest"))  # 16 px shown at 64: 4 x 4 blocks of one value
    assert torch.equal(blocks, blocks[..., ::4, ::4].repeat_interleave(4, -2).repeat_interleave(4, -1))


def test_kernel_mix_varies_how_eurosat_is_coarsened() -> None:
    eurosat = (np.random.default_rng(0).random((8, 64, 64, 3)) * 255).astype(np.uint8)
    scene = GeoScene("fake", torch.rand(3, 300, 300), gsd_m=1.0)
    plain, g1 = _sample_batch([scene], eurosat, 12, np.random.default_rng(3), eurosat_fraction=1.0)
    mixed, g2 = _sample_batch(
        [scene], eurosat, 12, np.random.default_rng(3), eurosat_fraction=1.0, kernel_mix=True
    )
    assert torch.equal(g1, g2)  # the same images and GSDs are drawn ...
    coarse = g1 > np.log(10.5)
    assert coarse.any() and not torch.equal(plain[coarse], mixed[coarse])  # ... coarsened with other kernels


def test_faithfulness_score_orders_perfect_shuffled() -> None:
    requested = np.array([0.5, 1, 2, 5, 10, 20, 40] * 5, dtype=float)
    perfect = gsd_faithfulness(requested.copy(), requested, real_error=0.3)
    assert perfect.generated == 0.0 and perfect.shuffled > 1.0 and perfect.real == 0.3
    off_by_two = gsd_faithfulness(requested * 2, requested)
    assert off_by_two.generated == pytest.approx(1.0)
    constant = gsd_faithfulness(np.full_like(requested, 5.0), requested)  # ignores metadata entirely
    assert constant.generated == pytest.approx(constant.shuffled)
    assert log2_errors(np.array([8.0]), np.array([2.0]))[0] == pytest.approx(2.0)
    with pytest.raises(DataError):
        gsd_faithfulness(np.array([]), np.array([]))


def test_missing_predictor_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsNotFoundError, match="train_gsd_predictor"):
        load_gsd_predictor(tmp_path)


@pytest.mark.realdata
def test_shipped_predictor_reads_blur_and_downsampling_as_coarser(datasets) -> None:
    if not (DEFAULT_GSD_PREDICTOR_DIR / "config.json").is_file():
        pytest.skip("GSD predictor not trained yet (eval/train_gsd_predictor.py)")
    from rsgen.eval.feature_net import to_nchw
    from rsgen.eval.reference_data import load_eurosat

    model = load_gsd_predictor()
    val = load_eurosat("val")
    x = to_nchw(val.images[np.random.default_rng(0).choice(len(val), 200, replace=False)])
    native = predict_gsd(model, x)
    coarse = predict_gsd(model, (degrade(x.float() / 255, 4.0) * 255).round().to(torch.uint8))
    assert np.median(native) == pytest.approx(10.0, rel=0.6)  # EuroSAT is 10 m
    assert np.median(coarse) > 1.8 * np.median(native)
    assert (coarse > native).mean() > 0.8
    rows = kernel_sensitivity(model, n=40)  # every kernel pair at 20 and 40 m, read off the same images
    assert len(rows) == 2 * len(RESAMPLE_KERNELS)
    by = {(r["gsd_m"], r["kernels"]): r["read_as_median_m"] for r in rows}
    assert all(by[(40.0, k)] > by[(20.0, k)] for _, k in by)


def test_faithfulness_per_requested_gsd_against_real_images_near_it() -> None:
    requested = np.array([10.0, 20.0, 40.0] * 6)
    predicted = requested * np.array([1.0, 1.0, 2.0] * 6)  # right at 10 and 20 m, one octave off at 40 m
    real_true = np.array([10.0, 10.5, 20.0, 19.0, 40.0, 41.0, 80.0])
    real_pred = real_true * np.array([2**0.5, 2**0.5, 1.0, 1.0, 2**0.25, 2**0.25, 1.0])
    score = gsd_faithfulness(predicted, requested, 0.2, real_pairs=(real_pred, real_true))
    rows = {row["value"]: row for row in score.by_value}
    assert sorted(rows) == [10.0, 20.0, 40.0]
    assert rows[10.0]["generated"] == 0.0 and rows[40.0]["generated"] == pytest.approx(1.0)
    assert rows[10.0]["real"] == pytest.approx(0.5) and rows[10.0]["num_real"] == 2  # 80 m is not near any
    assert rows[40.0]["real"] == pytest.approx(0.25) and rows[40.0]["num_generated"] == 6
    assert rows[20.0]["shuffled"] > rows[20.0]["generated"]
    assert rows[40.0]["median_predicted"] == pytest.approx(80.0) and rows[10.0]["median_predicted"] == 10.0


def test_ceiling_reference_is_scored_and_reported() -> None:
    """Real images through the model's VAE (the decoder's ceiling) get their own overall and per-value error."""
    from rsgen.eval.report import render_markdown

    requested = np.array([10.0, 40.0] * 4)
    real_true = np.array([10.0, 10.0, 40.0, 40.0])
    real_pred = real_true.copy()  # the predictor reads real images perfectly
    vae_pred = real_true * np.array([2.0, 2.0, 0.5, 0.5])  # the round trip is one octave off everywhere
    score = gsd_faithfulness(
        requested, requested, 0.0, real_pairs=(real_pred, real_true), ceiling_pairs=(vae_pred, real_true)
    )
    assert score.real_through_vae == pytest.approx(1.0)
    assert all(row["real_through_vae"] == pytest.approx(1.0) and row["real"] == 0.0 for row in score.by_value)
    assert gsd_faithfulness(requested, requested).real_through_vae is None
    md = render_markdown({"metadata_faithfulness": [score.to_dict()], "not_measured": [], "distribution": []})
    assert "through the model's VAE (the decoder's ceiling) | 1 |" in md
    assert "| real through the VAE |" in md and "| read as (median) |" in md
