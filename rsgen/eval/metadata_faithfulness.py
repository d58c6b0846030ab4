"""The metadata-faithfulness score shared by the GSD and year predictors.

A predictor trained on real data reads a metadata field off each generated image; its error against the value
the image was asked for is reported beside two references: the same predictor's error on real held-out images
(the best achievable) and its error against a shuffled assignment of the requested values (what a generator
that ignores the metadata gets). Good conditioning brings ``generated`` from ``shuffled`` towards ``real``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from rsgen.errors import DataError


@dataclass
class MetadataFaithfulness:
    """Mean error of predicted vs requested values for one metadata field (lower is better)."""

    field: str
    unit: str
    generated: float
    shuffled: float
    real: float | None
    num_generated: int
    median_generated: float
    # per requested value (when few distinct values were asked for, e.g. GSD 10 / 20 / 40 m): value -> errors
    # of the generated images asking for it, of the shuffled reference and of real images near that value
    by_value: list[dict] = field(default_factory=list)
    # the real held-out images after the model's VAE round trip: what a latent model can reach at best
    real_through_vae: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def metadata_faithfulness(
    predicted: np.ndarray,
    requested: np.ndarray,
    error: Callable[[np.ndarray, np.ndarray], np.ndarray],
    field: str,
    unit: str,
    real_error: float | None = None,
    seed: int = 0,
    shuffles: int = 20,
    real_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    near: Callable[[np.ndarray, float], np.ndarray] | None = None,
    max_values: int = 12,
    ceiling_pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> MetadataFaithfulness:
    """Score ``predicted`` values ``(N,)`` against ``requested`` ``(N,)`` and against shuffled requests.

    With at most ``max_values`` distinct requested values, each is also scored on its own; ``real_pairs``
    (real predicted (M,), real true (M,)) and ``near(true_values, value) -> (M,) bool`` then give the real
    error of the images whose true value is near that value. ``ceiling_pairs`` are the same for the real images
    after the model's VAE round trip (the decoder's ceiling), scored overall and per value alike."""
    predicted, requested = np.asarray(predicted, dtype=np.float64), np.asarray(requested, dtype=np.float64)
    if len(predicted) != len(requested) or len(predicted) == 0:
        raise DataError(
            f"{field} faithfulness needs matching non-empty arrays, got {len(predicted)} and {len(requested)}"
        )
    rng = np.random.default_rng(seed)
    err = error(predicted, requested)
    perms = [rng.permutation(len(requested)) for _ in range(shuffles)]
    shuffled_err = np.mean([error(predicted, requested[p]) for p in perms], axis=0)  # (N,)
    by_value = []
    values = np.unique(requested)
    if len(values) <= max_values:
        for v in values:
            sel = requested == v
            row = {
                "value": float(v),
                "num_generated": int(sel.sum()),
                # what the images asking for v read as: the same median for every v means no control at all,
                # however small the error at one value is
                "median_predicted": float(np.median(predicted[sel])),
                "generated": float(err[sel].mean()),
                "shuffled": float(shuffled_err[sel].mean()),
                "real": None,
                "real_through_vae": None,
                "num_real": 0,
            }
            for key, pairs in (("real", real_pairs), ("real_through_vae", ceiling_pairs)):
                if pairs is None or near is None:
                    continue
                pred, true = (np.asarray(a, dtype=np.float64) for a in pairs)
                close = near(true, float(v))
                if close.any():
                    row[key] = float(error(pred[close], true[close]).mean())
                    row["num_real"] = int(close.sum())
            by_value.append(row)
    return MetadataFaithfulness(
        field,
        unit,
        float(err.mean()),
        float(shuffled_err.mean()),
        real_error,
        len(err),
        float(np.median(err)),
        by_value,
        float(error(*(np.asarray(a, dtype=np.float64) for a in ceiling_pairs)).mean())
        if ceiling_pairs
        else None,
    )
