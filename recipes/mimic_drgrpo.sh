#!/usr/bin/env bash
# Dr. GRPO baseline on MIMIC-CXR (paper Table 1).
# All G = 10 responses are sampled (no edit step); Dr. GRPO: mean-centred advantages without the std, and a
# constant length normaliser in the loss.
# Start from the SFT epoch-2 checkpoint (paper Table 1: SFT(ep2) + RL); train to step 1000 (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/mimic_drgrpo.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
VARIANT=drgrpo
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=null
  editgrpo.scheme=none
  algorithm.adv_estimator=dr_grpo
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
)
run_rl "$@"
