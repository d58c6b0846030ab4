"""Downstream augmentation test on a tiny case (two colour-coded classes)."""

from __future__ import annotations

import numpy as np
import pytest
from eval_fakes import one_thread, smooth_images  # noqa: F401

from rsgen.errors import DataError
from rsgen.eval.augmentation import (
    AugmentationConfig,
    augmentation_markdown,
    augmentation_test,
    synthetic_from_folder,
)
from rsgen.eval.feature_net import ClassifierTrainConfig
from rsgen.eval.generated_set import write_generated_set
from rsgen.eval.reference_data import LabelledImages

CLASSES = ("Forest", "SeaLake")

pytestmark = pytest.mark.usefixtures("one_thread")


def _labelled(n: int, seed: int) -> LabelledImages:
    x = np.concatenate(
        [smooth_images(n, seed, tint=(0.2, 0.5, 0.2)), smooth_images(n, seed + 50, tint=(0.1, 0.2, 0.6))]
    )
    return LabelledImages(x, np.repeat([0, 1], n), CLASSES, "fake")


def test_synthetic_from_generated_folder(tmp_path) -> None:
    x = _labelled(3, seed=1).images
    records = (
        [{"prompt": "a dense forest"}] * 3 + [{"prompt": "x", "label": "sea_lake"}] * 2 + [{"prompt": "?"}]
    )
    write_generated_set(tmp_path / "gen", x, records)
    data = synthetic_from_folder(tmp_path / "gen", CLASSES)
    assert list(data.labels) == [0, 0, 0, 1, 1] and data.skipped == 1
    write_generated_set(tmp_path / "none", x[:1], [{"prompt": "no class here"}])
    with pytest.raises(DataError, match="known class"):
        synthetic_from_folder(tmp_path / "none", CLASSES)


def test_augmentation_test_tiny_case() -> None:
    real, synth, test = _labelled(20, 0), _labelled(20, 10), _labelled(15, 20)
    cfg = AugmentationConfig(
        n_real_per_class=(2, 5),
        m_synthetic_per_class=10,
        seeds=(0, 1),
        steps=8,
        classifier=ClassifierTrainConfig(epochs=0, batch_size=16, channels=(8, 16), stem_channels=8),
    )
    rows = augmentation_test(synth, real, test, cfg)
    assert [r.n_real_per_class for r in rows] == [2, 5]
    for r in rows:
        assert len(r.real_only) == len(r.real_plus_synthetic) == 2
        assert all(0.0 <= a <= 1.0 for a in r.real_only + r.real_plus_synthetic)
        d = r.to_dict()
        assert d["gain"] == pytest.approx(d["real_plus_synthetic_mean"] - d["real_only_mean"])
    assert "| 5 | 10 |" in augmentation_markdown(rows)
