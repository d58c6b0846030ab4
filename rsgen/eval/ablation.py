"""Metadata-conditioning ablation at one training budget: the same base model trained with no metadata, with a
DiffusionSat-style metadata embedding (sinusoid + MLP added to the timestep embedding, dropped values = 0) and
with rsgen's embedding (Fourier features, per-field MLPs, learned "missing" states), then evaluated alike.

Every arm starts from the same seed, sees the same batches (the same latent cache and sampler seed) for the same
number of steps, and is evaluated on the same class prompts and requested GSDs with :mod:`rsgen.eval.evaluate`;
only ``metadata.style`` differs, plus any per-arm switches named in ``arm_overrides`` (e.g. the local season, which
only rsgen's embedding has: ``{fourier: [metadata.local_season=true]}``) and reported with the arm. Arms resume
from their checkpoints, so a killed ablation continues where it stopped. An arm whose generated set already exists (``<output_dir>/<style>/generated/generated.jsonl``, e.g. arms
trained and sampled on a lent GPU by ``tools/remote_gpu/ablation.sh``) is evaluated without training. The
comparison is written to ``<output_dir>/ablation.md`` and ``ablation.json``, with the arms side by side in
``ablation.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsgen.config import load_config
from rsgen.errors import ConfigError
from rsgen.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STYLE_NAMES = {
    "none": "no metadata",
    "diffusionsat": "DiffusionSat-style (sinusoid + MLP, dropped = 0)",
    "fourier": "rsgen (Fourier + per-field MLP + learned missing)",
}


@dataclass
class AblationConfig:
    """``configs/eval/ablation.yaml``: what to train for each arm and how to evaluate it."""

    base_config: str = "default"  # training config every arm starts from
    output_dir: str = "runs/ablation"
    manifest: str | None = "data/curated/manifest.jsonl"
    styles: tuple[str, ...] = ("none", "diffusionsat", "fourier")
    max_steps: int = 800
    train_overrides: tuple[str, ...] = ()  # key=value for every arm (smaller UNet, VAE path, ...)
    # key=value for one arm only, by style: switches that exist in one embedding alone (the local season is
    # rsgen's: {fourier: [metadata.local_season=true]}); they are named in the comparison so it stays honest
    arm_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)
    latent_cache: str | None = (
        None  # a complete latent cache of the same data + VAE to copy instead of encoding
    )
    # decode every arm with this VAE (a decoder-only fine-tune of the arms' VAE, e.g. assets/default-model after
    # a newer decoder stage): it replaces each arm's vae/ before generation; None = the VAE the arms trained with
    vae: str | None = None
    # evaluation of each arm (rsgen.eval.evaluate.EvaluateConfig fields)
    num_images: int = 300
    gsd_choices: tuple[float, ...] = (10.0, 20.0, 40.0)
    num_inference_steps: int = 20
    guidance_scale: float = 5.0
    batch_size: int = 25
    metadata_real_images: int = 600
    seed: int = 0
    evaluate_overrides: dict[str, Any] = field(default_factory=dict)


def load_ablation_config(
    name_or_path: str | Path = "ablation", overrides: tuple[str, ...] = ()
) -> AblationConfig:
    return load_config(AblationConfig, name_or_path, list(overrides), subdir="eval")


def arm_train_config(cfg: AblationConfig, style: str) -> Any:
    """The training config of one arm: the base config + shared overrides + its ``metadata.style`` + its own
    ``arm_overrides``."""
    from rsgen.models.metadata_embedding import METADATA_STYLES
    from rsgen.training.config import load_train_config

    if style not in METADATA_STYLES:
        raise ConfigError(f"ablation style {style!r}: expected one of {', '.join(METADATA_STYLES)}")
    unknown = sorted(set(cfg.arm_overrides) - set(cfg.styles))
    if unknown:
        raise ConfigError(
            f"ablation arm_overrides: {', '.join(unknown)} not among the styles {list(cfg.styles)}"
        )
    root = Path(cfg.output_dir)
    overrides = [
        *cfg.train_overrides,
        f"metadata.style={style}",
        *cfg.arm_overrides.get(style, ()),
        f"output_dir={root / style}",
        f"max_steps={cfg.max_steps}",
        f"data.cache_dir={root / 'latent-cache'}",
        "sample_every=0",
    ]
    if cfg.manifest:
        overrides.append(f"data.manifest={cfg.manifest}")
    return load_train_config(cfg.base_config, overrides)


def _copy_latent_cache(cfg: AblationConfig) -> None:
    """Copy a finished latent cache once (the arms share one copy; the source is never written to)."""
    dst = Path(cfg.output_dir) / "latent-cache"
    if cfg.latent_cache is None or (dst / "cache.json").is_file():
        return
    src = Path(cfg.latent_cache)
    if not (src / "cache.json").is_file():
        raise ConfigError(f"ablation latent_cache={src}: no cache.json there (not a finished latent cache)")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    tmp.rename(dst)


def arm_generated_dir(cfg: AblationConfig, style: str) -> Path:
    """Where an arm's generated class-prompt set lives."""
    return Path(cfg.output_dir) / style / "generated"


