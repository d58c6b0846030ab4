#!/usr/bin/env bash
# Train the base model on a lent GPU machine that has no dataset, no embedded MiniLM and no network, from a
# bundle packed here (tools/remote_gpu/bundle.py), then generate the evaluation sets there:
#
#   python -m tools.remote_gpu.bundle pack runs/latent-cache gpu/bundle --prompts ... [--fraction ...]
#   tar czf gpu/bundle.tar.gz -C gpu bundle
#   bash tools/remote_gpu/base.sh gpu/bundle.tar.gz RUN_DIR MINUTES RESULT_DIR [KEY=VALUE ...]   # on the GPU machine
#
# KEY=VALUE: training config overrides (batch size, learning rate, mixed precision, ...). Results, in
# RESULT_DIR, split in 15 MB parts (join with `cat model.tar.* | tar x`):
#   model.tar.*: the run folder without checkpoints (model/ with EMA weights in float16 and without vae/,
#                samples/, TensorBoard logs, config.yaml, train.log)
#   eval.tar.*:  generated sets of `rsgen evaluate --generate-only`: eval-10m (2,000 class prompts at 10 m) and
#                eval-gsd (300 at 10 / 20 / 40 m); evaluate them here with `rsgen evaluate --images`.
set -euo pipefail
bundle=$1 run=$2 minutes=$3 result=$4
shift 4
source "$(dirname "$0")/lib.sh"
parent=$(dirname "$run") name=$(basename "$run")
remote_setup "$bundle"
remote_train "$run" "$minutes" "$@" || { tail -n 20 "$run.log"; exit 1; }
tail -n 3 "$run.log"
remote_export_run "$run" "$parent/$name-export"
remote_pack "$result" model "$parent" "$name-export"
remote_generate "$run/model" "$run-eval-10m" batch_size=64 num_images="${EVAL_IMAGES:-2000}" || true
remote_generate "$run/model" "$run-eval-gsd" batch_size=64 num_images="${GSD_IMAGES:-300}" "gsd_choices=[10,20,40]" seed=100000 || true
remote_pack "$result" eval "$parent" "$name-eval-10m/generated" "$name-eval-gsd/generated"
ls -la "$result"
