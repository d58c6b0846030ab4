#!/usr/bin/env bash
# One lent-GPU call for issue 8: the metadata ablation at the GPU budget (three arms: no metadata, DiffusionSat-
# style, rsgen; identical config, seed and batches; only metadata.style differs) and a larger UNet variant, all
# trained at once on the one GPU from a bundle packed here, then their evaluation sets generated there.
#
#   bash tools/remote_gpu/ablation.sh gpu/bundle.tar.gz RUNS_DIR MINUTES RESULT_DIR [KEY=VALUE ...]
#
# The arms train side by side for MINUTES; the arms that stopped behind then resume from their last checkpoint
# to the furthest arm's step, so every arm ends at exactly the same step (the LR schedule is constant after
# warm-up). KEY=VALUE: overrides for every run (batch size, LR, mixed precision...). Environment:
#   LARGE_UNET  overrides of the larger variant (default: channels 96/192/384, 2 layers per block; 56M params)
#   ARM_IMAGES  images per arm (class prompts at 10 / 20 / 40 m, 20 steps, guidance 5: configs/eval/ablation.yaml)
#   TOPUP_MINUTES  time limit of the catch-up
#   LARGE_IMAGES / LARGE_GSD_IMAGES  the larger variant's evaluation sets (2,000 / 300)
#   GEN_EXTRA   extra generation overrides for every set (e.g. num_inference_steps=2 for a dry run on CPU)
#   ARM_SET_<style>  overrides of one arm only, e.g. ARM_SET_fourier=metadata.local_season=true (a switch that
#               only rsgen's embedding has; the ablation config's arm_overrides must then say the same)
# Results in RESULT_DIR (join with `cat NAME.tar.* | tar x`; place ablation/<style>/generated under the
# ablation's output_dir and run eval/metadata_ablation.py there, which evaluates sets it finds without training):
#   ablation.tar.*: ablation/<style>/{generated,train.log,samples,config.yaml}
#   large.tar.*:    large-eval-10m/generated (2,000 class prompts at 10 m), large-eval-gsd/generated (300 at
#                   10 / 20 / 40 m) and the run's logs and samples (no weights: 56M parameters do not fit the return)
#   logs.tar.*:     every log, written as the call goes, so a call stopped at its limit still returns them
bundle=$1 runs=$2 minutes=$3 result=$4
shift 4
source "$(dirname "$0")/lib.sh"
large=(${LARGE_UNET:-"unet.block_out_channels=[96,192,384]" unet.layers_per_block=2})
styles=(none diffusionsat fourier)
mkdir -p "$runs/ablation" "$result"
arm_set() { local v="ARM_SET_$1"; echo "${!v:-}"; }  # one arm's own overrides (word-split on purpose)
save_logs() { (cd "$runs" && tar cf "$result/logs.tar" $(find . -name '*.log')) 2>/dev/null || true; }
remote_setup "$bundle" || exit 1
t0=$SECONDS
for style in "${styles[@]}"; do
  remote_train "$runs/ablation/$style" "$minutes" "$@" metadata.style="$style" $(arm_set "$style") &
done
remote_train "$runs/large" "$minutes" "$@" "${large[@]}" &
wait
echo "trained side by side in $((SECONDS - t0)) s"; save_logs
target=0
for style in "${styles[@]}"; do
  s=$(remote_last_step "$runs/ablation/$style"); echo "arm $style: step $s"
  [ "$s" -gt "$target" ] && target=$s
done
for style in "${styles[@]}"; do  # catch up to the furthest arm
  if [ "$(remote_last_step "$runs/ablation/$style")" -lt "$target" ]; then
    remote_train "$runs/ablation/$style" "${TOPUP_MINUTES:-1.5}" "$@" metadata.style="$style" $(arm_set "$style") max_steps="$target" &
  fi
done
wait
for style in "${styles[@]}"; do echo "arm $style: final step $(remote_last_step "$runs/ablation/$style")"; done
echo "large: step $(remote_last_step "$runs/large")"; save_logs
for style in "${styles[@]}"; do
  remote_generate "$runs/ablation/$style/model" "$runs/ablation/$style" num_images="${ARM_IMAGES:-1000}" \
    "gsd_choices=[10,20,40]" num_inference_steps=20 guidance_scale=5.0 batch_size=100 seed=0 $GEN_EXTRA &
done
remote_generate "$runs/large/model" "$runs/large-eval-10m" batch_size=100 num_images="${LARGE_IMAGES:-2000}" $GEN_EXTRA &
remote_generate "$runs/large/model" "$runs/large-eval-gsd" batch_size=100 num_images="${LARGE_GSD_IMAGES:-300}" \
  "gsd_choices=[10,20,40]" seed=100000 $GEN_EXTRA &
wait
save_logs
remote_pack "$result" ablation "$runs" ablation/{none,diffusionsat,fourier}/{generated,samples,config.yaml,train.log}
remote_export_logs "$runs/large" "$runs/large-logs"
remote_pack "$result" large "$runs" large-eval-10m/generated large-eval-gsd/generated large-logs
echo "done in $((SECONDS - t0)) s"; ls -la "$result"
