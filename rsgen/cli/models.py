"""``rsgen models``: where the shipped models are, and a copy of them (and the configs) for ``$RSGEN_HOME``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="show where the shipped models and configs are, or copy them to a folder for RSGEN_HOME",
        description="`rsgen models` prints the folders rsgen reads its configs and models from. "
        "`rsgen models install DEST` copies the configs and the shipped models (default model, super-resolution "
        "stage, evaluation networks, caption vocabulary) to DEST without any network; with RSGEN_HOME=DEST "
        "rsgen then reads them from there, so they can be edited or replaced. "
        "`rsgen models convert-annotators DIR` writes safetensors copies of the lllyasviel/Annotators pickles "
        "in DIR (HED, PiDiNet, M-LSD, MiDaS, NormalBAE), read as tensors only, so conditions that need them run "
        "without --trust-pickle.",
    )
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", help="install: copy them to a folder")
    i = msub.add_parser("install", help="copy the configs and shipped models to DEST (no network)")
    i.add_argument("dest", help="the folder to fill (use it as RSGEN_HOME)")
    i.add_argument("--force", action="store_true", help="replace folders that already exist in DEST")
    c = msub.add_parser(
        "convert-annotators", help="write safetensors copies of annotator pickles in DIR (tensors only)"
    )
    c.add_argument("dir", help="the folder of lllyasviel/Annotators files (what $RSGEN_ANNOTATORS points to)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rsgen import paths

    if getattr(args, "models_command", None) == "convert-annotators":
        from rsgen.conditions.detectors import convert_annotators

        written = convert_annotators(args.dir)
        for path in written:
            print(f"wrote {path}")
        if not written:
            print(f"nothing to convert in {args.dir} (no known annotator pickle without a .safetensors copy)")
        return 0
    if getattr(args, "models_command", None) == "install":
        for folder in paths.install_home(args.dest, force=args.force):
            print(f"wrote {folder}")
        print(f"use it with: export RSGEN_HOME={args.dest}")
        return 0
    print(f"configs: {paths.CONFIG_DIR}")
    print(f"assets:  {paths.ASSETS_DIR}")
    print(f"default model: {paths.DEFAULT_MODEL_DIR}")
    return 0
