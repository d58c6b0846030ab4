"""Curate the project's training and reference sets (a thin wrapper over ``rsgen curate``).

python train/curate_data.py --config curated --out data/curated
"""

import sys

from rsgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["curate", *sys.argv[1:]]))
