#!/usr/bin/env bash
# EditGRPO (norm) on PadChest-GR (paper Fig. 2 / Table 5).
# EditGRPO with std-normalised group advantages (paper Table 1 "norm"); everything else as EditGRPO.
# Start from the SFT epoch-2 checkpoint (paper Table 5: SFT(ep2) + RL); train to one epoch (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/padchest_gr_editgrpo_norm.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset padchest_gr
VARIANT=editgrpo_norm
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
  editgrpo.scheme=paper
  editgrpo.level=sentence
  algorithm.adv_estimator=grpo
  algorithm.norm_adv_by_std_in_grpo=true
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
)
run_rl "$@"
