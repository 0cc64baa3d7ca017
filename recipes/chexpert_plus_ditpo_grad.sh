#!/usr/bin/env bash
# DiTPO with gradient-based token weights on CheXpert Plus (DEER Table 2) (Table 4 "DiTPO Grad"): all RL data, CheXbert saliency
# weights w = 1 + beta * s (Eq. 9-12, beta = 1) computed in the reward path, two-phase reward.
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/chexpert_plus_ditpo_grad.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset chexpert_plus
VARIANT=ditpo_grad
deer_rl_args gradient
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.beta=1.0)
run_rl "$@"
