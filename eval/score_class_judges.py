#!/usr/bin/env python
"""Score the class judges on the real held-out split of each label set and record it in their config.json.

python eval/score_class_judges.py [PATH=assets/eval/class-judges] [--recalibrate N]

--recalibrate N re-estimates each head's batch-norm statistics on N random original training images first.
"""

import json
import sys

from rsgen.eval.class_judge_training import score_saved_judges
from rsgen.eval.class_judges import DEFAULT_CLASS_JUDGES_DIR

if __name__ == "__main__":
    args = sys.argv[1:]
    recalibrate = 0
    if "--recalibrate" in args:
        i = args.index("--recalibrate")
        recalibrate = int(args[i + 1])
        del args[i : i + 2]
    path = args[0] if args else DEFAULT_CLASS_JUDGES_DIR
    # the native size of each set's files: EuroSAT 64, UC Merced 256, AID 150
    scores = score_saved_judges(
        path, storage_sizes={"eurosat": 64, "ucm": 256, "aid": 150}, recalibrate_images=recalibrate
    )
    print(
        json.dumps(
            {k: {"accuracy": v["accuracy"], "images": v["images"]} for k, v in scores.items()}, indent=2
        )
    )
