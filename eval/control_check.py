#!/usr/bin/env python
"""Check the evaluation itself on control sets with known answers: real EuroSAT val images written as a
"generated" set (a perfect generator, at 10 m and at 10/20/40 m by coarsening) and uniform noise with the same
prompts and metadata (a generator that obeys nothing). Writes one report per control set.

    nice -n 10 python eval/control_check.py --out runs/eval-controls [--n 1000] [--augmentation]

With --augmentation it also runs the downstream augmentation test with real EuroSAT train images (disjoint from
the real pool) standing in for synthetic ones: the gain perfect synthetic data would give.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from rsgen.config import load_config
from rsgen.eval import augmentation
from rsgen.eval.control_sets import write_control_set
from rsgen.eval.evaluate import EvaluateConfig, evaluate_folder
from rsgen.eval.reference_data import load_eurosat
from rsgen.io import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the control sets and their reports"
    )
    parser.add_argument(
        "--n", type=int, default=1000, help="images per control set (from EuroSAT val half a)"
    )
    parser.add_argument("--max-reference", type=int, default=None, help="reference images (default: all val)")
    parser.add_argument(
        "--augmentation", action="store_true", help="also run the augmentation test's control"
    )
    parser.add_argument("--config", default="augmentation", help="augmentation config (configs/eval/)")
    parser.add_argument("overrides", nargs="*", help="augmentation config overrides, e.g. seeds=[0,1,2]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = {}
    controls = (  # name, kind, GSD coarsening factors
        ("real", "real", (1.0,)),  # a perfect 10 m generator: distribution, text and CLIP scores
        ("real-multiscale", "real", (1.0, 2.0, 4.0)),  # a perfect generator at 10/20/40 m: GSD faithfulness
        ("noise", "noise", (1.0, 2.0, 4.0)),  # obeys nothing
    )
    config = EvaluateConfig(reference="eurosat-val-b", max_reference=args.max_reference)
    for name, kind, factors in controls:
        folder = write_control_set(args.out / f"{name}-set", args.n, kind, gsd_factors=factors)
        report = evaluate_folder(folder, args.out / f"{name}-report", config)
        summary[name] = {
            **report["distribution"][0]["metrics"],
            "text_accuracy": report.get("text_faithfulness", {}).get("accuracy"),
            **{
                f"{m['field']}_error": (m["generated"], m["shuffled"], m["real"])
                for m in report["metadata_faithfulness"]
            },
            **{
                c["name"]: (c["generated"], c["generated_shuffled"], c["real_own_captions"])
                for c in report.get("clip", [])
            },
        }
    if args.augmentation:
        config = load_config(augmentation.AugmentationConfig, args.config, args.overrides, subdir="eval")
        real_pool, stand_in = augmentation.real_stand_in_split(load_eurosat("train"))
        rows = augmentation.augmentation_test(stand_in, real_pool, load_eurosat("val"), config)
        text = (
            augmentation.augmentation_markdown(rows)
            + "\n\n(synthetic arm: real EuroSAT train images, a control)"
        )
        atomic_write_text(args.out / "augmentation-control.md", text + "\n")
        summary["augmentation_control"] = [r.to_dict() for r in rows]
        print(text)
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
