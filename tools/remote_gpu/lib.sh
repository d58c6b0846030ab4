# Shell functions shared by the scripts that train on a lent GPU machine from a bundle packed here
# (tools/remote_gpu/bundle.py): tools/remote_gpu/base.sh (the shipped base model) and
# tools/remote_gpu/ablation.sh (metadata ablation arms + a larger variant). Source it; do not run it.
# The machine has no dataset, no embedded MiniLM and no network; wheels it lacks (diffusers) are installed from
# .whl/ when that folder exists.

# remote_install: install the wheels from .whl/ (when present); environment for offline runs; $RSGEN_REMOTE;
# prints the GPU
remote_install() {
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
  else
    export PYTHONPATH=$PWD
  fi
  export RSGEN_REMOTE=/tmp/rsgen-remote
  mkdir -p "$RSGEN_REMOTE"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
}

# remote_setup BUNDLE_TAR_GZ: remote_install, then unpack the bundle into $RSGEN_REMOTE (latent-cache/,
# text-encoder/, and vae/ when the bundle holds an autoencoder's decoder: then $RSGEN_VAE names it)
remote_setup() {
  remote_install
  tar xzf "$1" -C "$RSGEN_REMOTE"
  python3 -m tools.remote_gpu.bundle unpack "$RSGEN_REMOTE/bundle" "$RSGEN_REMOTE" | tail -n 4
  if [ -d "$RSGEN_REMOTE/vae" ]; then export RSGEN_VAE=$RSGEN_REMOTE/vae; fi
}

# remote_train RUN_DIR MINUTES [KEY=VALUE ...]: train the base model (config `default`) from the unpacked bundle,
# with the bundle's autoencoder ($RSGEN_VAE) or else the shipped one;
# MINUTES may be "" (no time limit: max_steps only). Log: RUN_DIR.log, copied to RUN_DIR/train.log.
remote_train() {
  local run=$1 minutes=$2
  shift 2
  local limit=()
  [ -n "$minutes" ] && limit=(--max-minutes "$minutes")
  mkdir -p "$(dirname "$run")"
  python3 -m rsgen train --config default --output-dir "$run" "${limit[@]}" --no-progress \
    --set data.cache_only=true data.cache_dir="$RSGEN_REMOTE/latent-cache" text.encoder="$RSGEN_REMOTE/text-encoder" \
    vae.pretrained="${RSGEN_VAE:-assets/default-model}" "$@" >>"$run.log" 2>&1
  local rc=$?
  cp "$run.log" "$run/train.log" 2>/dev/null || true
  return $rc
}

# remote_last_step RUN_DIR: the step of the newest checkpoint (0 if none)
remote_last_step() {
  local last
  last=$(ls -1 "$1/checkpoints" 2>/dev/null | sed -n 's/^step-0*\([0-9][0-9]*\)$/\1/p' | sort -n | tail -n 1)
  echo "${last:-0}"
}

# remote_generate MODEL_DIR OUT_DIR [KEY=VALUE ...]: `rsgen evaluate --generate-only` (OUT_DIR/generated; log:
# OUT_DIR.generate.log)
remote_generate() {
  local model=$1 out=$2
  shift 2
  python3 -m rsgen evaluate --model "$model" --out "$out" --generate-only "$@" >"$out.generate.log" 2>&1
  local rc=$?
  tail -n 2 "$out.generate.log"
  return $rc
}

# remote_export_run RUN_DIR DEST_DIR [keep-vae]: the run without checkpoints: model/ in float16 without the text
# encoder and (unless keep-vae: an autoencoder run) without vae/, samples/, TensorBoard logs, config.yaml,
# train.log
remote_export_run() {
  local run=$1 dest=$2 keep=${3:-}
  mkdir -p "$dest"
  cp -r "$run/model" "$dest/model"
  python3 - "$dest/model" <<'PY'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
for f in Path(sys.argv[1]).rglob("*.safetensors"):  # float16 for the trip back
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(f)).items()}, str(f))
PY
  rm -rf "$dest/model/text_encoder" "$dest/model/tokenizer"
  [ "$keep" = keep-vae ] || rm -rf "$dest/model/vae"
  remote_export_logs "$run" "$dest"
}

# remote_export_logs RUN_DIR DEST_DIR: samples/, TensorBoard logs, config.yaml, train.log (no weights)
remote_export_logs() {
  local run=$1 dest=$2
  mkdir -p "$dest"
  cp -r "$run/samples" "$run/train.log" "$run/config.yaml" "$dest/" 2>/dev/null || true
  cp -r "$run"/events* "$run"/train "$dest/" 2>/dev/null || true
}

# remote_pack RESULT_DIR NAME PARENT PATH...: tar PATHs (relative to PARENT) into RESULT_DIR/NAME.tar.* parts of
# 15 MB (the machine returns files of at most 16 MiB; join here with `cat NAME.tar.* | tar x`)
remote_pack() {
  local result=$1 name=$2 parent=$3
  shift 3
  mkdir -p "$result"
  local keep=() p
  for p in "$@"; do [ -e "$parent/$p" ] && keep+=("$p"); done  # what exists: a failed step loses only itself
  tar cf - -C "$parent" "${keep[@]}" | split -b 15000000 - "$result/$name.tar."
}
