#!/usr/bin/env python
"""Control faithfulness: re-extract each ControlNet condition from generated images with the same detector (or a
given segmenter) and score agreement with the input condition, beside shuffled and real references.

    # a folder of generated images whose records carry "conditions": {"canny": "x.condition-canny.png"}
    nice -n 10 python eval/control_faithfulness.py --images outputs/ --out runs/control [--segmenter T=mod:fn]
    # known-answer benchmark on real images: own condition, shuffled, JPEG / blur degraded
    nice -n 10 python eval/control_faithfulness.py --benchmark eurosat --n 200 --kind canny --out runs/control
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from rsgen.errors import ConfigError
from rsgen.eval import control_faithfulness as cf
from rsgen.io import atomic_write_json, atomic_write_text


def _table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("case", "n")]
    lines = ["| case | " + " | ".join(keys) + " | n |", "|---" * (len(keys) + 2) + "|"]
    lines += [f"| {r['case']} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + f" | {r['n']} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of generated images (generated.jsonl or sidecars)")
    src.add_argument(
        "--benchmark", choices=("eurosat", "naip", "highres"), help="known-answer benchmark on real images"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for control_faithfulness.md/.json")
    parser.add_argument("--segmenter", action="append", default=[], help="TYPE=module:function (repeatable)")
    parser.add_argument(
        "--tolerance", type=float, default=cf.DEFAULT_TOLERANCE_PX, help="edge F1 tolerance, px"
    )
    parser.add_argument("--kind", default="canny", help="benchmark: condition type (canny, lineart)")
    parser.add_argument("--n", type=int, default=200, help="benchmark: number of real images")
    parser.add_argument("--size", type=int, default=128, help="benchmark naip/highres: window size, px")
    parser.add_argument("--seed", type=int, default=0, help="shuffling / window seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.images is not None:
        from rsgen.eval.generated_set import load_generated_set

        segmenters = {}
        for item in args.segmenter:
            kind, sep, spec = item.partition("=")
            if not sep:
                raise ConfigError(f"--segmenter {item!r}: expected TYPE=module:function")
            segmenters[kind] = spec
        results, missing = cf.control_section(
            load_generated_set(args.images), segmenters, args.tolerance, args.seed
        )
        text = cf.control_markdown(results) if results else "## Control faithfulness\n\nnothing measured\n"
        text += "".join(f"- not measured: {m}\n" for m in missing)
        payload: object = {"control_faithfulness": results, "not_measured": missing}
    else:
        from rsgen.paths import datasets_dir

        if args.benchmark == "eurosat":
            from rsgen.eval.reference_data import load_eurosat

            images = load_eurosat("val").images[: args.n]
            where = f"EuroSAT val, first {len(images)} images, 64x64"
        else:
            folder = {"naip": "naip-timeseries", "highres": "highres-aerial"}[args.benchmark]
            paths = sorted((datasets_dir() / folder).glob("*.tif"))
            images = cf.raster_windows(paths, args.n, args.size, args.seed)
            where = f"{len(images)} random {args.size} px windows of {folder}/*.tif"
        rows = cf.reference_benchmark(images, args.kind, tolerance=args.tolerance, seed=args.seed)
        text = (
            f"## Control faithfulness benchmark: {args.kind} on {where} (tolerance {args.tolerance:g} px)\n\n"
        )
        text += _table(rows) + "\n"
        payload = {"kind": args.kind, "images": where, "tolerance_px": args.tolerance, "rows": rows}
    atomic_write_text(args.out / "control_faithfulness.md", text)
    atomic_write_json(args.out / "control_faithfulness.json", payload)
    print(text)
    print(json.dumps(payload, default=str)[:2000])


if __name__ == "__main__":
    main()
