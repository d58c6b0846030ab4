"""The ``rsgen`` command. Each subcommand lives in its own module with ``register(subparsers)``; the module
only parses arguments and calls the library. Errors from bad input print one line and exit non-zero."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from rsgen import __version__
from rsgen.errors import RsgenError

# Subcommand modules, in the order `rsgen --help` lists them (each imports its heavy dependencies lazily; all
# of them are declared, so a failing import is a bug to see, not a command to hide).
SUBCOMMAND_MODULES = (
    "rsgen.cli.info",
    "rsgen.cli.metadata",
    "rsgen.cli.generate",
    "rsgen.cli.curate",
    "rsgen.cli.evaluate",
    "rsgen.cli.train",
    "rsgen.cli.models",
)

log = logging.getLogger("rsgen")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsgen",
        description="Text- and metadata-conditioned diffusion for remote-sensing imagery: curate data, train, "
        "generate georeferenced images, evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rsgen {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # long-running subcommands (train, curate, evaluate) set log_level=INFO so their progress is logged
    levels = [getattr(args, "log_level", logging.WARNING), logging.INFO, logging.DEBUG]
    logging.basicConfig(
        level=levels[min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RsgenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:  # pragma: no cover
    # rsgen reads every model from a local path; the command keeps the Hugging Face libraries offline for
    # its own process (importing rsgen as a library changes no environment variable).
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    sys.exit(main())
