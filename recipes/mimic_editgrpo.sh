#!/usr/bin/env bash
# EditGRPO on MIMIC-CXR (paper Table 1).
# G/2 = 5 sampled responses per prompt plus 5 sentence-level edited copies (paper Sec. 2, tau = 0.6, one rule
# per response), Dr. GRPO advantages over all 10.
# Start from the SFT epoch-2 checkpoint (paper Table 1: SFT(ep2) + RL); train to step 1000 (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/mimic_editgrpo.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
VARIANT=editgrpo
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
  editgrpo.scheme=paper
  editgrpo.level=sentence
  algorithm.adv_estimator=dr_grpo
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
)
run_rl "$@"
