#!/usr/bin/env python
"""Evaluate generated images (or a model) against a reference set; same options as `rsgen evaluate`.

python eval/evaluate.py --images GENERATED_DIR --out runs/eval [--inception-weights pt_inception.pth]
"""

from __future__ import annotations

import sys

from rsgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["-v", "evaluate", *sys.argv[1:]]))
