#!/usr/bin/env bash
# DEER on CheXpert Plus (DEER Table 2): DDSampling subset (20 %, Sec. 3.2) + gradient-based DiTPO (Eq. 9-12, beta = 1) + the two-phase
# reward (F1, then F1 + 0.25 BLEU-2). Build the subset first:
#   python -m verl_ext.selection.ddsampling --model <sft hf dir> --data $DATA_DIR/<dataset> --out $DDS_DIR ...
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> [DDS_DIR=<ddsampling output>] \
#     bash recipes/chexpert_plus_deer.sh [--dry-run] [overrides]
#
# Data protocol: DEER follows MambaXray-VL's CheXpert Plus split (40,463 / 5,780 / 11,562, findings as the target):
# build it with `data_prep/chexpert_plus.py --split-file <their annotation.json>`; without it, data_prep writes the
# release's train/valid split, which is not DEER's protocol.
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset chexpert_plus
use_ddsampling_subset
VARIANT=deer
deer_rl_args gradient
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.beta=1.0)
run_rl "$@"
