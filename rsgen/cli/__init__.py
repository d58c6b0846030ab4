"""The ``rsgen`` command. Each subcommand lives in its own module with ``register(subparsers)``; the module
only parses arguments and calls the library.

One error path: bad input (an :class:`~rsgen.errors.RsgenError`) prints one ``error:`` line and exits 2; a
usage error prints one ``error:`` line (``--help`` still prints the full usage) and exits 2; any other
exception prints one line with a hint to rerun with ``--debug`` (which shows the traceback) and exits 1."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from rsgen import __version__
from rsgen.errors import RsgenError

# Subcommand modules and the subcommands each registers, in the order `rsgen --help` lists them. A module that
# fails to import (e.g. an optional dependency is missing) keeps its subcommands listed; running one prints
# one error line naming the missing dependency.
SUBCOMMAND_MODULES = {
    "rsgen.cli.info": ("info",),
    "rsgen.cli.metadata": ("metadata",),
    "rsgen.cli.generate": ("generate", "whatif"),
    "rsgen.cli.curate": ("curate",),
    "rsgen.cli.evaluate": ("evaluate",),
    "rsgen.cli.train": ("train",),
    "rsgen.cli.models": ("models",),
}

log = logging.getLogger("rsgen")


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one ``error:`` line (exit 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        first = message.splitlines()[0] if message else "invalid arguments"
        self.exit(2, f"error: {self.prog}: {first} (see {self.prog} --help)\n")


def _global_options(p: argparse.ArgumentParser, default: object) -> None:
    """Options accepted before or after the subcommand (``default`` SUPPRESS on subparsers so that a value
    given before the subcommand is kept)."""
    g = p.add_argument_group("global options")
    g.add_argument("--debug", action="store_true", default=default, help="show tracebacks of errors")
    g.add_argument(
        "--allow-large",
        action="store_true",
        default=default,
        help="lift the size limits (steps, pixels, images, sweep length, guidance; also RSGEN_ALLOW_LARGE=1)",
    )
    g.add_argument(
        "--trust-pickle",
        action="store_true",
        default=default,
        help="allow pickled weights (.bin/.pt/.pth), which can run code; only for files you trust "
        "(also RSGEN_TRUST_PICKLE=1)",
    )


def _unavailable(module: str, error: ImportError) -> Callable[[argparse.Namespace], int]:
    missing = getattr(error, "name", None) or str(error)

    def run(args: argparse.Namespace) -> int:
        raise RsgenError(
            f"rsgen {args.command}: unavailable because importing {module} failed ({error}); install the "
            f"missing dependency {missing!r} (e.g. pip install {missing.split('.')[0]})"
        )

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rsgen",
        description="Text- and metadata-conditioned diffusion for remote-sensing imagery: curate data, train, "
        "generate georeferenced images, evaluate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rsgen {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    _global_options(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, commands in SUBCOMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            for command in commands:
                p = sub.add_parser(command, help=f"(unavailable: {e})", description=f"unavailable: {e}")
                p.add_argument("rest", nargs=argparse.REMAINDER, help="(ignored)")
                p.set_defaults(func=_unavailable(name, e))
            continue
        module.register(sub)
    for p in sub.choices.values():
        _global_options(p, argparse.SUPPRESS)
    return parser


def _terminate(signum: int, frame: object) -> NoReturn:
    """SIGTERM as SystemExit, so that temporary files are removed on the way out."""
    raise SystemExit(128 + signum)


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
    from rsgen import safety

    previous = None
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with safety.overrides(allow_large=args.allow_large, trust_pickle=args.trust_pickle):
            return int(args.func(args) or 0)
    except RsgenError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an input no check caught: one line unless --debug
        if args.debug:
            traceback.print_exc()
        first = str(e).splitlines()[0] if str(e) else ""
        print(
            f"error: unexpected {type(e).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:  # pragma: no cover
    # rsgen reads every model from a local path; the command keeps the Hugging Face libraries offline for
    # its own process (importing rsgen as a library changes no environment variable).
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    sys.exit(main())
