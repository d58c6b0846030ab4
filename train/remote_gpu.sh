#!/usr/bin/env bash
# Train the base model on a lent GPU machine that has no dataset, no embedded MiniLM and no network, from a
# bundle packed here (rsgen/training/remote_bundle.py), then generate the evaluation sets there:
#
#   python -m rsgen.training.remote_bundle pack runs/latent-cache gpu/bundle --prompts ... [--fraction ...]
#   tar czf gpu/bundle.tar.gz -C gpu bundle
#   bash train/remote_gpu.sh gpu/bundle.tar.gz RUN_DIR MINUTES RESULT_DIR [KEY=VALUE ...]   # on the GPU machine
#
# KEY=VALUE: training config overrides (batch size, learning rate, mixed precision, ...). Wheels the machine
# lacks (diffusers) are installed from .whl/ when that folder exists. Results, in RESULT_DIR, split in 15 MB
# parts (the machine returns files of at most 16 MiB; join with `cat model.tar.* | tar x`):
#   model.tar.*: the run folder without checkpoints (model/ with EMA weights in float16 and without vae/,
#                samples/, TensorBoard logs, config.yaml, train.log)
#   eval.tar.*:  generated sets of `rsgen evaluate --generate-only`: eval-10m (2,000 class prompts at 10 m) and
#                eval-gsd (300 at 10 / 20 / 40 m); evaluate them here with `rsgen evaluate --images`.
set -euo pipefail
bundle=$1 run=$2 minutes=$3 result=$4
shift 4
parent=$(dirname "$run") name=$(basename "$run")
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
work=/tmp/rsgen-remote
mkdir -p "$parent"
mkdir -p "$work" "$result"
tar xzf "$bundle" -C "$work"
python3 -m rsgen.training.remote_bundle unpack "$work/bundle" "$work" | tail -n 4
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -m rsgen train --config default --output-dir "$run" --max-minutes "$minutes" --no-progress \
  --set data.cache_only=true data.cache_dir="$work/latent-cache" text.encoder="$work/text-encoder" \
  vae.pretrained=assets/default-model "$@" 2>&1 | tee "$parent/$name.log"
cp "$parent/$name.log" "$run/train.log"
mkdir -p "$parent/$name-export"
cp -r "$run/model" "$parent/$name-export/model"
python3 - "$parent/$name-export/model" <<'EOF'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
for f in Path(sys.argv[1]).rglob("*.safetensors"):  # float16 for the trip back
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f))
EOF
rm -rf "$parent/$name-export/model/vae" "$parent/$name-export/model/text_encoder" "$parent/$name-export/model/tokenizer"
cp -r "$run/samples" "$run/train.log" "$run/config.yaml" "$parent/$name-export/" 2>/dev/null || true
cp -r "$run"/events* "$run"/train "$parent/$name-export/" 2>/dev/null || true
tar cf - -C "$parent" "$name-export" | split -b 15000000 - "$result/model.tar."
gen() { python3 -m rsgen evaluate --model "$run/model" --out "$1" --generate-only batch_size=64 "${@:2}" 2>&1 | tail -n 2; }
gen "$run-eval-10m" num_images="${EVAL_IMAGES:-2000}" || true
gen "$run-eval-gsd" num_images="${GSD_IMAGES:-300}" "gsd_choices=[10,20,40]" seed=100000 || true
tar cf - -C "$parent" "$name-eval-10m/generated" "$name-eval-gsd/generated" | split -b 15000000 - "$result/eval.tar."
ls -la "$result"
