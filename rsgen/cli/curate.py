"""``rsgen curate``: sources -> checked, de-duplicated, captioned manifest (+ WebDataset shards, report)."""

from __future__ import annotations

import argparse
import logging

from rsgen.config import load_config
from rsgen.data.curate import curate
from rsgen.data.curate_config import CurateConfig, folder_config
from rsgen.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate",
        help="curate image-caption sources into a manifest, shards and a report",
        description="Read the sources of a curation config (configs/data/<name>.yaml), or one plain folder PATH, "
        "decode and check every image, drop corrupt / blank / mostly-nodata / duplicate ones, write captions, "
        "attach metadata, assign stable splits and write OUT/manifest.jsonl, OUT/report/report.md and optional "
        "shards. A re-run after a kill resumes from OUT/progress.jsonl. PATH holds class subfolders "
        "(PATH/<Class>/*.jpg|png|tif) or images with PATH/captions.json ({file: caption or [captions]}) or "
        "PATH/captions.csv (file,caption[,label] rows); the metadata flags apply to every image of PATH.",
    )
    p.add_argument(
        "path",
        nargs="?",
        help="a plain image folder to curate instead of a config (class subfolders or captions.json/.csv)",
    )
    p.add_argument(
        "--config",
        help="curation config: a name in configs/data/ or a YAML path (default: curated; not with PATH)",
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
    meta = p.add_argument_group("metadata of every image of PATH (only with PATH)")
    meta.add_argument("--gsd", type=float, help="ground sample distance in metres per pixel")
    meta.add_argument("--lat", type=float, help="latitude of the images' centre (degrees)")
    meta.add_argument("--lon", type=float, help="longitude of the images' centre (degrees)")
    meta.add_argument("--date", help="acquisition date: YYYY, YYYY-MM or YYYY-MM-DD")
    meta.add_argument("--sensor", help="sensor or platform, e.g. NAIP, Sentinel-2, drone")
    meta.add_argument("--place", help="place name the written captions may mention, e.g. 'Lyon, France'")
    meta.add_argument("--label", help="class label of images outside class subfolders")
    meta.add_argument(
        "--split", choices=("train", "val", "test"), help="one split for every image (default: a stable hash)"
    )
    meta.add_argument(
        "--heldout",
        type=float,
        default=0.0,
        help="hold out this fraction of each class (by file name) as split val, e.g. 0.2",
    )
    p.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides) + (["shards.enabled=true"] if args.shards else [])
    if args.path is not None and args.config is not None:
        raise ConfigError("give either PATH (one plain folder) or --config (mixed sources), not both")
    if args.path is not None:
        metadata = {
            "gsd_m": args.gsd,
            "lat": args.lat,
            "lon": args.lon,
            "date": args.date,
            "sensor": args.sensor,
        }
        source = folder_config(
            args.path,
            metadata=metadata,
            label=args.label,
            place=args.place,
            split=args.split,
            heldout=args.heldout,
        )
        config = load_config(CurateConfig, source, overrides)
    else:
        given = [
            f for f in ("gsd", "lat", "lon", "date", "sensor", "place", "label", "split") if getattr(args, f)
        ]
        if given or args.heldout:
            raise ConfigError(
                f"--{(given or ['heldout'])[0]} describes the images of a folder: give PATH, or set it in the config"
            )
        config = load_config(CurateConfig, args.config or "curated", overrides, subdir="data")
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
