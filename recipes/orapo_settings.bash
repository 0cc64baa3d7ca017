# Shared by recipes/*_orapo.sh (source it; then call orapo_variant_args after use_dataset): OraPO + FactS (arXiv 2509.18600),
# single-stage RL from the base instruct model, on a seeded subset of the training set.
#
# Environment (besides common.sh's):
#   MODEL_PATH      the base Qwen2.5-VL-3B-Instruct directory (OraPO trains RL-only, no SFT stage)
#   TRAIN_SUBSET    training studies drawn (default 1000: the paper's ~1K; its ablation also uses 400); 0 = all
#   SUBSET_SEED     seed of that draw (default 1); verl's RLHFDataset draws it (data.train_max_samples, data.seed)
#                   before dropping over-long prompts, so a few of the drawn studies may be filtered out
#   ORAPO_K         sampled rollouts per prompt (default 8, reconstructed); the group is K + 1 with the oracle
#   ORAPO_EPOCHS    passes over the subset (default 5, reconstructed: the paper's schedule is not available)
#   FACTS_BACKEND   facts (default: RaTE entities vs CheXbert labels) | facts_radgraph (RadGraph observations) |
#                   facts_llm (needs FACTS_MODEL, a local instruction-model directory run in-process by vLLM)
#   ORAPO_NEGATIVES rejected responses of the DPO branch: zero_reward (default) | all | below_mean
#
# Where every value of an OraPO run comes from ("paper": the abstract, shared/papers/orapo_abstract.txt; "notes": the
# two paper notes of shared/reference/peers.md §1.3; "EditGRPO": inherited from verl_ext/config/editgrpo_trainer.yaml,
# i.e. the EditGRPO authors' settings, as neither OraPO source gives a value; "ours": chosen here):
#   model Qwen2.5-VL-3B-Instruct, RL only, ~1K studies ........................ paper / notes
#   w_min 0.05, w_max 0.15, gamma 2, EMA alpha 0.5, Dr. GRPO branch, LN-DPO ... notes (verl_ext/algorithms/orapo.py)
#   oracle = reference report as chosen, negatives=zero_reward ................ paper ("failed explorations") / notes
#   FactS beta 2 (notes: beta > 1), facts backend (paper: GPT-4.1) ............ ours (verl_ext/reward/facts.py)
#   K = 8 rollouts, 5 epochs, LN-DPO beta 0.1, grpo_token_norm 4096 ........... ours (OraPO gives none)
#   lr 1e-6 (AdamW, wd 0.01, constant), clip 0.2, grad clip 1.0 ................ EditGRPO
#   KL: use_kl_loss, low_var_kl, coef 0.01 (notes: "clipped ratio + KL", no coef) EditGRPO
#   batch 32 prompts (x K+1 rows), mini-batch 32, one PPO epoch ............... EditGRPO
#   max_prompt_length 4096, max_response_length 4096, temperature 1.0 ........ EditGRPO
#   vision tower frozen (verl_ext_freeze=vision_tower) ........................ EditGRPO (the authors' freeze)
#   4 GPUs (the paper: 4 x A10) ............................................... paper (common.sh)

orapo_variant_args() {
  local k="${ORAPO_K:-8}"
  local backend="${FACTS_BACKEND:-facts}"
  local subset="${TRAIN_SUBSET:-1000}"
  if [[ "$subset" == "0" ]]; then subset=-1; fi
  TOTAL_STEPS=  # the length is set in epochs over the subset
  VARIANT_ARGS=(
    actor_rollout_ref.rollout.agent.agent_loop_manager_class=verl_ext.rollout.oracle_worker.OraPOAgentLoopManagerTQ
    trainer.v1.trainer_mode=orapo
    "actor_rollout_ref.rollout.n=$((k + 1))"
    editgrpo.scheme=none
    algorithm.adv_estimator=dr_grpo
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-sum-norm
    "~reward.reward_kwargs.components"
    "+reward.reward_kwargs.components={$backend:1.0}"
    "+orapo.negatives=${ORAPO_NEGATIVES:-zero_reward}"
    "data.train_max_samples=$subset"
    "data.seed=${SUBSET_SEED:-1}"
    data.shuffle=true
    "trainer.total_epochs=${ORAPO_EPOCHS:-5}"
  )
  if [[ "$backend" == "facts_llm" ]]; then
    VARIANT_ARGS+=("+reward.reward_kwargs.facts_model=${FACTS_MODEL:-}")
  fi
}
