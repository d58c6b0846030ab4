"""The metadata-faithfulness score shared by the GSD and year predictors.

A predictor trained on real data reads a metadata field off each generated image; its error against the value
the image was asked for is reported beside two references: the same predictor's error on real held-out images
(the best achievable) and its error against a shuffled assignment of the requested values (what a generator
that ignores the metadata gets). Good conditioning brings ``generated`` from ``shuffled`` towards ``real``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

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
) -> MetadataFaithfulness:
    """Score ``predicted`` values ``(N,)`` against ``requested`` ``(N,)`` and against shuffled requests."""
    predicted, requested = np.asarray(predicted, dtype=np.float64), np.asarray(requested, dtype=np.float64)
    if len(predicted) != len(requested) or len(predicted) == 0:
        raise DataError(
            f"{field} faithfulness needs matching non-empty arrays, got {len(predicted)} and {len(requested)}"
        )
    rng = np.random.default_rng(seed)
    err = error(predicted, requested)
    shuffled = np.mean([error(predicted, rng.permutation(requested)).mean() for _ in range(shuffles)])
    return MetadataFaithfulness(
        field, unit, float(err.mean()), float(shuffled), real_error, len(err), float(np.median(err))
    )
