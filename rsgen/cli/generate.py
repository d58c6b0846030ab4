"""``rsgen generate`` (text + metadata [+ ControlNet] images, optionally through a resolution cascade or as a
large tiled scene) and ``rsgen whatif`` (edit a real tile with changed date / season / GSD / caption). This
module only parses arguments; the work is in :mod:`rsgen.cli.jobs`."""

from __future__ import annotations

import argparse
from typing import Any

from rsgen.errors import ConfigError

# Kept here (not imported from rsgen.pipelines.schedulers) so that `rsgen --help` does not import torch.
SCHEDULER_NAMES = ("ddim", "ddpm", "dpm++", "dpm++-karras", "euler", "euler-a", "unipc")


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--model", help="rsgen model folder (default: assets/default-model; random tiny weights if absent)"
    )
    g.add_argument(
        "--scheduler", default="dpm++", help=f"sampler: {', '.join(SCHEDULER_NAMES)} (default dpm++)"
    )
    g.add_argument("--steps", type=int, default=25, help="denoising steps (default 25)")
    g.add_argument(
        "--guidance-text", type=float, default=5.0, help="text guidance scale; 1 = none (default 5)"
    )
    g.add_argument(
        "--guidance-meta",
        type=float,
        default=None,
        help="metadata guidance scale; 1 = none (default: the model's own, default_guidance_meta in its "
        "model_index.json: 12 for the shipped model, 1 for models that set none)",
    )
    g.add_argument("--negative", default=None, help="negative prompt (the text-unconditional branch)")
    g.add_argument("--seed", type=int, default=0, help="seed of image 0; image i uses seed+i (default 0)")
    g.add_argument(
        "--window",
        type=int,
        default=None,
        help="denoise in overlapping windows of this many latent pixels (large scenes)",
    )
    g.add_argument("--overlap", type=int, default=8, help="window overlap in latent pixels (default 8)")
    g.add_argument("--out", default="outputs", help="output folder (default ./outputs)")
    g.add_argument("--format", default="tif,png", help="output formats: tif, png or tif,png (default both)")
    g.add_argument("--name", default=None, help="file name stem of the outputs (default rsgen / whatif)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    m = p.add_argument_group("metadata (every field optional)")
    m.add_argument("--lat", help="latitude of the image centre, degrees")
    m.add_argument("--lon", help="longitude of the image centre, degrees")
    m.add_argument("--latlon", help="LAT,LON in one option")
    m.add_argument("--date", help="acquisition date YYYY[-MM[-DD]]")
    m.add_argument("--gsd", help="ground sample distance of the output, metres per pixel")
    m.add_argument("--cloud", help="cloud cover fraction 0-1 (or a percentage like 15%%)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="generate georeferenced images from text and metadata",
        description="Generate images from a prompt and optional metadata (GSD, location, date, cloud cover), "
        "optional ControlNet conditions, through one model or a resolution cascade; writes GeoTIFF and/or PNG "
        "plus a JSON sidecar with every setting.",
    )
    p.add_argument("prompt", nargs="?", default=None, help="text prompt (or use --prompts FILE)")
    p.add_argument("--prompts", help="file of prompts: one per line, or JSONL {prompt, metadata, seed, name}")
    p.add_argument("--n", type=int, default=1, help="images per prompt (default 1)")
    p.add_argument(
        "--size", default=None, help="output size N or WxH in pixels (default: the model's, or --like's)"
    )
    p.add_argument("--like", help="reference GeoTIFF: take its metadata and georeference (options override)")
    p.add_argument(
        "--like-control",
        default=None,
        help="also make a ControlNet condition of this type (e.g. canny) from the --like image",
    )
    p.add_argument(
        "--control",
        action="append",
        default=[],
        help="ControlNet condition TYPE=PATH[:BAND][@WEIGHT][[START:END]] (repeatable)",
    )
    p.add_argument(
        "--controlnet",
        action="append",
        default=[],
        help="TYPE=DIR: the ControlNet for a condition type (default: MODEL/controlnet-TYPE or "
        "MODEL/controlnet)",
    )
    p.add_argument(
        "--cascade", default=None, help="resolution cascade config (configs/cascade/NAME.yaml or a path)"
    )
    p.add_argument("--skip-stage", action="append", default=[], help="cascade stage to skip (repeatable)")
    _add_common(p)
    p.set_defaults(func=run_generate)

    w = sub.add_parser(
        "whatif",
        help="edit a real image with changed date, season, GSD or caption",
        description="Image-to-image on a real image or GeoTIFF, sweeping one field at a fixed seed: e.g. "
        "--sweep month=1..12, --sweep year=2000..2020:5, --sweep gsd=0.5,1,2, --sweep 'prompt=forest|city'. "
        "Writes one GeoTIFF per value (georeference kept) and a labelled grid PNG.",
    )
    w.add_argument("input", help="the real image (GeoTIFF keeps its georeference; PNG/JPG also accepted)")
    w.add_argument("--prompt", default="", help="caption of the image (default empty)")
    w.add_argument("--sweep", required=True, help="FIELD=VALUES with FIELD month|year|date|gsd|cloud|prompt")
    w.add_argument("--strength", type=float, default=0.6, help="how much to change: 0 < s <= 1 (default 0.6)")
    _add_common(w)
    w.set_defaults(func=run_whatif)


def _sampling(args: argparse.Namespace) -> Any:
    from rsgen.cli.jobs import SamplingOptions

    return SamplingOptions(
        model=args.model,
        scheduler=args.scheduler,
        steps=args.steps,
        guidance_text=args.guidance_text,
        guidance_meta=args.guidance_meta,
        negative=args.negative,
        seed=args.seed,
        window=args.window,
        overlap=args.overlap,
        out=args.out,
        formats=tuple(f for f in args.format.split(",") if f.strip()),
        name=args.name,
        progress=not args.no_progress,
    )


def _metadata(args: argparse.Namespace) -> Any:
    from rsgen.cli.jobs import MetadataOptions

    return MetadataOptions(
        lat=args.lat, lon=args.lon, latlon=args.latlon, date=args.date, gsd=args.gsd, cloud=args.cloud
    )


def _pairs(option: str, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{option} {item!r}: expected TYPE=DIR")
        out[key.strip()] = value.strip()
    return out


def run_generate(args: argparse.Namespace) -> int:
    from rsgen.cli.jobs import GenerateRequest, PromptItem, parse_size, read_prompts_file
    from rsgen.cli.jobs import run_generate as run_generate_job

    if args.prompt is None and args.prompts is None:
        raise ConfigError("no prompt: give PROMPT or --prompts FILE")
    prompts = read_prompts_file(args.prompts) if args.prompts else []
    if args.prompt is not None:
        prompts.insert(0, PromptItem(args.prompt))
    req = GenerateRequest(
        prompts=prompts,
        metadata=_metadata(args),
        sampling=_sampling(args),
        n=args.n,
        size=parse_size(args.size),
        like=args.like,
        like_control=args.like_control,
        controls=args.control,
        controlnets=_pairs("--controlnet", args.controlnet),
        cascade=args.cascade,
        skip_stages=args.skip_stage,
    )
    for path in run_generate_job(req):
        print(path)
    return 0


def run_whatif(args: argparse.Namespace) -> int:
    from rsgen.cli.jobs import WhatIfRequest, run_whatif_request

    req = WhatIfRequest(
        input=args.input,
        sweep=args.sweep,
        prompt=args.prompt,
        strength=args.strength,
        metadata=_metadata(args),
        sampling=_sampling(args),
    )
    for path in run_whatif_request(req):
        print(path)
    return 0
