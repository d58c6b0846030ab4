"""Quality of a super-resolution stage on real images it never saw: each high-res image is area-downsampled by the
stage's factor (the degradation it was trained on), upscaled back by the stage and by bicubic interpolation, and
both are compared with the original.

* **PSNR / SSIM** (higher is better): pixel fidelity. A diffusion upscaler draws plausible detail rather than the
  mean, so it usually scores *below* bicubic here; that is expected and reported, not hidden.
* **Spectral distance** (lower is better): mean L1 between the log amplitude spectra of output and original
  (:func:`rsgen.models.vae.log_amplitude_spectrum`). Phase-free, so it measures whether the output has the
  original's grain and contrast of fine texture wherever it sits; bicubic, too smooth, scores high.
* **Class accuracy** of the RS classifier on the outputs beside the originals: does the upscaled scene still
  read as the same land cover?
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from rsgen.errors import DataError

# (B, 3, h, w) low-res in [0, 1], prompts, first seed -> (B, 3, h f, w f) in [0, 1]
Upscaler = Callable[[torch.Tensor, Sequence[str], int], torch.Tensor]


@dataclass
class UpscaleScores:
    """Scores of one upscaling method against the originals."""

    psnr_db: float
    ssim: float
    spectral_distance: float
    class_accuracy: float | None = None


METHODS = {  # key -> what the report calls it
    "stage": "super-resolution stage",
    "stage_color_fix": "stage + colour fix (low frequencies from the input)",
    "bicubic": "bicubic",
}


@dataclass
class SuperResolutionQuality:
    """Each method of :data:`METHODS` on ``num_images`` originals of ``size`` px upscaled ``factor`` times."""

    num_images: int
    factor: int
    size: int
    scores: dict[str, UpscaleScores]
    class_accuracy_real: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def to_unit_nchw(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    from rsgen.eval.feature_net import to_nchw

    return to_nchw(images).float() / 255.0


def score_upscaled(
    real: torch.Tensor, upscaled: torch.Tensor, classify: Callable[[torch.Tensor], float] | None = None
) -> UpscaleScores:
    """Compare ``upscaled`` (N, 3, H, W) in [0, 1] with ``real`` (N, 3, H, W) in [0, 1]."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from rsgen.models.vae import log_amplitude_spectrum

    if real.shape != upscaled.shape:
        raise DataError(
            f"upscaled images {tuple(upscaled.shape)} do not match the originals {tuple(real.shape)}"
        )
    upscaled = upscaled.clamp(0, 1)
    psnr = peak_signal_noise_ratio(upscaled, real, data_range=1.0, reduction="none", dim=(1, 2, 3))  # (N,)
    psnr = psnr.clamp(max=100.0)  # identical images: infinite PSNR, shown as 100 dB
    ssim = structural_similarity_index_measure(upscaled, real, data_range=1.0)
    spectral = F.l1_loss(log_amplitude_spectrum(upscaled * 2 - 1), log_amplitude_spectrum(real * 2 - 1))
    return UpscaleScores(
        float(psnr.mean()), float(ssim), float(spectral), classify(upscaled) if classify else None
    )


