#!/usr/bin/env bash
# Train autoencoder arms side by side on a lent GPU machine that has no dataset and no rasterio, from an image
# pack made here (tools/remote_gpu/bundle.py pack-images: each record decoded as the training dataset does,
# stored as PNG / its own JPEG bytes, with a relative manifest):
#
#   python -m tools.remote_gpu.bundle pack-images data/curated/manifest.jsonl gpu/vae-images --max-mb 44 \
#       --share eurosat_train=0.6 naip=0.3 landsat=0.1
#   tar czf gpu/vae-images.tar.gz -C gpu vae-images
#   bash tools/remote_gpu/vae.sh gpu/vae-images.tar.gz RESULT_DIR MINUTES CONFIG 'NAME:KEY=VALUE ...' ...   # there
#
# Each arm NAME trains `rsgen train --config CONFIG` with its KEY=VALUE overrides for MINUTES (all arms at once:
# one small autoencoder leaves most of an H100 idle). Results, in RESULT_DIR, 15 MB parts (join with
# `cat vae.tar.* | tar x`): vae.tar.* holds NAME-export/ per arm: model/ (EMA weights, float16), samples/,
# TensorBoard logs, config.yaml, train.log.
set -euo pipefail
pack=$1 result=$2 minutes=$3 config=$4
shift 4
source "$(dirname "$0")/lib.sh"
remote_install
tar xzf "$pack" -C "$RSGEN_REMOTE"
manifest=$(ls "$RSGEN_REMOTE"/*/manifest.jsonl | head -n 1)
set -f  # the overrides below may hold [..] lists: no globbing
runs=$RSGEN_REMOTE/vae-runs
mkdir -p "$runs"
names=()
for arm in "$@"; do
  name=${arm%%:*} sets=${arm#*:}
  names+=("$name")
  # shellcheck disable=SC2086  # the overrides are words
  python3 -m rsgen train --config "$config" --manifest "$manifest" --output-dir "$runs/$name" \
    --max-minutes "$minutes" --no-progress ${sets:+--set $sets} >"$runs/$name.log" 2>&1 &
done
wait || true
exports=()
for name in "${names[@]}"; do
  cp "$runs/$name.log" "$runs/$name/train.log" 2>/dev/null || true
  tail -n 3 "$runs/$name.log"
  [ -d "$runs/$name/model" ] || continue
  remote_export_run "$runs/$name" "$runs/$name-export" keep-vae
  exports+=("$name-export")
done
remote_pack "$result" vae "$runs" "${exports[@]}"
ls -la "$result"
