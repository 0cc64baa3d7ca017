#!/usr/bin/env bash
# DEER stage 1 on CheXpert Plus (DEER Sec. 4): SFT of Qwen2.5-VL-3B-Instruct with the language model frozen; only the
# vision encoder and the vision-language projector train (verl_ext/freeze.py), lr 1e-5, batch size 64.
#
#   MODEL_PATH=<Qwen2.5-VL-3B-Instruct dir> DATA_DIR=<data_prep output> bash recipes/chexpert_plus_deer_sft.sh [--dry-run] [overrides]
#
# Data protocol: DEER follows MambaXray-VL's CheXpert Plus split (40,463 / 5,780 / 11,562, findings as the target):
# build it with `data_prep/chexpert_plus.py --split-file <their annotation.json>`; without it, data_prep writes the
# release's train/valid split, which is not DEER's protocol.
# Settings: verl_ext/config/editgrpo_sft.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset chexpert_plus
EXPERIMENT_NAME="${EXPERIMENT_NAME:-chexpert_plus_deer_sft}"
SFT_ARGS=(
  model.external_lib=verl_ext.freeze
  +model.override_config.verl_ext_freeze=language_model
  optim.lr=1e-5
  data.train_batch_size=64
)
run_sft "$@"
