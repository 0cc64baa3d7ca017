#!/usr/bin/env bash
# DiTPO with rule-based (TF-IDF) token weights on CheXpert Plus (DEER Table 2) (Table 4 "DiTPO Rule"): all RL data,
# w = 1 + alpha * TF-IDF over the group (Eq. 7-8, alpha = 4), two-phase reward.
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/chexpert_plus_ditpo_rule.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset chexpert_plus
VARIANT=ditpo_rule
deer_rl_args tfidf
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.alpha=4.0)
run_rl "$@"
