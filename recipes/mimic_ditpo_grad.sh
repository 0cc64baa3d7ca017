#!/usr/bin/env bash
# DiTPO with gradient-based token weights on MIMIC-CXR (DEER Table 1) (Table 4 "DiTPO Grad"): all RL data, CheXbert saliency
# weights w = 1 + beta * s (Eq. 9-12, beta = 1) computed in the reward path, two-phase reward.
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/mimic_ditpo_grad.sh [--dry-run] [overrides]
#
# Data protocol: DEER trains and tests MIMIC-CXR on R2Gen's split (270,790 / 2,130 / 3,858 images, one image per
# sample, R2Gen's report as the target): build it with `data_prep/mimic.py --split-file <R2Gen annotation.json>`.
# Without --split-file, data_prep writes the official split (one sample per study), which is not DEER's protocol.
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
VARIANT=ditpo_grad
deer_rl_args gradient
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.beta=1.0)
run_rl "$@"
