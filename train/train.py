"""Accelerate-launchable training entry: ``accelerate launch train/train.py --config default --manifest ...``
(same options as ``rsgen train``)."""

from __future__ import annotations

import argparse
import logging
import sys

from rsgen.cli.train import add_train_arguments, run_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
