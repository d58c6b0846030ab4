"""``rsgen curate``: sources -> checked, de-duplicated, captioned manifest (+ WebDataset shards, report)."""

from __future__ import annotations

import argparse
import logging

from rsgen.config import load_config
from rsgen.data.curate import curate
from rsgen.data.curate_config import CurateConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate",
        help="curate image-caption sources into a manifest, shards and a report",
        description="Read the sources of a curation config (configs/data/<name>.yaml), decode and check every "
        "image, drop corrupt / blank / mostly-nodata / duplicate ones, write captions, attach metadata, assign "
        "stable splits and write OUT/manifest.jsonl, OUT/report/report.md and optional shards. A re-run after "
        "a kill resumes from OUT/progress.jsonl.",
    )
    p.add_argument(
        "--config",
        default="curated",
        help="curation config: a name in configs/data/ or a YAML path (default: curated)",
    )
    p.add_argument(
        "--out", required=True, help="output folder (manifest.jsonl, progress.jsonl, report/, shards/)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set workers=1 or --set shards.enabled=true (repeatable)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: the config's workers)"
    )
    p.add_argument("--shards", action="store_true", help="also write WebDataset tar shards into OUT/shards/")
    p.add_argument(
        "--restart", action="store_true", help="ignore an earlier run's progress in OUT and start over"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["shards.enabled=true"] if args.shards else [])
    config = load_config(CurateConfig, args.config, overrides, subdir="data")
    result = curate(
        config, args.out, restart=args.restart, workers=args.workers, show_progress=not args.no_progress
    )
    print(result.summary())
    print(f"manifest: {result.manifest}")
    if result.report:
        print(f"report: {result.report}")
    if result.shards:
        print(f"shards: {len(result.shards)} in {result.shards[0].parent}")
    return 0
