"""GSD predictor: estimates the ground sample distance of an image (log scale) to score metadata faithfulness.

Trained on real imagery resampled to known GSDs:

* NAIP tiles (5 m): windows of ``64 * f`` pixels resized to 64 -> true GSD ``5 f`` m (5-55 m), the same scene
  at a coarser resolution; six years train, two years (2018, 2019) are held out;
* high-resolution aerial scenes (0.1-1 m): windows resized the same way -> 0.1-4.7 m;
* EuroSAT (10 m): coarsened by ``f`` and shown at 64 again -> effective resolution ``10 f`` m (10-40 m).

Every resampling here is the training data's own rule (:mod:`rsgen.data.resampling`), so the real references at
20 m are the same kind of pixels as the curated 20 m copies a model learns from; training also mixes in other
kernels (:data:`RESAMPLE_KERNELS`, nearest-neighbour enlargement included).

So "GSD" here is the effective resolution of a 64x64 image: object scale and blur both move it. The network
is an :class:`~rsgen.eval.feature_net.RSResNet` with one output (``log GSD``), initialised from the RS feature
network and fine-tuned. The faithfulness score compares predictions on generated images with the GSD they were
asked for, beside the same error on real held-out images (the best achievable) and on generated images with
shuffled metadata (what no control at all gives).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rsgen.data.resampling import coarsen_shown, show_at
from rsgen.errors import DataError, WeightsNotFoundError
from rsgen.eval.feature_net import RSResNet, fine_tune_regressor, predict_scalar, save_trained_model, to_nchw
from rsgen.eval.metadata_faithfulness import MetadataFaithfulness, metadata_faithfulness
from rsgen.paths import ASSETS_DIR, datasets_dir
from rsgen.safety import use_safetensors

log = logging.getLogger(__name__)

DEFAULT_GSD_PREDICTOR_DIR = ASSETS_DIR / "eval" / "gsd-predictor"
HELD_OUT_NAIP_YEARS = ("2018", "2019")
HIGHRES_RGB = (  # file, 1-based bands for R, G, B
    ("2018_SJER_3_252000_4107000_image_477.tif", (1, 2, 3)),
    ("5b90f92da0d7280005fab355_4310.tif", (1, 2, 3)),
    ("5dded5bc0140b80006d2e565_23.tif", (1, 2, 3)),
    ("OSBS_029.tif", (1, 2, 3)),
    ("test_tiled.tif", (1, 2, 3)),
    ("spacenet6_rotterdam_ms1.tif", (3, 2, 1)),
    ("spacenet6_rotterdam_ms2.tif", (3, 2, 1)),
    ("spacenet6_rotterdam_ms3.tif", (3, 2, 1)),
)


@dataclass
class GeoScene:
    """A real scene: pixels ``(3, H, W)`` float 0-1 and its true GSD in metres."""

    name: str
    pixels: torch.Tensor
    gsd_m: float


def _stretch_to_unit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    lo, hi = np.percentile(array, (1, 99))
    return np.clip((array.astype(np.float32) - lo) / max(float(hi - lo), 1e-6), 0, 1)


def load_scene(path: Path, bands: tuple[int, int, int] = (1, 2, 3)) -> GeoScene:
    """A GeoTIFF's RGB bands with the GSD in metres its georeference gives (Mercator scale corrected)."""
    from rsgen.io import read_geotiff
    from rsgen.metadata import read_geotiff_metadata

    raster = read_geotiff(path)
    gsd = read_geotiff_metadata(path)[0].gsd_m
    if gsd is None:
        raise DataError(f"{path}: no GSD in its georeference")
    rgb = _stretch_to_unit(raster.array[[b - 1 for b in bands]])  # (3, H, W)
    return GeoScene(path.name, torch.from_numpy(rgb), float(gsd))


