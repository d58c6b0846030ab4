#!/usr/bin/env python
"""Metadata-conditioning ablation: train no-metadata / DiffusionSat-style / rsgen arms at one budget and
evaluate them alike (rsgen.eval.ablation). Resumes every arm from its checkpoints.

nice -n 5 python eval/metadata_ablation.py [--config ablation] [max_steps=800 num_images=300 ...]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rsgen.eval.ablation import load_ablation_config, run_metadata_ablation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="ablation", help="config name in configs/eval/ or a YAML path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. max_steps=400 styles=[none,fourier]"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = run_metadata_ablation(
        load_ablation_config(args.config, tuple(args.overrides)), not args.no_progress
    )
    print(Path(result["markdown"]).read_text())


if __name__ == "__main__":
    main()
