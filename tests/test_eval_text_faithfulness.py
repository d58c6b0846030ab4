"""Text faithfulness: class from labels/prompts, per-class accuracy on a constructed case."""

from __future__ import annotations

import numpy as np
import pytest

from rsgen.eval.generated_set import GeneratedSample
from rsgen.eval.reference_data import EUROSAT_CLASSES
from rsgen.eval.text_faithfulness import (
    class_from_prompt,
    normalise_label,
    requested_classes,
    text_faithfulness,
)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a satellite image of a dense forest", "Forest"),
        ("an orchard with rows of trees", "PermanentCrop"),
        ("a piece of farmland divided into plots", "AnnualCrop"),
        ("a highway interchange near fields", "Highway"),
        ("a residential area with many houses", "Residential"),
        ("a lake surrounded by trees", "SeaLake"),
        ("a river winding through the landscape", "River"),
        ("a seasonal view of nothing in particular", None),
        (None, None),
    ],
)
def test_class_from_prompt(prompt: str | None, expected: str | None) -> None:
    assert class_from_prompt(prompt) == expected


def test_normalise_label() -> None:
    assert normalise_label("sea_lake") == "SeaLake"
    assert normalise_label("Annual Crop") == "AnnualCrop"
    assert normalise_label("spaceport") is None


def test_scores_move_the_right_way() -> None:
    requested = ["Forest"] * 10 + ["River"] * 10 + [None] * 3
    f, r = EUROSAT_CLASSES.index("Forest"), EUROSAT_CLASSES.index("River")
    perfect = np.array([f] * 10 + [r] * 10 + [0] * 3)
    half = np.array([f] * 10 + [f] * 10 + [0] * 3)
    good = text_faithfulness(perfect, requested, real_accuracy=0.9)
    bad = text_faithfulness(half, requested)
    assert good.accuracy == 1.0 and bad.accuracy == 0.5
    assert bad.per_class == {"Forest": 1.0, "River": 0.0}
    assert good.num_scored == 20 and good.num_unlabelled == 3
    assert bad.confusion[r][f] == 10 and good.chance == pytest.approx(0.1)


def test_requested_classes_prefers_label() -> None:
    samples = [
        GeneratedSample(path=None, prompt="a forest", label="River"),  # type: ignore[arg-type]
        GeneratedSample(path=None, prompt="a forest"),
    ]  # type: ignore[arg-type]
    assert requested_classes(samples) == ["River", "Forest"]
