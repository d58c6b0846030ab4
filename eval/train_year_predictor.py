#!/usr/bin/env python
"""Fine-tune the year predictor (date faithfulness) from the RS feature network.

nice -n 10 python eval/train_year_predictor.py [--config year_predictor] [steps=200 ...]
"""

from __future__ import annotations

import argparse
import json
import logging

from rsgen.config import load_config
from rsgen.eval import year_predictor


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default="year_predictor", help="config name in configs/eval/ or a YAML path"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=200")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(year_predictor.YearTrainConfig, args.config, args.overrides, subdir="eval")
    summary = year_predictor.train(config)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
