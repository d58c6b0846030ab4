#!/usr/bin/env python
"""Train the RS feature network (FID_RS / KID_RS / IS_RS, text faithfulness) on EuroSAT train.

nice -n 10 python eval/train_feature_net.py [--config feature_net] [classifier.epochs=3 ...]
"""

from __future__ import annotations

import argparse
import json
import logging

from rsgen.config import load_config
from rsgen.eval import feature_net


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="feature_net", help="config name in configs/eval/ or a YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. classifier.epochs=3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(feature_net.FeatureNetTrainConfig, args.config, args.overrides, subdir="eval")
    summary = feature_net.train(config)
    print(json.dumps({k: summary[k] for k in ("val_accuracy", "train_seconds", "train_images")}, indent=2))


if __name__ == "__main__":
    main()
