"""``rsgen metadata FILE.tif``: print the metadata rsgen reads from a raster and where each field came from."""

from __future__ import annotations

import argparse
import json

from rsgen.metadata import read_geotiff_metadata


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "metadata",
        help="print the metadata (GSD, centre lat/lon, date, ...) read from GeoTIFFs",
        description="Read GSD (metres), centre latitude/longitude (WGS84) and acquisition date from each GeoTIFF "
        "(CRS + transform, TIFF tags, a JSON sidecar, or the file-name convention) and print them with their "
        "sources.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="GeoTIFF file(s) to read")
    p.add_argument("--json", action="store_true", help="print one JSON object per file instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in args.files:
        meta, sources = read_geotiff_metadata(path)
        if args.json:
            print(json.dumps({"file": str(path), "metadata": meta.to_dict(), "sources": sources}))
            continue
        print(f"{path}: {meta.describe()}")
        for name, value in meta.to_dict().items():
            if name == "extra":  # other keys a sidecar or tag carried (e.g. generation settings)
                value = ", ".join(sorted(value))
            print(f"  {name:14s} {value!s:28s} {sources.get(name, '')}")
    return 0