def arm_has_set(cfg: AblationConfig, style: str) -> bool:
    """Whether an arm's generated set is complete (its index file is written last)."""
    return (arm_generated_dir(cfg, style) / "generated.jsonl").is_file()


def evaluate_arm(cfg: AblationConfig, style: str, model_dir: Path | None) -> dict[str, Any]:
    """Generate the class-prompt set of one arm (GSDs cycled; kept if it exists) and evaluate it, with the VAE
    round trip of real images as the GSD ceiling (``cfg.vae``, else the arm's); returns report.json's dict.
    ``model_dir`` may be None only when the set exists and ``cfg.vae`` is given."""
    from rsgen.eval.evaluate import EvaluateConfig, evaluate_folder, generate_class_prompt_set
    from rsgen.models.vae import swap_decoder

    ecfg = EvaluateConfig(
        num_images=cfg.num_images,
        gsd_choices=tuple(cfg.gsd_choices),
        num_inference_steps=cfg.num_inference_steps,
        guidance_scale=cfg.guidance_scale,
        batch_size=cfg.batch_size,
        metadata_real_images=cfg.metadata_real_images,
        seed=cfg.seed,
        vae=cfg.vae or (str(model_dir) if model_dir else None),
    )
    ecfg = dataclasses.replace(ecfg, **cfg.evaluate_overrides)
    folder = arm_generated_dir(cfg, style)
    if ecfg.vae is None:
        raise ConfigError(f"ablation arm {style}: no model and no `vae` to take the GSD ceiling with")
    if not arm_has_set(cfg, style):
        if model_dir is None:
            raise ConfigError(
                f"ablation arm {style}: no generated set in {folder} and no model to generate it"
            )
        if cfg.vae:
            swap_decoder(model_dir, cfg.vae)
        generate_class_prompt_set(model_dir, folder, ecfg)
    return evaluate_folder(folder, Path(cfg.output_dir) / style / "eval", ecfg)


