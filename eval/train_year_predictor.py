#!/usr/bin/env python
"""Fine-tune the year predictor (date faithfulness) from the RS feature network.

nice -n 10 python eval/train_year_predictor.py [--config year_predictor] [steps=200 ...]
"""

from rsgen.eval import year_predictor
from rsgen.eval.scripts import run_training_script

if __name__ == "__main__":
    run_training_script(
        __doc__, year_predictor.YearTrainConfig, "year_predictor", year_predictor.train, "steps=200"
    )
