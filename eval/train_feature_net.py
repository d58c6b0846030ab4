#!/usr/bin/env python
"""Train the RS feature network (FID_RS / KID_RS / IS_RS, text faithfulness) on EuroSAT train.

nice -n 10 python eval/train_feature_net.py [--config feature_net] [classifier.epochs=3 ...]
"""

from rsgen.eval import feature_net
from rsgen.eval.scripts import run_training_script

if __name__ == "__main__":
    run_training_script(
        __doc__, feature_net.FeatureNetTrainConfig, "feature_net", feature_net.train, "classifier.epochs=3"
    )
