#!/usr/bin/env python
"""Downstream augmentation test: EuroSAT classifier on N real / class vs N real + M synthetic / class.

nice -n 10 python eval/augmentation_test.py --synthetic GENERATED_DIR --out runs/aug [n_real_per_class=[10,50]]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rsgen.config import load_config
from rsgen.eval import augmentation
from rsgen.io import atomic_write_json, atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--synthetic",
        type=Path,
        required=True,
        help="generated images with labels (generated.jsonl / sidecars / <Class>/ folders)",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for augmentation.json and .md")
    parser.add_argument(
        "--config", default="augmentation", help="config name in configs/eval/ or a YAML path"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds=[0,1,2,3]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(augmentation.AugmentationConfig, args.config, args.overrides, subdir="eval")
    rows = augmentation.run_augmentation_test(args.synthetic, config)
    atomic_write_json(args.out / "augmentation.json", [r.to_dict() for r in rows])
    text = augmentation.augmentation_markdown(rows)
    atomic_write_text(args.out / "augmentation.md", text + "\n")
    print(text)
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
