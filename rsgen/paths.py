"""Where rsgen finds its configs, shipped assets and the shared real data sets."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
ASSETS_DIR = REPO_ROOT / "assets"
DEFAULT_MODEL_DIR = ASSETS_DIR / "default-model"


def datasets_dir() -> Path:
    """The real data sets: ``$RSGEN_DATASETS`` or ``../shared/datasets`` beside the checkout."""
    return Path(os.environ.get("RSGEN_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
