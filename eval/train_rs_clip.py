#!/usr/bin/env python
"""Train the RS-CLIP heads (CLIP_RS) over the frozen RS feature network and MiniLM text encoder.

nice -n 10 python eval/train_rs_clip.py [--config rs_clip] [steps=3000 ...]
"""

from __future__ import annotations

import argparse
import json
import logging

from rsgen.config import load_config
from rsgen.eval import clip_score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="rs_clip", help="config name in configs/eval/ or a YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=3000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(clip_score.RSClipTrainConfig, args.config, args.overrides, subdir="eval")
    summary = clip_score.train(config)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
