"""Text faithfulness: does an image generated from a class prompt show that class?

A judge classifies every generated image whose class is known (from the sample's ``label``, or a class named in
its prompt); the score is its accuracy, overall and per class, next to the same judge's accuracy on real held-out
images (the best achievable) and chance. The headline judges are the class judges
(:mod:`rsgen.eval.class_judges`); the project's EuroSAT feature networks give second opinions through
:class:`NetworkJudge`. Anything with ``classes``, ``description``, ``real_accuracy`` and ``predict_hwc`` is a judge.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from rsgen.eval.reference_data import EUROSAT_CLASSES

# Words that name a EuroSAT class in a prompt; the first matching class wins (more specific ones first).
PROMPT_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PermanentCrop", ("permanent crop", "orchard", "vineyard", "olive grove", "plantation")),
    (
        "AnnualCrop",
        ("annual crop", "farmland", "cropland", "crop field", "arable", "cultivated field", "farming"),
    ),
    ("HerbaceousVegetation", ("herbaceous", "meadow", "grassland", "scrub", "shrub", "natural vegetation")),
    ("Pasture", ("pasture", "grazing", "paddock")),
    ("Highway", ("highway", "motorway", "freeway", "interchange", "road")),
    ("Industrial", ("industrial", "factory", "factories", "warehouse", "industry")),
    ("Residential", ("residential", "houses", "housing", "neighbourhood", "neighborhood", "suburb")),
    ("River", ("river", "stream", "canal")),
    ("SeaLake", ("sea", "lake", "ocean", "coast", "open water", "reservoir")),
    ("Forest", ("forest", "woodland", "trees", "wood")),
)


def label_key(label: str) -> str:
    """A label without spaces, underscores, hyphens or case (``Sea Lake``, ``sea_lake`` -> ``sealake``)."""
    return re.sub(r"[\s_\-]", "", label).lower()


def normalise_label(label: str | None, class_names: tuple[str, ...] = EUROSAT_CLASSES) -> str | None:
    """A class name for a label given in any spelling (``sea_lake``, ``Sea Lake``, aliases of the caption
    vocabulary); None when it is not one of ``class_names``."""
    if not label:
        return None
    key = label_key(label)
    for name in class_names:
        if label_key(name) == key:
            return name
    from rsgen.data.captions import default_vocabulary

    # the vocabulary ships with rsgen (assets/captions): a missing or broken one is a DataError, not "no class"
    name = default_vocabulary().aliases.get(key)
    return name if name in class_names else None


def class_from_prompt(prompt: str | None, class_names: tuple[str, ...] = EUROSAT_CLASSES) -> str | None:
    """The class a prompt names, by keyword (None when no keyword or only unknown classes match)."""
    if not prompt:
        return None
    text = " " + re.sub(r"[^a-z]+", " ", prompt.lower()) + " "
    for name, words in PROMPT_KEYWORDS:
        if name in class_names and any(f" {w} " in text or f" {w}s " in text for w in words):
            return name
    return None


@dataclass
class TextFaithfulness:
    """Classifier accuracy on generated images, overall and per class, with the confusion matrix."""

    accuracy: float
    per_class: dict[str, float]
    count_per_class: dict[str, int]
    confusion: list[list[int]]  # [true class][predicted class]
    class_names: tuple[str, ...]
    num_scored: int
    num_unlabelled: int
    real_accuracy: float | None
    chance: float

    def to_dict(self) -> dict:
        return asdict(self)


def text_faithfulness(
    predicted: np.ndarray,
    requested: list[str | None],
    class_names: tuple[str, ...] = EUROSAT_CLASSES,
    real_accuracy: float | None = None,
) -> TextFaithfulness:
    """Score predicted class indexes ``(N,)`` against the requested class names (None = unknown, not scored)."""
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    unlabelled = 0
    for pred, name in zip(predicted, requested, strict=True):
        if name is None or name not in class_names:
            unlabelled += 1
            continue
        confusion[class_names.index(name), int(pred)] += 1
    counts = confusion.sum(1)
    per_class = {n: float(confusion[i, i] / counts[i]) for i, n in enumerate(class_names) if counts[i]}
    total = int(counts.sum())
    acc = float(np.trace(confusion) / total) if total else float("nan")
    return TextFaithfulness(
        accuracy=acc,
        per_class=per_class,
        count_per_class={n: int(counts[i]) for i, n in enumerate(class_names) if counts[i]},
        confusion=confusion.tolist(),
        class_names=tuple(class_names),
        num_scored=total,
        num_unlabelled=unlabelled,
        real_accuracy=real_accuracy,
        chance=1.0 / k,
    )


def requested_classes(samples: list, class_names: tuple[str, ...] = EUROSAT_CLASSES) -> list[str | None]:
    """The class each generated sample was asked for: its ``label``, else a class named in its prompt."""
    out = []
    for s in samples:
        name = normalise_label(s.label, class_names) if s.label else None
        out.append(name or class_from_prompt(s.prompt, class_names))
    return out


class Judge(Protocol):
    """A classifier whose verdict a report shows beside its own accuracy on real held-out images."""

    description: str
    real_accuracy: float | None

    @property
    def classes(self) -> tuple[str, ...]: ...

    def predict_hwc(self, images: np.ndarray) -> np.ndarray:  # (N, H, W, 3) uint8 -> (N,) class indices
        ...


@dataclass
class NetworkJudge:
    """A classifier of the feature-network family (``RSResNet``) as a judge: the second opinions."""

    net: Any
    description: str
    real_accuracy: float | None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.net.config.class_names)

    def predict_hwc(self, images: np.ndarray) -> np.ndarray:
        from rsgen.eval.feature_net import predict_logits

        return predict_logits(self.net, images).argmax(1).numpy()


def judged_faithfulness(judge: Judge, images: np.ndarray, labels: list[str | None]) -> TextFaithfulness:
    """Score ``images`` ``(N, H, W, 3)`` against the classes asked for (any spelling; labels outside the judge's
    classes are not scored) with ``judge``."""
    requested = [normalise_label(label, judge.classes) for label in labels]
    known = [i for i, r in enumerate(requested) if r is not None]
    predicted = np.zeros(len(requested), dtype=np.int64)
    if known:
        predicted[known] = judge.predict_hwc(images[known])
    return text_faithfulness(predicted, requested, judge.classes, judge.real_accuracy)
