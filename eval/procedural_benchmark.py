#!/usr/bin/env python
"""Procedural benchmark (SYNTHETIC): generate images for held-out procedural scenes' metadata and layouts with the
tiny procedural models and score each metadata field and the layout control against requested, shuffled and real.

    nice -n 10 python eval/procedural_benchmark.py --config procedural_benchmark [key=value ...]

Writes report.md, report.json and grid.png to the config's out_dir.
"""

from __future__ import annotations

import argparse
import logging

from rsgen.eval.procedural_benchmark import load_benchmark_config, run_benchmark


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default="procedural_benchmark", help="benchmark config name in configs/eval/ or a path"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. n=50 guidance_meta=2.0")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = load_benchmark_config(args.config, args.overrides)
    report = run_benchmark(cfg, progress=not args.no_progress)
    print(f"wrote {cfg.out_dir}/report.md ({report['n_scenes']} scenes, SYNTHETIC benchmark)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
