"""Evaluation reports: ``report.json`` (every number), ``report.md`` (tables, warnings, what was measured on
what) and matplotlib plots (sample grid, per-class accuracy, GSD predicted vs requested, metric vs guidance
scale / steps). All files are written atomically."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.io import atomic_path, atomic_write_json, atomic_write_text, write_png

log = logging.getLogger(__name__)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def sample_grid(images: np.ndarray, columns: int = 8, max_images: int = 64) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> one ``(rows*H, columns*W, 3)`` grid image."""
    images = images[:max_images]
    n, h, w, c = images.shape
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * h, columns * w, c), dtype=np.uint8)
    for i, im in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = im
    return grid


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_per_class(per_class: dict[str, float], real: float | None, chance: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(per_class)
    ax.bar(range(len(names)), [per_class[n] for n in names], color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    if real is not None:
        ax.axhline(real, color="tab:green", ls="--", label=f"real val ({real:.2f})")
    ax.axhline(chance, color="grey", ls=":", label=f"chance ({chance:.2f})")
    ax.set_ylim(0, 1)
    ax.set_ylabel("RS-classifier accuracy")
    ax.set_title("Text faithfulness per class (generated images)")
    ax.legend(fontsize=8, loc="lower right")
    _save_figure(fig, path)


def plot_predicted_vs_requested(
    requested: np.ndarray, predicted: np.ndarray, field: str, log_scale: bool, path: Path
) -> None:
    """Scatter of a metadata field read off generated images against the value asked for."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(requested, predicted, s=8, alpha=0.6)
    lo = float(min(requested.min(), predicted.min()))
    hi = float(max(requested.max(), predicted.max()))
    pad = (hi / lo) ** 0.1 if log_scale and lo > 0 else None
    lo, hi = (lo / pad, hi * pad) if pad else (lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    if log_scale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"requested {field}")
    ax.set_ylabel(f"predicted {field}")
    ax.set_title(f"Metadata faithfulness: {field}")
    _save_figure(fig, path)


def plot_metric_curve(xs: list[float], ys: list[float], xlabel: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(xs, ys, "o-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _save_figure(fig, path)


def write_report(out_dir: str | Path, report: dict[str, Any], grid: np.ndarray | None = None) -> Path:
    """Write ``report.json`` and ``report.md`` (and ``samples.png`` from ``grid``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if grid is not None:
        write_png(out / "samples.png", grid)
        report.setdefault("plots", []).append("samples.png")
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_markdown(report))
    return out / "report.md"


# Measures a sweep reports beside FID (rsgen.eval.evaluate adds them): report key -> column / axis title.
SWEEP_COLUMNS = (("class_accuracy", "class accuracy"), ("gsd_error", "GSD error (octaves)"))


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: setup, warnings, then one section per measured quantity."""
    lines = ["# rsgen evaluation report", ""]
    setup = report.get("setup", {})
    lines += ["## Setup", ""] + [f"- **{k}**: {_fmt(v)}" for k, v in setup.items()] + [""]
    warnings = [w for d in report.get("distribution", []) for w in d.get("warnings", [])]
    warnings += report.get("warnings", [])
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in dict.fromkeys(warnings)] + [""]
    for dist in report.get("distribution", []):
        lines += [
            f"## Distribution metrics ({dist['feature_network']})",
            "",
            f"{dist['num_generated']} generated images vs {dist['num_reference']} reference images "
            f"({dist['reference_set']}).",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in dist["metrics"].items()] + [""]
    for sweep in report.get("sweeps", []):
        # FID, then class accuracy and GSD error on the same images where they were measured
        extra = [(k, t) for k, t in SWEEP_COLUMNS if k in sweep]
        lines += [
            f"### {sweep['metric']} against {sweep['key']}",
            "",
            f"| {sweep['key']} | n | {sweep['metric']} |" + "".join(f" {t} |" for _, t in extra),
            "|---|---|---|" + "---|" * len(extra),
        ]
        for i, (x, n, y) in enumerate(zip(sweep["x"], sweep["n"], sweep["y"], strict=True)):
            lines.append(f"| {x} | {n} | {_fmt(y)} |" + "".join(f" {_fmt(sweep[k][i])} |" for k, _ in extra))
        lines += [""]
    text = report.get("text_faithfulness")
    if text:
        lines += [
            "## Text faithfulness (a class judge on images generated from class prompts)",
            "",
            f"Accuracy {_fmt(text['accuracy'])} on {text['num_scored']} images "
            f"(the judge on real held-out images: {_fmt(text['real_accuracy'])}, chance {_fmt(text['chance'])}); "
            f"{text['num_unlabelled']} images had no recognisable class and were not scored. "
            f"Classifier: {text.get('classifier', 'RS feature network')}.",
            "",
            "| class | n | accuracy |",
            "|---|---|---|",
        ]
        lines += [f"| {c} | {text['count_per_class'][c]} | {_fmt(a)} |" for c, a in text["per_class"].items()]
        lines += [""]
        others = report.get("text_faithfulness_second_opinions") or []
        if others:
            lines += [
                "Second opinions (weaker judges; the plain feature network is sensitive to blur and noise, so it "
                "also scores the decoder's sharpness):",
                "",
                "| judge | accuracy | judge on real images |",
                "|---|---|---|",
            ]
            lines += [
                f"| {o['classifier']} | {_fmt(o['accuracy'])} | {_fmt(o['real_accuracy'])} |" for o in others
            ]
            lines += [""]
    for m in report.get("metadata_faithfulness", []):
        lines += [
            f"## Metadata faithfulness: {m['field']}",
            "",
            f"Mean absolute error of the {m['field']} read off the image by a predictor trained on real data "
            f"({m['unit']}); lower is better.",
            "",
            "| images | error |",
            "|---|---|",
            f"| real held-out (best achievable) | {_fmt(m['real'])} |",
            *(
                [f"| real held-out through the model's VAE (the decoder's ceiling) | {_fmt(vae_err)} |"]
                if (vae_err := m.get("real_through_vae")) is not None
                else []
            ),
            f"| generated ({m['num_generated']}) | {_fmt(m['generated'])} |",
            f"| generated, shuffled metadata (no control) | {_fmt(m['shuffled'])} |",
            "",
        ]
        if m.get("by_value"):
            lines += [
                f"Per requested {m['field']}: what the generated images read as, their error, the shuffled "
                f"and real references near that value (ratio generated / real: within 1.5 is close to the "
                f"best achievable; a low error counts only if the medians follow the requests).",
                "",
                "| requested | read as (median) | generated (n) | shuffled | real (n) | generated / real "
                "| real through the VAE |",
                "|---|---|---|---|---|---|---|",
            ]
            for row in m["by_value"]:
                ratio = row["generated"] / row["real"] if row.get("real") else None
                lines.append(
                    f"| {_fmt(row['value'])} | {_fmt(row.get('median_predicted'))} | "
                    f"{_fmt(row['generated'])} ({row['num_generated']}) | "
                    f"{_fmt(row['shuffled'])} | {_fmt(row['real'])} ({row['num_real']}) | {_fmt(ratio)} | "
                    f"{_fmt(row.get('real_through_vae'))} |"
                )
            lines.append("")
    clips = report.get("clip", [])
    if clips:
        lines += [
            "## CLIP score (100 x clipped cosine of image and prompt embeddings)",
            "",
            "| score | generated, own prompts | generated, shuffled prompts | real EuroSAT val, own captions |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c['name']} | {_fmt(c['generated'])} | {_fmt(c['generated_shuffled'])} | "
            f"{_fmt(c['real_own_captions'])} |"
            for c in clips
        ]
        lines += [
            "",
            "CLIP_RS is the project's offline RS-CLIP (RS feature network + MiniLM): compare it only with "
            "its references in this table, never with published CLIP scores.",
            "",
        ]
    if report.get("control_faithfulness"):
        from rsgen.eval.control_faithfulness import control_markdown

        lines += [control_markdown(report["control_faithfulness"])]
    if report.get("caption_judge"):
        lines += ["## Captioner as judge", "", report["caption_judge"]["markdown"], ""]
    for prompt_set in report.get("prompt_sets", []):  # rsgen.eval.prompt_sets.prompt_set_markdown
        lines += [prompt_set["markdown"]]
    aug = report.get("augmentation_markdown")
    if aug:
        lines += ["## Downstream augmentation test", "", aug, ""]
    missing = report.get("not_measured", [])
    if missing:
        lines += ["## Not measured", ""] + [f"- {m}" for m in missing] + [""]
    plots = report.get("plots", [])
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)
