#!/usr/bin/env python
"""Fine-tune the GSD predictor (metadata faithfulness) from the RS feature network.

nice -n 10 python eval/train_gsd_predictor.py [--config gsd_predictor] [steps=300 ...]
"""

from rsgen.eval import gsd_predictor
from rsgen.eval.scripts import run_training_script

if __name__ == "__main__":
    run_training_script(
        __doc__, gsd_predictor.GSDTrainConfig, "gsd_predictor", gsd_predictor.train, "steps=300"
    )
