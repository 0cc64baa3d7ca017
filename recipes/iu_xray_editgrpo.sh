#!/usr/bin/env bash
# EditGRPO on IU-Xray (paper Fig. 2 / Table 5).
# G/2 = 5 sampled responses per prompt plus 5 sentence-level edited copies (paper Sec. 2, tau = 0.6, one rule
# per response), Dr. GRPO advantages over all 10.
# Start from the SFT epoch-1 checkpoint (paper Table 5: SFT(ep1) + RL); train to one epoch (paper Sec. 3.1).
#
#   MODEL_PATH=<sft checkpoint>/huggingface DATA_DIR=<data_prep output> bash recipes/iu_xray_editgrpo.sh [--dry-run] [overrides]
#
# Settings shared by every recipe: verl_ext/config/editgrpo_trainer.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset iu_xray
VARIANT=editgrpo
VARIANT_ARGS=(
  actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.EditAgentLoopManagerTQ
  editgrpo.scheme=paper
  editgrpo.level=sentence
  algorithm.adv_estimator=dr_grpo
  actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
)
run_rl "$@"
