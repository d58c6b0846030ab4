#!/usr/bin/env python
"""Captioning augmentation test: captioner trained on N real EuroSAT pairs vs N real + M synthetic pairs, scored
with BLEU-4 / ROUGE-L / CIDEr on held-out real val pairs (mean +- std over seeds). Without --synthetic, extra
real pairs stand in for synthetic ones (labelled "REAL STAND-IN" in the output).

nice -n 10 python eval/caption_augmentation_test.py --synthetic GENERATED_DIR --out runs/caption-aug [n_real=500]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rsgen.config import load_config
from rsgen.eval import captioner
from rsgen.io import atomic_write_json, atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--synthetic",
        type=Path,
        default=None,
        help="generated images with prompts (generated.jsonl); omitted: a real stand-in arm",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for caption_augmentation.json and .md"
    )
    parser.add_argument("--config", default="captioner", help="config name in configs/eval/ or a YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. captioner.seeds=[0,1]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(captioner.CaptionTestConfig, args.config, args.overrides, subdir="eval")
    result = captioner.run_caption_augmentation_test(args.synthetic, config)
    atomic_write_json(args.out / "caption_augmentation.json", result)
    text = captioner.augmentation_markdown(result)
    atomic_write_text(args.out / "caption_augmentation.md", text + "\n")
    print(text)
    print(json.dumps({"out": str(args.out)}))


if __name__ == "__main__":
    main()
