"""``rsgen evaluate``: score generated images (or a model) against a reference set; write a report."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from rsgen.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="FID_RS/KID_RS/IS_RS, text and GSD faithfulness of generated images; writes report.md/json + plots",
        description="Evaluate a folder of generated images (PNG/GeoTIFF with generated.jsonl, JSON sidecars or "
        "rsgen GeoTIFF tags giving prompt, label and metadata), or a saved model that first generates images "
        "from class prompts, against a real reference set. Writes report.md, report.json and plots to --out.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of generated images with prompts/metadata")
    src.add_argument("--model", type=Path, help="saved rsgen model folder: generate from class prompts first")
    p.add_argument("--out", type=Path, required=True, help="report folder (created)")
    p.add_argument("--config", default="default", help="evaluation config in configs/eval/ or a YAML path")
    p.add_argument(
        "--reference", help="reference set: eurosat-val (default), eurosat-train or an image folder"
    )
    p.add_argument(
        "--inception-weights",
        type=Path,
        help="standard FID InceptionV3 weights (pt_inception-2015-12-05-6726825d.pth or .safetensors)"
        " to also report FID/KID/IS comparable with published numbers",
    )
    p.add_argument("--feature-net", type=Path, help="RS feature network folder (default: the shipped one)")
    p.add_argument("--gsd-predictor", type=Path, help="GSD predictor folder (default: the shipped one)")
    p.add_argument(
        "--clip", type=Path, help="local CLIP checkpoint folder to also report the standard CLIP score"
    )
    p.add_argument("--max-generated", type=int, help="use at most this many generated images")
    p.add_argument(
        "--segmenter",
        action="append",
        default=[],
        help="TYPE=module:function or TYPE=file.py:function: a segmenter (image -> class mask) for mask "
        "conditions (footprints, roads, segmentation) to score their control faithfulness by IoU (repeatable)",
    )
    p.add_argument("--num-images", type=int, help="with --model: how many images to generate")
    p.add_argument(
        "--prompt-sets",
        help="comma-separated names of the config's prompt sets to generate and report (e.g. "
        "plain-eurosat,ucm-val), or 'none'; default: every set of the config (configs/eval/default.yaml)",
    )
    p.add_argument(
        "--max-prompts", type=int, help="with --model: at most this many prompts (images) of each prompt set"
    )
    p.add_argument(
        "--generate-only",
        action="store_true",
        help="with --model: only write the generated set to OUT/generated (e.g. on a GPU machine without the "
        "evaluation networks); evaluate it later with --images OUT/generated",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="config overrides key=value, e.g. max_reference=1000, "
        "year_predictor=DIR, rs_clip=DIR, guidance_sweep=[3,5,7.5] (see configs/eval/default.yaml)",
    )
    p.set_defaults(func=run, log_level=logging.INFO)


IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MIN_IMAGES = 2  # distribution metrics (FID/KID) need at least two samples


def _check_arguments(args: argparse.Namespace) -> None:
    """Argument checks before any network loads: the output folder, the image folder and counts."""
    from rsgen.safety import check_output_dir

    check_output_dir(args.out)
    if args.images is not None:
        if not args.images.is_dir():
            raise ConfigError(f"--images {args.images}: generated-image folder not found")
        count = sum(
            1
            for p in args.images.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and ".condition-" not in p.name
            and not p.name.startswith(".")
        )
        if count < MIN_IMAGES:
            raise ConfigError(
                f"--images {args.images}: {count} image(s); evaluation needs at least {MIN_IMAGES} "
                "(distribution metrics compare sets of images)"
            )
    for option, value in (("--num-images", args.num_images), ("--max-generated", args.max_generated)):
        if value is not None and value < MIN_IMAGES:
            raise ConfigError(f"{option} {value}: expected at least {MIN_IMAGES} images")


def run(args: argparse.Namespace) -> int:
    from rsgen.config import load_config
    from rsgen.eval.evaluate import EvaluateConfig, evaluate_folder, generate_class_prompt_set

    overrides = list(args.overrides)
    for key, value in (
        ("reference", args.reference),
        ("inception_weights", args.inception_weights),
        ("feature_net", args.feature_net),
        ("gsd_predictor", args.gsd_predictor),
        ("max_generated", args.max_generated),
        ("clip_model", args.clip),
        ("num_images", args.num_images),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    for item in args.segmenter:
        kind, sep, spec = item.partition("=")
        if not sep or not kind.strip() or not spec.strip():
            raise ConfigError(
                f"--segmenter {item!r}: expected TYPE=module:function, e.g. footprints=seg.py:run"
            )
        overrides.append(f"segmenters.{kind.strip()}={spec.strip()}")
    _check_arguments(args)
    config = load_config(EvaluateConfig, args.config, overrides, subdir="eval")
    config = dataclasses.replace(
        config, prompt_sets=select_prompt_sets(config.prompt_sets, args.prompt_sets, args.max_prompts)
    )
    if config.max_generated is not None and config.max_generated < MIN_IMAGES:
        raise ConfigError(f"max_generated {config.max_generated}: expected at least {MIN_IMAGES} images")
    if args.generate_only and args.model is None:
        raise ConfigError("--generate-only needs --model")
    if args.model is not None and config.vae is None:
        config = dataclasses.replace(config, vae=str(args.model))
    if args.model is not None:
        folder = generate_class_prompt_set(args.model, args.out / "generated", config)
        if args.generate_only:
            print(f"generated set: {folder}")
            return 0
        report = evaluate_folder(folder, args.out, config)
    else:
        report = evaluate_folder(args.images, args.out, config)
    for dist in report["distribution"]:
        print(", ".join(f"{k}={v:.4g}" for k, v in dist["metrics"].items()))
    print(f"report: {args.out / 'report.md'}")
    return 0


def select_prompt_sets(sets: list, names: str | None, max_prompts: int | None) -> list:
    """The configured prompt sets named in ``names`` (comma-separated; 'none': no set; None: all), each capped
    at ``max_prompts``."""
    if names is not None:
        wanted = [] if names.strip().lower() == "none" else [n.strip() for n in names.split(",") if n.strip()]
        known = {s.name: s for s in sets}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ConfigError(
                f"--prompt-sets {', '.join(unknown)}: not in the config's prompt_sets "
                f"({', '.join(known) or 'none configured'})"
            )
        sets = [known[n] for n in wanted]
    if max_prompts is not None:
        if max_prompts < 1:
            raise ConfigError(f"--max-prompts {max_prompts}: expected a positive number")
        sets = [dataclasses.replace(s, max_prompts=max_prompts) for s in sets]
    return sets
