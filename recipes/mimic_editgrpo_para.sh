#!/usr/bin/env bash
# EditGRPO (para) on MIMIC-CXR (paper Table 1).
# Report-level ablation (paper Table 1 "para"): instead of sentence edits, one response per prompt is replaced
# by the whole reference report; Dr. GRPO advantages.
# Start from the SFT epoch-2 checkpoint (paper Table 1: SFT(ep2) + RL); train to step 1000 (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/mimic_editgrpo_para.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset mimic
VARIANT=editgrpo_para
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
  editgrpo.scheme=paper
  editgrpo.level=paragraph
  algorithm.adv_estimator=dr_grpo
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
)
run_rl "$@"