def load_gsd_scenes(held_out: bool = False) -> list[GeoScene]:
    """NAIP tiles (training years, or the held-out years) plus, for training, the high-resolution scenes."""
    root = datasets_dir()
    naip = sorted((root / "naip-timeseries").glob("*.tif"))
    if not naip:
        raise DataError(f"NAIP tiles not found in {root / 'naip-timeseries'}")
    scenes = [load_scene(p) for p in naip if (p.stem[-8:-4] in HELD_OUT_NAIP_YEARS) == held_out]
    if not held_out:
        for name, bands in HIGHRES_RGB:
            p = root / "highres-aerial" / name
            if p.is_file():
                scenes.append(load_scene(p, bands))
    return scenes


def resample_window(scene: GeoScene, target_gsd: float, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random window of ``scene`` shown at ``size`` px, i.e. at ``target_gsd``, with the shared rule
    (:func:`rsgen.data.resampling.show_at`), as the training dataset shows a curated window. -> (3, S, S) float
    0-1."""
    _, h, w = scene.pixels.shape
    win = int(round(size * target_gsd / scene.gsd_m))
    win = max(size // 4, min(win, h, w))
    for _ in range(20):  # avoid windows over the tile's nodata border (all-zero pixels)
        r, c = rng.integers(0, h - win + 1), rng.integers(0, w - win + 1)
        crop = scene.pixels[:, r : r + win, c : c + win]  # (3, win, win)
        if (crop.amax(dim=0) == 0).float().mean() < 0.01:
            break
    hwc = (crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (win, win, 3)
    return torch.from_numpy(show_at(hwc, size, size).copy()).permute(2, 0, 1).float() / 255.0


# How an image is coarsened and shown again at its size: (down, up). RULE is rsgen.data.resampling, what curation
# and the training dataset do (triangle-filter coarsening, bicubic enlargement); the other pairs are modes of
# F.interpolate ("bilinear" down is antialiased, "area" is a box average). kernel_mix trains on all of them so that
# GSD is read from scene scale more than from a kernel's signature.
RULE = ("rule", "rule")
RESAMPLE_KERNELS = (
    RULE,
    ("bilinear", "bilinear"),
    ("area", "bicubic"),  # box down, bicubic up: curation's rule before 2026-11-26 (aliased: reads too fine)
    ("area", "bilinear"),
    ("bilinear", "bicubic"),
    # nearest-neighbour enlargement: pixel blocks, as naive upsampling and GIS viewers show coarse images
    ("bilinear", "nearest"),
    ("area", "nearest"),
)
KERNEL_MIX_RULE_SHARE = 0.4  # with kernel_mix, this share of coarsened images uses RULE, the rest the others


def degrade(images: torch.Tensor, factor: float, kernels: tuple[str, str] = RULE) -> torch.Tensor:
    """Coarsen ``(B, 3, S, S)`` float 0-1 images by ``factor`` and show them at S again (``kernels``: a pair of
    :data:`RESAMPLE_KERNELS`; default the shared rule): effective GSD x ``factor``."""
    if kernels == RULE:
        hwc = (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()  # (B, S, S, 3)
        out = np.stack([coarsen_shown(im, factor) for im in hwc])  # (B, S, S, 3)
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device, images.dtype) / 255.0
    s = images.shape[-1]
    small = max(4, int(round(s / factor)))
    down_mode, up_mode = kernels

    def options(mode: str, antialias: bool) -> dict:
        if mode in ("bilinear", "bicubic"):
            return {"align_corners": False, **({"antialias": True} if antialias else {})}
        return {}

    down = F.interpolate(images, size=(small, small), mode=down_mode, **options(down_mode, True))
    return F.interpolate(down, size=(s, s), mode=up_mode, **options(up_mode, False)).clamp(0, 1)


def _pick_kernels(rng: np.random.Generator, n: int, kernel_mix: bool) -> list[tuple[str, str]]:
    """``n`` kernel pairs: RULE, or with ``kernel_mix`` RULE for :data:`KERNEL_MIX_RULE_SHARE` of them and the
    other pairs uniformly."""
    if not kernel_mix:
        return [RULE] * n
    others = [k for k in RESAMPLE_KERNELS if k != RULE]
    use_rule = rng.random(n) < KERNEL_MIX_RULE_SHARE
    picks = rng.integers(len(others), size=n)
    return [RULE if r else others[k] for r, k in zip(use_rule, picks, strict=True)]


def _sample_batch(
    scenes: list[GeoScene],
    eurosat: np.ndarray,
    n: int,
    rng: np.random.Generator,
    size: int = 64,
    eurosat_fraction: float = 0.4,
    naip_fraction: float = 0.35,
    kernel_mix: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` real images ``(n, 3, S, S)`` uint8 at known GSDs and their ``log(GSD)`` ``(n,)``. EuroSAT images are
    coarsened with the shared rule, or with ``kernel_mix`` with kernels drawn by :func:`_pick_kernels`; NAIP and
    aerial windows are shown at S with the shared rule (:func:`resample_window`)."""
    naip = [s for s in scenes if s.gsd_m >= 4]
    fine = [s for s in scenes if s.gsd_m < 4] or naip
    images, gsds = [], []
    n_eu = int(n * eurosat_fraction)
    n_naip = int(n * naip_fraction)
    if n_eu:
        idx = rng.choice(len(eurosat), n_eu)
        x = to_nchw(eurosat[idx]).float() / 255.0
        # a third at the native 10 m (what most generated EuroSAT-like images ask for), the rest 10-40 m
        factors = np.where(rng.random(n_eu) < 1 / 3, 1.0, np.exp(rng.uniform(0, math.log(4.0), n_eu)))
        kernels = _pick_kernels(rng, n_eu, kernel_mix)
        for i, f in enumerate(factors):
            images.append(degrade(x[i : i + 1], f, kernels[i])[0] if f > 1.05 else x[i])
            gsds.append(10.0 * (f if f > 1.05 else 1.0))
    for k in range(n - n_eu):
        scene = naip[rng.integers(len(naip))] if k < n_naip else fine[rng.integers(len(fine))]
        _, h, w = scene.pixels.shape
        max_gsd = scene.gsd_m * min(h, w) / size
        gsd = float(np.exp(rng.uniform(math.log(scene.gsd_m), math.log(max_gsd))))
        images.append(resample_window(scene, gsd, size, rng))
        gsds.append(gsd)
    x = (torch.stack(images) * 255).round().to(torch.uint8)  # (n, 3, S, S)
    return x, torch.log(torch.tensor(gsds, dtype=torch.float32))


@dataclass
class GSDTrainConfig:
    """Fine-tuning of the GSD predictor (``configs/eval/gsd_predictor.yaml``)."""

    out_dir: str = str(DEFAULT_GSD_PREDICTOR_DIR)
    init_from: str | None = None  # feature network folder; None = the shipped one
    steps: int = 150
    batch_size: int = 96
    lr: float = 1e-3
    seed: int = 0
    num_threads: int = 2
    eval_images: int = 600
    # coarsen EuroSAT with mixed resampling kernels (RESAMPLE_KERNELS, the shared rule for 40 %); False = the shared
    # rule only (rsgen.data.resampling)
    kernel_mix: bool = False


def load_gsd_predictor(path: str | Path | None = None) -> RSResNet:
    path = Path(path) if path is not None else DEFAULT_GSD_PREDICTOR_DIR
    if not (path / "config.json").is_file():
        raise WeightsNotFoundError(
            f"GSD predictor not found at {path} (train one with eval/train_gsd_predictor.py)"
        )
    return RSResNet.from_pretrained(path, use_safetensors=use_safetensors(), local_files_only=True).eval()


def predict_gsd(model: RSResNet, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Predicted GSD in metres ``(N,)`` of ``(N, H, W, 3)`` uint8 numpy or ``(N, 3, H, W)`` uint8 tensors."""
    return np.exp(predict_scalar(model, images))


def log2_errors(predicted_m: np.ndarray, requested_m: np.ndarray) -> np.ndarray:
    """Absolute error in octaves: 1.0 = off by a factor of 2."""
    return np.abs(np.log2(predicted_m) - np.log2(requested_m))


def real_heldout_set(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Held-out real images ``(n, S, S, 3)`` uint8 at known GSDs ``(n,)``: EuroSAT val (native and
    coarsened) and the held-out NAIP years."""
    from rsgen.eval.reference_data import load_eurosat

    rng = np.random.default_rng(seed)
    scenes = load_gsd_scenes(held_out=True)
    x, log_gsd = _sample_batch(
        scenes, load_eurosat("val").images, n, rng, eurosat_fraction=0.5, naip_fraction=0.5
    )
    return x.permute(0, 2, 3, 1).numpy(), log_gsd.exp().numpy().astype(np.float64)


def kernel_sensitivity(model: RSResNet, n: int = 200, factors: tuple[float, ...] = (2.0, 4.0)) -> list[dict]:
    """How much the predictor's reading depends on the resampling kernel: EuroSAT val images (10 m) coarsened by
    each factor with each of :data:`RESAMPLE_KERNELS`; the median GSD read and the mean |log2 error| per pair."""
    from rsgen.eval.feature_net import to_nchw
    from rsgen.eval.reference_data import load_eurosat

    val = load_eurosat("val").images
    x = to_nchw(val[:: max(1, len(val) // n)][:n]).float() / 255.0  # (n, 3, S, S)
    rows = []
    for f in factors:
        for kernels in RESAMPLE_KERNELS:
            img = (degrade(x, f, kernels) * 255).round().to(torch.uint8)  # (n, 3, S, S)
            pred = predict_gsd(model, img)
            rows.append(
                {
                    "gsd_m": 10.0 * f,
                    "kernels": "+".join(kernels),
                    "read_as_median_m": float(np.median(pred)),
                    "mean_abs_log2_error": float(log2_errors(pred, np.full(len(pred), 10.0 * f)).mean()),
                }
            )
    return rows


def train(config: GSDTrainConfig | None = None) -> dict:
    """Fine-tune the GSD predictor from the RS feature network; save it with its held-out error."""
    from rsgen.eval.reference_data import load_eurosat

    config = config or GSDTrainConfig()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    scenes, eurosat = load_gsd_scenes(held_out=False), load_eurosat("train").images
    t0 = time.perf_counter()
    model = fine_tune_regressor(
        lambda rng, n: _sample_batch(scenes, eurosat, n, rng, kernel_mix=config.kernel_mix),
        "log_gsd_m",
        math.log(10.0),
        config.steps,
        config.batch_size,
        config.lr,
        config.seed,
        config.init_from,
    )
    train_s = time.perf_counter() - t0
    images, gsd = real_heldout_set(config.eval_images)
    err = log2_errors(predict_gsd(model, images), gsd)
    summary = {
        "heldout_mean_abs_log2_error": float(err.mean()),
        "heldout_median_abs_log2_error": float(np.median(err)),
        "heldout_images": len(images),
        "heldout": "EuroSAT-RGB val (10-40 m) and NAIP 2018/2019 (5-55 m)",
        "train_seconds": round(train_s, 1),
        "train_data": "NAIP 2009-2017 windows, high-resolution aerial scenes, EuroSAT-RGB train (coarsened)",
        "kernel_sensitivity": kernel_sensitivity(model),
        "config": asdict(config),
    }
    save_trained_model(model, config.out_dir, summary)
    log.info("GSD predictor: held-out mean |log2 error| %.3f after %.0f s", err.mean(), train_s)
    return summary


def near_gsd(true_m: np.ndarray, value_m: float) -> np.ndarray:
    """Which real images ``(M,)`` count as "at" a GSD of ``value_m``: those within a quarter octave of it."""
    return np.abs(np.log2(np.asarray(true_m) / value_m)) <= 0.25


def gsd_faithfulness(
    predicted_m: np.ndarray,
    requested_m: np.ndarray,
    real_error: float | None = None,
    seed: int = 0,
    real_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    ceiling_pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> MetadataFaithfulness:
    """Mean |log2(predicted / requested GSD)| of generated images, shuffled-metadata and real references; per
    requested GSD, the real reference is the real images within a quarter octave of it."""
    return metadata_faithfulness(
        predicted_m,
        requested_m,
        log2_errors,
        "gsd_m",
        "octaves",
        real_error,
        seed,
        real_pairs=real_pairs,
        ceiling_pairs=ceiling_pairs,
        near=near_gsd,
    )
