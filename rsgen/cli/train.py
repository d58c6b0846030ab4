"""``rsgen train``: train one mode (vae | base | controlnet | sr) from a YAML config; resumes automatically."""

from __future__ import annotations

import argparse
import logging

from rsgen.training.modes import MODES

log = logging.getLogger(__name__)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rsgen train`` (shared with ``train/train.py``)."""
    p.add_argument(
        "--config",
        default="default",
        help="config name in configs/ (tiny, default, default-vae, default-sr, default-controlnet, "
        "sd15, sd21) or a YAML path (default: default)",
    )
    p.add_argument("--mode", choices=MODES, help="override the config's mode")
    p.add_argument("--manifest", help="training manifest JSONL (from `rsgen curate`); sets data.manifest")
    p.add_argument("--output-dir", help="run folder: checkpoints/, model/, samples/, TensorBoard logs")
    p.add_argument(
        "--init-from", help="rsgen model folder to start from (the frozen base model for controlnet)"
    )
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--max-minutes", type=float, help="stop (checkpoint + export) after this many minutes")
    p.add_argument("--batch-size", type=int, help="per-process batch size (optim.batch_size)")
    p.add_argument(
        "--resume",
        default="auto",
        help="'auto' (newest intact checkpoint in the run folder, default; damaged ones are skipped with a "
        "warning), 'none' (start fresh), or a checkpoint folder",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. optim.lr=1e-4 unet.gradient_checkpointing=true",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    """Build the config from the parsed options and train; prints where the model went."""
    from rsgen.training import load_train_config, train

    overrides = list(args.set)
    for key, value in (
        ("mode", args.mode),
        ("data.manifest", args.manifest),
        ("output_dir", args.output_dir),
        ("init_from", args.init_from),
        ("max_steps", args.max_steps),
        ("max_minutes", args.max_minutes),
        ("optim.batch_size", args.batch_size),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_train_config(args.config, overrides)
    resume = None if args.resume == "none" else args.resume
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # not a line per checkpoint file
    result = train(cfg, resume=resume, progress=not args.no_progress)
    if result.main_process:
        skipped = f", {result.skipped_steps} steps skipped for a NaN/inf loss" if result.skipped_steps else ""
        print(
            f"trained {cfg.mode} to step {result.step} ({result.stopped_by}{skipped}); model: "
            f"{result.model_dir}; checkpoint: {result.checkpoint}"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the VAE, the base model, a ControlNet or a super-resolution stage",
        description="Train one mode from a YAML config (configs/<name>.yaml) with accelerate. Checkpoints are "
        "written atomically every checkpoint_every steps (with a sha256 manifest) and a killed run resumes "
        "bit-exactly; the final model (EMA weights) is exported as a pipeline folder in <output_dir>/model. "
        "Multi-process: `accelerate launch --multi_gpu --num_processes N train/train.py ...` (docs/training.md).",
    )
    add_train_arguments(p)
    p.set_defaults(func=run_from_args, log_level=logging.INFO)
