"""Acquisition-year predictor: reads the year off an image to score date faithfulness of generated images.

Trained on the real time series, the same places changing: NAIP (North Dakota, 2009-2019, natural colour, 5 m,
windows resampled to 5-20 m) and Landsat (Pucallpa, 1985-2015, false colour SWIR1/NIR/Red, ~90 m). Each tile
is split in space: windows from its left 70 % train, from its right 30 % form the real held-out set, so the
real error is measured on ground the predictor never saw. What it can learn is limited to these two places and
to what changes between their acquisitions (land cover, sensor and processing); read its error with that in
mind, always next to the real and shuffled references.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rsgen.errors import DataError, WeightsNotFoundError
from rsgen.eval.feature_net import RSResNet, fine_tune_regressor, predict_scalar, save_trained_model
from rsgen.eval.gsd_predictor import GeoScene, load_scene, resample_window
from rsgen.eval.metadata_faithfulness import MetadataFaithfulness, metadata_faithfulness
from rsgen.paths import ASSETS_DIR, datasets_dir
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

DEFAULT_YEAR_PREDICTOR_DIR = ASSETS_DIR / "eval" / "year-predictor"
YEAR_CENTRE, YEAR_SCALE = 2000.0, 10.0  # target = (year - 2000) / 10
TRAIN_FRACTION = 0.7


@dataclass
class DatedScene:
    scene: GeoScene
    year: int


def load_dated_scenes(part: str) -> list[DatedScene]:
    """The NAIP and Landsat tiles cut to their ``train`` (left 70 %) or ``heldout`` (right 30 %) part."""
    from rsgen.metadata import read_geotiff_metadata

    if part not in ("train", "heldout"):
        raise ValueError(f"part {part!r}: expected 'train' or 'heldout'")
    root = datasets_dir()
    paths = sorted((root / "naip-timeseries").glob("*.tif")) + sorted(
        (root / "landsat-timeseries").glob("*.tif")
    )
    if not paths:
        raise DataError(f"no NAIP or Landsat time series found under {root}")
    out = []
    for p in paths:
        meta = read_geotiff_metadata(p)[0]
        if meta.date is None:
            continue
        scene = load_scene(p)
        w = scene.pixels.shape[-1]
        cut = int(w * TRAIN_FRACTION)
        pixels = scene.pixels[..., :cut] if part == "train" else scene.pixels[..., cut:]
        out.append(DatedScene(GeoScene(scene.name, pixels, scene.gsd_m), meta.date.year))
    return out


def sample_dated_batch(
    scenes: list[DatedScene], n: int, rng: np.random.Generator, size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows ``(n, 3, S, S)`` uint8 (GSD up to 4x native, within the part's width) and their years."""
    images, years = [], []
    for _ in range(n):
        d = scenes[rng.integers(len(scenes))]
        _, h, w = d.scene.pixels.shape
        max_factor = max(1.0, min(4.0, min(h, w) / size))
        factor = float(np.exp(rng.uniform(0, np.log(max_factor))))
        images.append(resample_window(d.scene, d.scene.gsd_m * factor, size, rng))
        years.append(d.year)
    x = (torch.stack(images) * 255).round().to(torch.uint8)
    return x, torch.tensor(years, dtype=torch.float32)


def year_errors(predicted: np.ndarray, requested: np.ndarray) -> np.ndarray:
    return np.abs(predicted - requested)


def predict_year(model: RSResNet, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Predicted acquisition year ``(N,)`` (fractional) of uint8 images."""
    return predict_scalar(model, images) * YEAR_SCALE + YEAR_CENTRE


def load_year_predictor(path: str | Path | None = None) -> RSResNet:
    path = Path(path) if path is not None else DEFAULT_YEAR_PREDICTOR_DIR
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"year predictor not found at {path} (train one with eval/train_year_predictor.py)"
        )
    return RSResNet.from_pretrained(path, use_safetensors=use_safetensors(), local_files_only=True).eval()


def real_heldout_set(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Held-out real windows ``(n, S, S, 3)`` uint8 (right 30 % of every tile) and their years ``(n,)``."""
    x, years = sample_dated_batch(load_dated_scenes("heldout"), n, np.random.default_rng(seed))
    return x.permute(0, 2, 3, 1).numpy(), years.numpy().astype(np.float64)


@dataclass
class YearTrainConfig:
    """Fine-tuning of the year predictor (``configs/eval/year_predictor.yaml``)."""

    out_dir: str = str(DEFAULT_YEAR_PREDICTOR_DIR)
    init_from: str | None = None
    steps: int = 120
    batch_size: int = 96
    lr: float = 1e-3
    seed: int = 0
    num_threads: int = 0
    eval_images: int = 600


def train(config: YearTrainConfig | None = None) -> dict:
    """Fine-tune the year predictor from the RS feature network; save it with its held-out error."""
    config = config or YearTrainConfig()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    scenes = load_dated_scenes("train")

    def batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, years = sample_dated_batch(scenes, n, rng)
        return x, (years - YEAR_CENTRE) / YEAR_SCALE

    t0 = time.perf_counter()
    model = fine_tune_regressor(
        batch, "year", 0.0, config.steps, config.batch_size, config.lr, config.seed, config.init_from
    )
    train_s = time.perf_counter() - t0
    images, years = real_heldout_set(config.eval_images)
    pred = predict_year(model, images)
    err = year_errors(pred, years)
    shuffled = metadata_faithfulness(pred, years, year_errors, "year", "years").shuffled
    summary = {
        "heldout_mean_abs_error_years": float(err.mean()),
        "heldout_shuffled_mean_abs_error_years": shuffled,
        "heldout_images": len(images),
        "heldout": "right 30 % of every NAIP (2009-2019) and Landsat (1985-2015) tile",
        "train_seconds": round(train_s, 1),
        "config": asdict(config),
    }
    save_trained_model(model, config.out_dir, summary)
    log.info("year predictor: held-out mean |error| %.2f years (shuffled %.2f)", err.mean(), shuffled)
    return summary


def year_faithfulness(
    predicted: np.ndarray,
    requested: np.ndarray,
    real_error: float | None = None,
    seed: int = 0,
    real_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ceiling_pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> MetadataFaithfulness:
    """Mean |predicted - requested year| of generated images, with shuffled-metadata and real references; per
    requested year, the real reference is the real images of that year."""
    return metadata_faithfulness(
        predicted,
        requested,
        year_errors,
        "year",
        "years",
        real_error,
        seed,
        real_pairs=real_pairs,
        ceiling_pairs=ceiling_pairs,
        near=lambda true_year, v: np.abs(true_year - v) < 0.5,
    )
