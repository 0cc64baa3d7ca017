#!/usr/bin/env bash
# DEER stage 1 on MIMIC-CXR (DEER Sec. 4): SFT of Qwen2.5-VL-3B-Instruct with the language model frozen; only the
# vision encoder and the vision-language projector train (verl_ext/freeze.py), lr 1e-5, batch size 64.
#
#   MODEL_PATH=<Qwen2.5-VL-3B-Instruct dir> DATA_DIR=<data_prep output> bash recipes/mimic_deer_sft.sh [--dry-run] [overrides]
#
# Data protocol: DEER trains and tests MIMIC-CXR on R2Gen's split (270,790 / 2,130 / 3,858 images, one image per
# sample, R2Gen's report as the target): build it with `data_prep/mimic.py --split-file <R2Gen annotation.json>`.
# Without --split-file, data_prep writes the official split (one sample per study), which is not DEER's protocol.
# Settings: verl_ext/config/editgrpo_sft.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
EXPERIMENT_NAME="${EXPERIMENT_NAME:-mimic_deer_sft}"
SFT_ARGS=(
  model.external_lib=verl_ext.freeze
  +model.override_config.verl_ext_freeze=language_model
  optim.lr=1e-5
  data.train_batch_size=64
)
run_sft "$@"
