#!/usr/bin/env bash
# DiTPO with rule-based (TF-IDF) token weights on CheXpert Plus (DEER Table 2) (Table 4 "DiTPO Rule"): all RL data,
# w = 1 + alpha * TF-IDF over the group (Eq. 7-8, alpha = 4), two-phase reward.
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/chexpert_plus_ditpo_rule.sh [--dry-run] [overrides]
#
# Data protocol: DEER follows MambaXray-VL's CheXpert Plus split (40,463 / 5,780 / 11,562, findings as the target):
# build it with `data_prep/chexpert_plus.py --split-file <their annotation.json>`; without it, data_prep writes the
# release's train/valid split, which is not DEER's protocol.
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset chexpert_plus
VARIANT=ditpo_rule
deer_rl_args tfidf
VARIANT_ARGS=("${DEER_ARGS[@]}" ditpo.alpha=4.0)
run_rl "$@"
