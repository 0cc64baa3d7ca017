#!/usr/bin/env bash
# GRPO baseline on MIMIC-CXR (paper Table 1).
# All G = 10 responses are sampled (no edit step); std-normalised group advantages (paper Eq. 1) and the
# per-response token mean of paper App. B Eq. 2.
# Start from the SFT epoch-2 checkpoint (paper Table 1: SFT(ep2) + RL); train to step 1000 (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/mimic_grpo.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
VARIANT=grpo
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=null
  editgrpo.scheme=none
  algorithm.adv_estimator=grpo
  algorithm.norm_adv_by_std_in_grpo=true
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
)
run_rl "$@"
