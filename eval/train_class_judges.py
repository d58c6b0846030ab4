#!/usr/bin/env python
"""Train the class judges (EuroSAT, UC Merced, AID heads on one ResNet-18) and score each on its real val split.

python eval/train_class_judges.py [--config class_judges] [out=assets/eval/class-judges] [time_budget_s=240 ...]
"""

from rsgen.eval import class_judge_training
from rsgen.eval.scripts import run_training_script

if __name__ == "__main__":
    run_training_script(
        __doc__,
        class_judge_training.ClassJudgeTrainConfig,
        "class_judges",
        class_judge_training.run,
        "steps=100",
    )
