#!/usr/bin/env python
"""Captioner as judge: train the evaluation captioner on real EuroSAT pairs and save it, or use a saved one to
caption a folder of generated images and score the captions against their prompts.

nice -n 10 python eval/caption_judge.py train --out assets/eval/captioner [captioner.steps=600]
nice -n 10 python eval/caption_judge.py judge --captioner assets/eval/captioner --images GENERATED_DIR --out runs/judge
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
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train", help="train a captioner on n_real EuroSAT train pairs, score on val, save it"
    )
    train.add_argument("--out", type=Path, required=True, help="folder for the saved captioner")
    train.add_argument("--config", default="captioner", help="config name in configs/eval/ or a YAML path")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. captioner.steps=600")
    judge = sub.add_parser("judge", help="caption generated images and score them against their prompts")
    judge.add_argument("--captioner", type=Path, required=True, help="a saved captioner folder")
    judge.add_argument(
        "--images", type=Path, required=True, help="generated set with prompts (generated.jsonl)"
    )
    judge.add_argument("--out", type=Path, required=True, help="folder for caption_judge.json and .md")
    judge.add_argument("--config", default="captioner", help="config name in configs/eval/ or a YAML path")
    judge.add_argument("overrides", nargs="*", help="key=value overrides, e.g. judge_real_images=200")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(captioner.CaptionTestConfig, args.config, args.overrides, subdir="eval")
    if args.command == "train":
        model, tok, summary = captioner.train_eurosat_captioner(config)
        captioner.save_captioner(args.out, model, tok, summary)
        print(json.dumps(summary, indent=2))
        return
    pairs = captioner.generated_captioned(args.images, size=config.captioner.image_size)
    result = captioner.judge_generated(
        args.captioner,
        pairs.images,
        [c[0] for c in pairs.captions],
        config.judge_real_images,
        config.captioner.max_length,
    )
    atomic_write_json(args.out / "caption_judge.json", result)
    atomic_write_text(args.out / "caption_judge.md", result["markdown"] + "\n")
    print(result["markdown"])


if __name__ == "__main__":
    main()