def summary_row(style: str, report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one arm's report that the comparison table shows."""
    row: dict[str, Any] = {"style": style, "name": STYLE_NAMES.get(style, style)}
    for dist in report.get("distribution", []):
        row.update(dist.get("metrics", {}))
    text = report.get("text_faithfulness") or {}
    row["class_accuracy"] = text.get("accuracy")
    row["real_class_accuracy"] = text.get("real_accuracy")
    for clip in report.get("clip", []):
        row[clip["name"]] = clip["generated"]
        row[f"{clip['name']} shuffled"] = clip["generated_shuffled"]
    for meta in report.get("metadata_faithfulness", []):
        if meta["field"] != "gsd_m":
            continue
        row["gsd_error"] = meta["generated"]
        row["gsd_error_shuffled"] = meta["shuffled"]
        row["gsd_error_real"] = meta["real"]
        row["gsd_error_vae"] = meta.get("real_through_vae")
        for v in meta.get("by_value", []):
            tag = f"{v['value']:g} m"
            row[f"gsd_error@{tag}"] = v["generated"]
            row[f"gsd_error_real@{tag}"] = v["real"]
            row[f"gsd_error_vae@{tag}"] = v.get("real_through_vae")
            # what the images asking for this GSD read as: control means these follow the requests
            row[f"gsd_read_as_m@{tag}"] = v.get("median_predicted")
    return row


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def _table(rows: list[dict[str, Any]], keys: list[str], header: Any = str) -> list[str]:
    """A markdown table: one row per arm, a column per key (titled ``header(key)``)."""
    lines = ["| arm | " + " | ".join(header(k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    return lines + [
        "| " + row["name"] + " | " + " | ".join(_fmt(row.get(k)) for k in keys) + " |" for row in rows
    ]


def ablation_markdown(rows: list[dict[str, Any]], cfg: AblationConfig) -> str:
    """Two comparison tables, one row per arm: overall scores, then GSD faithfulness per requested GSD."""
    keys: list[str] = []
    for row in rows:
        keys += [
            k
            for k in row
            if k not in ("style", "name") and k not in keys and not k.endswith("shuffled") and "@" not in k
        ]
    per_value = sorted(
        {k.split("@")[1] for row in rows for k in row if "@" in k}, key=lambda t: float(t.split()[0])
    )
    lines = [
        "# Metadata-conditioning ablation",
        "",
        f"Base config `{cfg.base_config}` with {list(cfg.train_overrides)}; {cfg.max_steps} steps per arm from the "
        f"same seed and the same batches; only `metadata.style` differs"
        + "".join(f" (and `{s}` has {list(o)})" for s, o in cfg.arm_overrides.items() if o)
        + f". Evaluation: {cfg.num_images} images from "
        f"EuroSAT class prompts at GSD {list(cfg.gsd_choices)} m, {cfg.num_inference_steps} steps, guidance "
        f"{cfg.guidance_scale}"
        + (f", decoded with the VAE of `{cfg.vae}`" if cfg.vae else "")
        + ". GSD errors are mean |log2(predicted / requested)| in octaves (lower is better); `gsd_error_vae` is "
        "real held-out images after the VAE round trip (the decoder's ceiling).",
        "",
        *_table(rows, keys),
    ]
    if per_value:
        lines += [
            "",
            "## GSD per requested value",
            "",
            "error of the generated images / of real images near that GSD / of real images through the VAE; "
            "then the median GSD the generated images read as (control means these follow the requests).",
            "",
        ]
        cols = [
            f"{name}@{tag}"
            for tag in per_value
            for name in ("gsd_error", "gsd_error_real", "gsd_error_vae", "gsd_read_as_m")
        ]
        lines += _table(rows, cols, header=lambda k: k.replace("@", " @ "))
    shuffled = [r.get("gsd_error_shuffled") for r in rows if r.get("gsd_error_shuffled") is not None]
    if shuffled:
        lines += [
            "",
            f"GSD error with shuffled metadata (no control): {', '.join(_fmt(s) for s in shuffled)}.",
        ]
    if cfg.num_images < 1000:
        lines += [
            "",
            f"WARNING: {cfg.num_images} images per arm (< 1,000): FID_RS/KID_RS are biased upwards.",
        ]
    return "\n".join(lines) + "\n"


SHORT_STYLE_NAMES = {"none": "none", "diffusionsat": "DSat", "fourier": "rsgen"}


def ablation_grid(cfg: AblationConfig, styles: list[str], classes: int = 3, cell: int = 128) -> Path | None:
    """``<output_dir>/ablation.png``: one row per arm; the columns are the first ``classes`` class prompts at each
    requested GSD, the same image (prompt, seed, GSD) of every arm down a column. None when no arm has a set."""
    from rsgen.eval.generated_set import load_generated_set
    from rsgen.io import write_png
    from rsgen.pipelines.whatif import labelled_grid

    sets = {s: load_generated_set(arm_generated_dir(cfg, s)) for s in styles if arm_has_set(cfg, s)}
    if not sets:
        return None
    first = next(iter(sets.values()))
    picked: dict[tuple[str | None, float | None], int] = {}  # (class, GSD) -> index, in the set's order
    labels_seen: list[str | None] = []
    for i, sample in enumerate(first.samples):
        if sample.label not in labels_seen:
            labels_seen.append(sample.label)
        if labels_seen.index(sample.label) < classes:
            picked.setdefault((sample.label, sample.metadata.gsd_m), i)
    columns = sorted(picked.items(), key=lambda kv: (labels_seen.index(kv[0][0]), kv[0][1] or 0.0))
    images, labels = [], []
    for style, gset in sets.items():
        for k, ((label, gsd), i) in enumerate(columns):
            if i >= len(gset):
                continue
            images.append(gset.images[i].astype("float32") / 255.0)  # (H, W, 3) in [0, 1]
            what = f"{(label or '')[:8]} {gsd:g} m" if gsd else (label or "")[:12]
            labels.append(f"{SHORT_STYLE_NAMES.get(style, style)}|{what}" if k == 0 else what)
    return write_png(
        Path(cfg.output_dir) / "ablation.png", labelled_grid(images, labels, cell=cell, ncols=len(columns))
    )


def run_metadata_ablation(cfg: AblationConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) and evaluate every arm; write ``ablation.md`` / ``ablation.json``."""
    from rsgen.training import train

    root = Path(cfg.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    _copy_latent_cache(cfg)
    rows = []
    for style in cfg.styles:
        if arm_has_set(cfg, style):
            log.info("ablation arm %s: generated set found; evaluating it without training", style)
            model_dir = root / style / "model"
            report = evaluate_arm(cfg, style, model_dir if model_dir.is_dir() else None)
        else:
            tcfg = arm_train_config(cfg, style)
            log.info("ablation arm %s: training to step %d in %s", style, cfg.max_steps, tcfg.output_dir)
            result = train(tcfg, progress=progress)
            report = evaluate_arm(cfg, style, result.model_dir)
        rows.append(summary_row(style, report))
        atomic_write_json(root / "ablation.json", {"config": dataclasses.asdict(cfg), "arms": rows})
    grid = ablation_grid(cfg, list(cfg.styles))
    text = ablation_markdown(rows, cfg)
    if grid is not None:
        text += (
            f"\n![the arms side by side: same prompt, seed and requested GSD down each column]({grid.name})\n"
        )
    atomic_write_text(root / "ablation.md", text)
    return {"arms": rows, "markdown": str(root / "ablation.md")}


__all__ = [
    "AblationConfig",
    "STYLE_NAMES",
    "ablation_grid",
    "ablation_markdown",
    "arm_generated_dir",
    "arm_has_set",
    "arm_train_config",
    "evaluate_arm",
    "load_ablation_config",
    "run_metadata_ablation",
    "summary_row",
]
