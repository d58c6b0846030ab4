"""Thin script: `python sample/generate.py PROMPT [options]` = `rsgen generate` (see `rsgen generate --help`)."""

import sys

from rsgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
