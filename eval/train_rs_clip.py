#!/usr/bin/env python
"""Train the RS-CLIP heads (CLIP_RS) over the frozen RS feature network and MiniLM text encoder.

nice -n 10 python eval/train_rs_clip.py [--config rs_clip] [steps=3000 ...]
"""

from rsgen.eval import clip_score
from rsgen.eval.scripts import run_training_script

if __name__ == "__main__":
    run_training_script(__doc__, clip_score.RSClipTrainConfig, "rs_clip", clip_score.train, "steps=3000")
