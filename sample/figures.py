#!/usr/bin/env python
"""README / model-card figures of a saved model: a grid of samples per EuroSAT class prompt and what-if strips
(the same seed across acquisition years and across GSDs).

python sample/figures.py --model assets/default-model --out assets/samples --tag default-model
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rsgen.errors import RsgenError
from rsgen.eval.evaluate import class_prompt
from rsgen.eval.reference_data import EUROSAT_CLASSES
from rsgen.io import write_png
from rsgen.metadata import Metadata
from rsgen.pipelines.default import load_pipeline
from rsgen.pipelines.figures import class_grid, whatif_strip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="assets/default-model", help="saved rsgen model folder")
    parser.add_argument("--out", type=Path, default=Path("assets/samples"), help="folder for the PNGs")
    parser.add_argument("--tag", default="default-model", help="file name prefix")
    parser.add_argument("--seeds", type=int, default=6, help="samples per class (grid columns)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps")
    parser.add_argument("--guidance", type=float, default=5.0, help="text guidance scale")
    parser.add_argument("--seed", type=int, default=3, help="seed of the what-if strips")
    parser.add_argument(
        "--years", default="1990,2000,2009,2014,2019", help="comma-separated years of the year strip"
    )
    parser.add_argument("--gsds", default="5,10,20,40,89", help="comma-separated GSDs (m) of the GSD strip")
    parser.add_argument(
        "--prompt", default="a satellite image of farmland with fields", help="prompt of the what-if strips"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        pipe = load_pipeline(args.model)
        meta = Metadata(gsd_m=10.0, lat=47.0, lon=-99.1, date="2016-07-15")
        grid = class_grid(
            pipe,
            [class_prompt(c) for c in EUROSAT_CLASSES],
            list(EUROSAT_CLASSES),
            list(range(args.seeds)),
            Metadata(gsd_m=10.0),
            steps=args.steps,
            guidance=args.guidance,
        )
        print(write_png(args.out / f"{args.tag}-classes.png", grid))
        for field, values in (("year", args.years), ("gsd", args.gsds)):
            strip = whatif_strip(
                pipe,
                args.prompt,
                meta,
                field,
                values.split(","),
                seed=args.seed,
                steps=args.steps,
                guidance=args.guidance,
            )
            print(write_png(args.out / f"{args.tag}-whatif-{field}.png", strip))
    except RsgenError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