def bicubic_upscale(low: torch.Tensor, factor: int) -> torch.Tensor:
    """The reference upscaler: bicubic interpolation (B, 3, h, w) -> (B, 3, h f, w f), clamped to [0, 1]."""
    size = (low.shape[-2] * factor, low.shape[-1] * factor)
    return F.interpolate(low, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def pipeline_upscaler(
    pipe,
    metadata: Callable[[int], object],
    steps: int = 20,
    guidance_text: float = 1.0,
    noise_level: int = 20,
) -> Upscaler:
    """An :data:`Upscaler` from a super-resolution :class:`~rsgen.pipelines.RSGenPipeline` giving the stage's raw
    output (no colour fix: :func:`super_resolution_quality` scores it with and without); ``metadata(k)`` gives
    the output metadata (GSD of the high-res image) of the k-th image of a batch."""

    def upscale(low: torch.Tensor, prompts: Sequence[str], seed: int) -> torch.Tensor:
        f = pipe.sr_factor
        out = pipe(
            list(prompts),
            [metadata(k) for k in range(len(prompts))],
            height=low.shape[-2] * f,
            width=low.shape[-1] * f,
            low_res=low * 2 - 1,
            noise_level=noise_level,
            num_inference_steps=steps,
            guidance_text=guidance_text,
            seed=[seed + k for k in range(len(prompts))],
            output_type="pt",
            progress=False,
        )
        return out.images.float()  # (B, 3, H, W) in [0, 1]

    return upscale


def super_resolution_quality(
    upscaler: Upscaler,
    images: np.ndarray,
    prompts: Sequence[str],
    factor: int,
    labels: np.ndarray | None = None,
    classifier: torch.nn.Module | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> tuple[SuperResolutionQuality, dict[str, np.ndarray]]:
    """Degrade ``images`` (N, H, W, 3) uint8 by ``factor``, upscale them with ``upscaler`` (which should not
    colour-fix itself: its raw output is scored with and without :func:`~rsgen.models.super_resolution.color_fix`)
    and bicubic, and score each method of :data:`METHODS`. With ``labels`` (N,) and a ``classifier``, also the
    class accuracy on each. Returns the scores and the image sets (``low``, each method, ``real``; each
    (N, H, W, 3) uint8, ``low`` nearest-enlarged)."""
    from rsgen.eval.feature_net import accuracy
    from rsgen.models.super_resolution import color_fix, degrade

    if len(images) == 0 or len(images) != len(prompts):
        raise DataError(
            f"super-resolution quality needs images and one prompt each ({len(images)}, {len(prompts)})"
        )
    size = images.shape[1]
    if size % factor:
        raise DataError(f"image size {size} is not a multiple of the factor {factor}")
    real = to_unit_nchw(images)  # (N, 3, H, W)
    low = degrade(real, factor).clamp(0, 1)  # (N, 3, H/f, W/f)
    outputs: dict[str, list[torch.Tensor]] = {k: [] for k in METHODS}
    for start in range(0, len(real), batch_size):
        sl = slice(start, start + batch_size)
        batch_prompts = list(prompts[sl])
        raw = upscaler(low[sl], batch_prompts, seed + start).cpu().float()  # (B, 3, H, W)
        outputs["stage"].append(raw)
        outputs["stage_color_fix"].append(color_fix(raw, low[sl]).clamp(0, 1))
        outputs["bicubic"].append(bicubic_upscale(low[sl], factor))
    ups = {k: torch.cat(v) for k, v in outputs.items()}  # name -> (N, 3, H, W)

    def to_uint8(x: torch.Tensor) -> np.ndarray:
        return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()

    classify = None
    if labels is not None and classifier is not None:

        def classify(x: torch.Tensor) -> float:
            return accuracy(classifier, to_uint8(x), labels)

    quality = SuperResolutionQuality(
        len(real),
        factor,
        size,
        {k: score_upscaled(real, v, classify) for k, v in ups.items()},
        accuracy(classifier, images, labels) if classify else None,
    )
    sets = {k: to_uint8(v) for k, v in ups.items()}
    sets["low"] = to_uint8(F.interpolate(low, scale_factor=factor, mode="nearest"))
    sets["real"] = images
    return quality, sets


def sr_markdown(q: SuperResolutionQuality, model: str, reference: str) -> str:
    """The report: one row per method."""
    lines = [
        f"# Super-resolution quality: {model}",
        "",
        f"{q.num_images} real {q.size} px images from {reference}, area-downsampled x{q.factor} to "
        f"{q.size // q.factor} px and upscaled back. PSNR/SSIM: pixel fidelity (higher is better; a diffusion "
        "upscaler draws plausible detail, not the mean, and usually scores below bicubic). Spectral distance: "
        "L1 between log amplitude spectra (lower is better; too-smooth outputs score high). Class accuracy: "
        "the RS classifier on the outputs.",
        "",
        "| method | PSNR (dB) | SSIM | spectral distance | class accuracy |",
        "|---|---|---|---|---|",
    ]
    for key, s in q.scores.items():
        name = METHODS.get(key, key)
        acc = "-" if s.class_accuracy is None else f"{s.class_accuracy:.3f}"
        lines.append(f"| {name} | {s.psnr_db:.2f} | {s.ssim:.3f} | {s.spectral_distance:.4f} | {acc} |")
    if q.class_accuracy_real is not None:
        lines += ["", f"Class accuracy on the originals: {q.class_accuracy_real:.3f}."]
    lines += [f"\n{n}" for n in q.notes]
    if q.num_images < 100:
        lines += ["", f"WARNING: only {q.num_images} images."]
    return "\n".join(lines) + "\n"


def run_sr_quality(
    model_dir: str,
    out_dir: str,
    reference: str = "eurosat-val",
    num_images: int = 200,
    gsd_m: float | None = None,
    size: int = 64,
    steps: int = 20,
    noise_level: int = 20,
    guidance_text: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    text_classifier: str | None = None,
) -> dict:
    """Score the super-resolution model at ``model_dir`` on ``num_images`` images of ``reference`` (spread evenly
    over it, resized to ``size`` px), prompted with their class names (or "a satellite image" when unlabelled)
    and ``gsd_m`` (the originals' GSD; EuroSAT's 10 m by default); class accuracy only on EuroSAT labels; write ``report.md``, ``report.json`` and
    ``comparison.png`` (rows: low-res, bicubic, stage, stage + colour fix, original)."""
    from pathlib import Path

    from rsgen.eval.evaluate import class_prompt
    from rsgen.eval.feature_net import DEFAULT_TEXT_CLASSIFIER_DIR, load_feature_net
    from rsgen.eval.reference_data import EUROSAT_CLASSES, EUROSAT_GSD_M, load_reference
    from rsgen.eval.report import sample_grid
    from rsgen.io import atomic_write_json, atomic_write_text, write_png
    from rsgen.metadata import Metadata
    from rsgen.pipelines.default import load_pipeline

    pipe = load_pipeline(model_dir)
    if not pipe.is_super_resolution:
        raise DataError(f"{model_dir}: not a super-resolution model")
    pipe.set_progress_bar_config(disable=True)
    data = load_reference(reference, size=size)
    data = data.subset(np.linspace(0, len(data) - 1, min(num_images, len(data))).round().astype(int))
    if gsd_m is None and reference.startswith("eurosat"):
        gsd_m = EUROSAT_GSD_M
    labelled = tuple(data.class_names) == EUROSAT_CLASSES and bool((data.labels >= 0).all())
    prompts = [class_prompt(data.class_names[i]) if i >= 0 else "a satellite image" for i in data.labels]
    classifier_dir = Path(text_classifier) if text_classifier else DEFAULT_TEXT_CLASSIFIER_DIR
    classifier = None
    if labelled and (classifier_dir / "config.json").is_file():
        classifier = load_feature_net(classifier_dir)
    upscale = pipeline_upscaler(
        pipe, lambda k: Metadata(gsd_m=gsd_m) if gsd_m else None, steps, guidance_text, noise_level
    )
    quality, sets = super_resolution_quality(
        upscale,
        data.images,
        prompts,
        pipe.sr_factor,
        data.labels if labelled else None,
        classifier,
        batch_size,
        seed,
    )
    quality.notes.append(
        f"Sampling: {steps} steps, noise level {noise_level}, text guidance {guidance_text}, seed {seed}; "
        f"output GSD asked: {gsd_m} m; classifier: {classifier_dir.name if classifier else 'none'}."
    )
    out = Path(out_dir)
    k = min(8, len(data))
    rows = ("low", "bicubic", "stage", "stage_color_fix", "real")
    grid = sample_grid(np.concatenate([sets[n][:k] for n in rows]), columns=k, max_images=len(rows) * k)
    write_png(out / "comparison.png", grid)
    result = {"model_dir": str(model_dir), "reference": reference, **quality.to_dict()}
    atomic_write_json(out / "report.json", result)
    atomic_write_text(
        out / "report.md",
        sr_markdown(quality, str(model_dir), reference)
        + "\n![rows: low-res, bicubic, stage, stage + colour fix, original](comparison.png)\n",
    )
    return result


__all__ = [
    "SuperResolutionQuality",
    "run_sr_quality",
    "UpscaleScores",
    "Upscaler",
    "bicubic_upscale",
    "pipeline_upscaler",
    "score_upscaled",
    "sr_markdown",
    "super_resolution_quality",
    "to_unit_nchw",
]
