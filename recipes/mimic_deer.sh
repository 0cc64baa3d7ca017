#!/usr/bin/env bash
# DEER on MIMIC-CXR (DEER Table 1): DDSampling subset (20 %, Sec. 3.2) + gradient-based DiTPO (Eq. 9-12, beta = 1) + the two-phase
# reward (F1, then F1 + 0.25 BLEU-2). Build the subset first:
#   python -m verl_ext.selection.ddsampling --model <sft hf dir> --data $DATA_DIR/<dataset> --out $DDS_DIR ...
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> [DDS_DIR=<ddsampling output>] \
#     bash recipes/mimic_deer.sh [--dry-run] [overrides]
#
# Data protocol: DEER trains and tests MIMIC-CXR on R2Gen's split (270,790 / 2,130 / 3,858 images, one image per
# sample, R2Gen's report as the target): build it with `data_prep/mimic.py --split-file <R2Gen annotation.json>`.
# Without --split-file, data_prep writes the official split (one sample per study), which is not DEER's protocol.
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
use_ddsampling_subset
VARIANT=deer
deer_rl_args gradient
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.beta=1.0)
run_rl "$@"
