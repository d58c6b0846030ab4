#!/usr/bin/env python
"""Fine-tune the GSD predictor (metadata faithfulness) from the RS feature network.

nice -n 10 python eval/train_gsd_predictor.py [--config gsd_predictor] [steps=300 ...]
"""

from __future__ import annotations

import argparse
import json
import logging

from rsgen.config import load_config
from rsgen.eval import gsd_predictor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default="gsd_predictor", help="config name in configs/eval/ or a YAML path"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=300")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(gsd_predictor.GSDTrainConfig, args.config, args.overrides, subdir="eval")
    summary = gsd_predictor.train(config)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
