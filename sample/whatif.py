"""Thin script: `python sample/whatif.py INPUT.tif --sweep month=1..12 [options]` = `rsgen whatif`."""

import sys

from rsgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["whatif", *sys.argv[1:]]))
