"""Training: one accelerate loop for the modes vae | base | controlnet | sr, with EMA, min-SNR-gamma,
epsilon / v-prediction, offset noise, caption and metadata dropout, latent caching, LoRA, exact resume.

Names are imported on first use, so that ``rsgen --help`` does not pay for torch and diffusers."""

from __future__ import annotations

import importlib
from typing import Any

from rsgen.training.modes import MODES

_LAZY = {
    "TrainConfig": "rsgen.training.config",
    "load_train_config": "rsgen.training.config",
    "TrainResult": "rsgen.training.loop",
    "build_dataset": "rsgen.training.loop",
    "train": "rsgen.training.loop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rsgen.training' has no attribute {name!r}")


__all__ = ["MODES", *_LAZY]
