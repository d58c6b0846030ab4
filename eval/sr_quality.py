#!/usr/bin/env python
"""Super-resolution quality on real images the stage never saw (EuroSAT val by default: the SR stage trains on
NAIP, aerial and Landsat windows): originals are area-downsampled by the stage's factor and upscaled back by the
stage and by bicubic interpolation; PSNR, SSIM, spectral distance and RS-classifier accuracy of each
(rsgen.eval.super_resolution). Writes report.md, report.json and comparison.png to --out.

nice python eval/sr_quality.py --model assets/default-sr-model --num-images 200 --out runs/sr-quality
"""

from __future__ import annotations

import argparse
import logging
import sys

from rsgen.errors import RsgenError
from rsgen.eval.super_resolution import run_sr_quality


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="assets/default-sr-model", help="super-resolution model folder")
    parser.add_argument(
        "--reference", default="eurosat-val", help="eurosat-val, eurosat-train or a folder of real images"
    )
    parser.add_argument("--num-images", type=int, default=200, help="originals, spread evenly over the set")
    parser.add_argument(
        "--gsd", type=float, default=None, help="GSD of the originals in metres (EuroSAT: 10; folders: none)"
    )
    parser.add_argument(
        "--size", type=int, default=64, help="originals are resized to this many px (EuroSAT: its 64)"
    )
    parser.add_argument("--steps", type=int, default=20, help="sampling steps of the stage")
    parser.add_argument(
        "--noise-level", type=int, default=20, help="noise added to the low-res input (0-350)"
    )
    parser.add_argument("--guidance", type=float, default=1.0, help="text guidance scale (1 = none)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per sampling batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first image (then +1 each)")
    parser.add_argument(
        "--classifier", default=None, help="RS classifier folder (default: the shipped robust one)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run_sr_quality(
            args.model,
            args.out,
            args.reference,
            args.num_images,
            args.gsd,
            args.size,
            args.steps,
            args.noise_level,
            args.guidance,
            args.batch_size,
            args.seed,
            args.classifier,
        )
    except RsgenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, s in result["scores"].items():
        print(
            f"{name}: PSNR {s['psnr_db']:.2f} dB, SSIM {s['ssim']:.3f}, spectral {s['spectral_distance']:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
