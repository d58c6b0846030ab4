"""The one command-line shape of the evaluation-network training scripts in ``eval/train_*.py``: a config name
in ``configs/eval/`` plus ``key=value`` overrides, train, print the training summary."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from rsgen.config import load_config


def run_training_script(
    doc: str,
    config_cls: type,
    default_config: str,
    train: Callable[[Any], dict],
    example: str,
    argv: Sequence[str] | None = None,
) -> dict:
    """Parse ``[--config NAME] [key=value ...]``, load ``config_cls`` from ``configs/eval/``, run ``train``
    and print its summary (without the config echo); returns the summary."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", default=default_config, help="config name in configs/eval/ or a YAML path"
    )
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {example}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = train(load_config(config_cls, args.config, args.overrides, subdir="eval"))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return summary


__all__ = ["run_training_script"]
