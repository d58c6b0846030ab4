"""Downstream augmentation test: does adding synthetic images help a classifier trained on few real ones?

The same small :class:`~rsgen.eval.feature_net.RSResNet` is trained on N real images per class, and on the
same N real plus M synthetic images per class, for several N and seeds, with the same number of optimisation
steps in both arms; both are tested on real EuroSAT val. Reported as mean and std of accuracy over seeds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rsgen.errors import DataError
from rsgen.eval.feature_net import ClassifierTrainConfig, accuracy, train_classifier
from rsgen.eval.reference_data import EUROSAT_CLASSES, LabelledImages, load_image_folder, per_class_subset

log = logging.getLogger(__name__)


@dataclass
class AugmentationConfig:
    """The grid of the test (``configs/eval/augmentation.yaml``)."""

    n_real_per_class: tuple[int, ...] = (10, 50, 200)
    m_synthetic_per_class: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 150  # per run, the same with and without synthetic images
    max_test_images: int | None = None
    classifier: ClassifierTrainConfig = field(
        default_factory=lambda: ClassifierTrainConfig(
            epochs=0, batch_size=64, lr=2e-3, channels=(16, 32, 64, 128), stem_channels=16
        )
    )


@dataclass
class AugmentationRow:
    n_real_per_class: int
    m_synthetic_per_class: int
    real_only: list[float]
    real_plus_synthetic: list[float]

    @property
    def gain(self) -> float:
        return float(np.mean(self.real_plus_synthetic) - np.mean(self.real_only))

    def to_dict(self) -> dict:
        d = asdict(self)
        for arm in ("real_only", "real_plus_synthetic"):
            d[f"{arm}_mean"] = float(np.mean(d[arm]))
            d[f"{arm}_std"] = float(np.std(d[arm]))
        d["gain"] = self.gain
        return d


def synthetic_from_folder(
    folder: str | Path, class_names: tuple[str, ...] = EUROSAT_CLASSES
) -> LabelledImages:
    """Labelled synthetic images: a generated set with labels/class prompts (``generated.jsonl``, sidecars,
    GeoTIFF tags) or ``folder/<Class>/*.png``. Images whose class is unknown are dropped (and counted)."""
    from rsgen.eval.generated_set import INDEX_NAMES, load_generated_set
    from rsgen.eval.text_faithfulness import requested_classes

    root = Path(folder)
    has_index = any((root / n).is_file() for n in INDEX_NAMES)
    if not has_index and root.is_dir() and any(p.is_dir() and p.name in class_names for p in root.iterdir()):
        data = load_image_folder(root, class_names)
    else:
        gen = load_generated_set(root).main()  # not the guidance / steps sweep images
        names = requested_classes(gen.samples, class_names)
        keep = [i for i, n in enumerate(names) if n is not None]
        labels = np.asarray([class_names.index(names[i]) for i in keep], dtype=np.int64)
        data = LabelledImages(gen.images[keep], labels, class_names, str(root), len(names) - len(keep))
    unknown = int((data.labels < 0).sum())
    data = data.subset(np.flatnonzero(data.labels >= 0))
    data.skipped += unknown
    if len(data) == 0:
        raise DataError(f"{root}: no synthetic images with a known class (give 'label' or class prompts)")
    return data


def augmentation_test(
    synthetic: LabelledImages,
    real_train: LabelledImages,
    test: LabelledImages,
    config: AugmentationConfig | None = None,
) -> list[AugmentationRow]:
    """Train real-only vs real+synthetic classifiers for every N and seed; accuracy on ``test``."""
    config = config or AugmentationConfig()
    k = len(real_train.class_names)
    if synthetic.class_names != real_train.class_names:
        raise DataError("synthetic and real sets must use the same class list")
    if config.max_test_images is not None and len(test) > config.max_test_images:
        test = test.subset(np.random.default_rng(0).choice(len(test), config.max_test_images, replace=False))
    rows = []
    for n in config.n_real_per_class:
        real_acc, aug_acc = [], []
        for seed in config.seeds:
            t0 = time.perf_counter()
            cfg = ClassifierTrainConfig(
                **{**asdict(config.classifier), "seed": seed, "min_steps": config.steps}
            )
            real = per_class_subset(real_train, n, seed)
            synth = per_class_subset(synthetic, config.m_synthetic_per_class, seed)
            mixed_x = np.concatenate([real.images, synth.images])
            mixed_y = np.concatenate([real.labels, synth.labels])
            model = train_classifier(real.images, real.labels, k, cfg, real_train.class_names, progress=False)
            real_acc.append(accuracy(model, test.images, test.labels))
            model = train_classifier(mixed_x, mixed_y, k, cfg, real_train.class_names, progress=False)
            aug_acc.append(accuracy(model, test.images, test.labels))
            log.info(
                "N=%d seed=%d: real %.3f, real+synthetic (%d) %.3f (%.0f s)",
                n,
                seed,
                real_acc[-1],
                len(synth),
                aug_acc[-1],
                time.perf_counter() - t0,
            )
        rows.append(AugmentationRow(n, config.m_synthetic_per_class, real_acc, aug_acc))
    return rows


def run_augmentation_test(
    synthetic_folder: str | Path, config: AugmentationConfig | None = None
) -> list[AugmentationRow]:
    """The test on EuroSAT: real train subsets vs + synthetic images from ``synthetic_folder``; EuroSAT val."""
    from rsgen.eval.reference_data import load_eurosat

    return augmentation_test(
        synthetic_from_folder(synthetic_folder), load_eurosat("train"), load_eurosat("val"), config
    )


def real_stand_in_split(train: LabelledImages, seed: int = 0) -> tuple[LabelledImages, LabelledImages]:
    """Disjoint halves of a real training set: (real pool, stand-in for synthetic images). Real images in the
    synthetic arm give the upper bound of what perfect synthetic data could add (a check of the test itself)."""
    perm = np.random.default_rng(seed).permutation(len(train))
    mid = len(train) // 2
    return train.subset(np.sort(perm[:mid])), train.subset(np.sort(perm[mid:]))


def augmentation_markdown(rows: list[AugmentationRow], test_name: str = "EuroSAT-RGB val") -> str:
    lines = [
        f"Classifier accuracy on {test_name} (mean +- std over seeds; same steps in both arms)",
        "",
        "| N real / class | M synthetic / class | real only | real + synthetic | gain |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        d = r.to_dict()
        lines.append(
            f"| {r.n_real_per_class} | {r.m_synthetic_per_class} | {d['real_only_mean']:.3f} +- "
            f"{d['real_only_std']:.3f} | {d['real_plus_synthetic_mean']:.3f} +- {d['real_plus_synthetic_std']:.3f}"
            f" | {d['gain']:+.3f} |"
        )
    return "\n".join(lines)
