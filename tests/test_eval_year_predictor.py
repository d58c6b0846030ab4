"""Year predictor: sampling from dated scenes, the faithfulness score, and the shipped predictor on real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_fakes import one_thread  # noqa: F401

from rsgen.eval.gsd_predictor import GeoScene
from rsgen.eval.year_predictor import (
    DEFAULT_YEAR_PREDICTOR_DIR,
    DatedScene,
    load_year_predictor,
    predict_year,
    real_heldout_set,
    sample_dated_batch,
    year_faithfulness,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sample_dated_batch() -> None:
    scenes = [
        DatedScene(GeoScene("a", torch.rand(3, 100, 150), 5.0), 2010),
        DatedScene(GeoScene("b", torch.rand(3, 80, 90), 90.0), 1990),
    ]
    x, years = sample_dated_batch(scenes, 12, np.random.default_rng(0))
    assert x.shape == (12, 3, 64, 64) and x.dtype == torch.uint8
    assert set(years.tolist()) <= {2010.0, 1990.0}


def test_year_faithfulness_orders() -> None:
    requested = np.array([1985, 1995, 2005, 2015] * 5, dtype=float)
    exact = year_faithfulness(requested + 1, requested, real_error=2.0)
    assert exact.generated == pytest.approx(1.0) and exact.shuffled > 5 and exact.unit == "years"


@pytest.mark.realdata
@pytest.mark.slow
def test_shipped_year_predictor_beats_shuffled_on_heldout(datasets) -> None:
    if not (DEFAULT_YEAR_PREDICTOR_DIR / "config.json").is_file():
        pytest.skip("year predictor not trained yet (eval/train_year_predictor.py)")
    model = load_year_predictor()
    images, years = real_heldout_set(200)
    score = year_faithfulness(predict_year(model, images), years)
    assert score.generated < 0.7 * score.shuffled
