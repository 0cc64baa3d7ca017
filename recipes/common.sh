# Shared by recipes/*.sh (source it; do not run it). Each recipe calls `use_dataset <name>`, sets VARIANT and
# VARIANT_ARGS (RL) and calls `run_rl "$@"`, or calls `run_sft "$@"`.
#
# Environment (all optional except MODEL_PATH):
#   MODEL_PATH      local model directory. RL: the stage-1 SFT checkpoint's Hugging Face directory
#                   (<sft ckpt dir>/global_step_N/huggingface); SFT: Qwen2.5-VL-3B-Instruct.
#   DATA_DIR        data_prep output root (default: <repo>/data): `data_prep/<dataset>.py --out $DATA_DIR/<dataset>`
#                   writes shards $DATA_DIR/<dataset>/<split>-NNNNN.parquet; all shards of a split are used
#   TRAIN_FILES / VAL_FILES   override those (Hydra list syntax for several files: '[a.parquet,b.parquet]')
#   N_GPUS          GPUs per node (default: the paper's count for the dataset)
#   NNODES          nodes (default 1). RL with NNODES > 1: start a Ray cluster first (`ray start --head` on this
#                   node, `ray start --address=<head>:6379` on the others) and run the recipe on the head node only;
#                   it connects with ray_init.address=$RAY_ADDRESS (default auto), as verl's multi-node recipes do.
#                   SFT with NNODES > 1: run the recipe on every node with NODE_RANK, MASTER_ADDR, MASTER_PORT set.
#   WANDB_PROJECT   W&B project (default editgrpo, SFT: editgrpo-sft); EXPERIMENT_NAME (default <dataset>_<variant>)
#   CKPT_DIR        checkpoint root (default <repo>/checkpoints). A run writes everything under its run directory
#                   $CKPT_DIR/<project>/<experiment>: verl's checkpoints, Hydra's hydra/<date_time>/ and W&B's wandb/
#                   (WANDB_DIR, default the run directory); WANDB_MODE=offline works as usual (--cpu: the default)
#   STOP_FILE       RL: the file this script creates on SIGTERM/SIGUSR1 to stop the run after the current step and its
#                   checkpoint (default $CKPT_DIR/<project>/<experiment>/STOP; README "Long runs on a cluster")
#   Scorer and analyzer models (RL; local paths, never hub ids): RATE_NER_PATH, BIOLORD_PATH, CHEXBERT_CHECKPOINT,
#                   CHEXBERT_BERT_PATH, RADGRAPH_CACHE; with MODELS_DIR set they default to $MODELS_DIR/RaTE-NER-Deberta,
#                   BioLORD-2023-C, chexbert.pth, bert-base-uncased, radgraph (see verl_ext/clinical/models.py).
#   PYTHON          interpreter (default python3)
#   ATTN_IMPL       attention of the trained model: auto (default: flash_attention_2 when flash-attn is installed, else
#                   sdpa), flash_attention_2, sdpa or eager. Without flash-attn verl's padding-free path cannot run
#                   (its Qwen2.5-VL attention patch calls flash_attn_varlen_func), so sdpa also sets
#                   use_remove_padding=False (padded micro-batches: slower, more memory; see README "Install").
# Arguments: --dry-run checks the composed config without a GPU (python -m verl_ext.config.dry_run) and exits;
# --preflight runs the pre-flight check of the composed config on this machine (python -m verl_ext.preflight:
# GPUs, versions, models, data, a vLLM generation, a reward batch, the edit step, memory) and exits;
# --cpu (RL) runs the recipe in the CPU debug profile (verl_ext/cpu: VERL_PLATFORM=cpu and the overrides of
# `python -m verl_ext.cpu.profile`; CPU_PROCS training processes, default 1) -- for debugging a recipe with a tiny
# model on a laptop, e.g. MODEL_PATH=<tiny model> bash recipes/iu_xray_editgrpo.sh --cpu data.train_batch_size=2 ...;
# every other argument is passed to Hydra as an override (they come last, so they win).
# VERL_EXT_PRINT_CMD=1 prints the command (NUL-separated arguments) instead of running it (used by the tests).

set -euo pipefail

RECIPES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$RECIPES_DIR")"
CONFIG_DIR="$REPO_DIR/verl_ext/config"
PYTHON="${PYTHON:-python3}"
DATA_DIR="${DATA_DIR:-$REPO_DIR/data}"
CKPT_DIR="${CKPT_DIR:-$REPO_DIR/checkpoints}"
NNODES="${NNODES:-1}"

# Per-dataset settings: data_prep directory, images per prompt (authors' limit_images), training length and GPUs
# (paper Sec. 3.1 and App. E: MIMIC-CXR step 1000, ReXGradient step 600, the small sets one epoch; 4 / 2 GPUs).
use_dataset() {
  DATASET="$1"
  case "$DATASET" in
    mimic)       DATA_NAME=mimic_cxr;   LIMIT_IMAGES=6; TOTAL_STEPS=1000; DEFAULT_GPUS=4 ;;
    rexgradient) DATA_NAME=rexgradient; LIMIT_IMAGES=6; TOTAL_STEPS=600;  DEFAULT_GPUS=4 ;;
    iu_xray)     DATA_NAME=iu_xray;     LIMIT_IMAGES=2; TOTAL_STEPS=;     DEFAULT_GPUS=2 ;;
    padchest_gr) DATA_NAME=padchest_gr; LIMIT_IMAGES=2; TOTAL_STEPS=;     DEFAULT_GPUS=2 ;;
    # OraPO (arXiv 2509.18600): CheXpert Plus, 4 GPUs (the paper's 4 x A10).
    chexpert_plus) DATA_NAME=chexpert_plus; LIMIT_IMAGES=2; TOTAL_STEPS=;   DEFAULT_GPUS=4 ;;
    *) echo "common.sh: unknown dataset '$DATASET' (mimic | rexgradient | iu_xray | padchest_gr | chexpert_plus)" >&2
       exit 2 ;;
  esac
  N_GPUS="${N_GPUS:-$DEFAULT_GPUS}"
  _TRAIN_FILES_GIVEN="${TRAIN_FILES:+1}"
  TRAIN_FILES="${TRAIN_FILES:-$(_split_files train)}"
  # The authors validate on the test split (before training only); point VAL_FILES elsewhere if you have a val split.
  VAL_FILES="${VAL_FILES:-$(_split_files test)}"
}

# The data_prep shards of one split as a Hydra list; <split>.parquet when no shard exists yet (dry runs before prep).
_split_files() {
  _dir_split_files "$DATA_DIR/$DATA_NAME" "$1"
}

_dir_split_files() {
  local shards=("$1/$2"-[0-9]*.parquet)
  if [[ -e "${shards[0]}" ]]; then
    local IFS=,
    echo "[${shards[*]}]"
  else
    echo "$1/$2.parquet"
  fi
}

# DEER: train on the DDSampling subset (python -m verl_ext.selection.ddsampling --out $DDS_DIR ...), default
# $DATA_DIR/<dataset>_ddsampling; an explicit TRAIN_FILES wins.
use_ddsampling_subset() {
  DDS_DIR="${DDS_DIR:-$DATA_DIR/${DATA_NAME}_ddsampling}"
  if [[ -z "${_TRAIN_FILES_GIVEN:-}" ]]; then TRAIN_FILES="$(_dir_split_files "$DDS_DIR" train)"; fi
}

# DEER's RL settings (Sec. 3.1 and 4): GRPO advantages (Eq. 2, / std), 8 rollouts, 64 prompts per step, reward
# F1 (PromptMRG example-based CheXbert F1), then F1 + 0.25 BLEU-2 (Sec. 4 "two-phase reward strategy"; the paper
# gives no switch point: ours is DEER_BLEU_SWITCH=0.5, the share of the run's steps spent on F1 alone, so both
# phases happen for any data size; DEER_BLEU_SWITCH_STEP=<step> switches at a fixed step instead, refused at start-up
# when the run is shorter), no edit step, one pass over the (sub)set (DEER gives no step count, so the EditGRPO step
# caps of use_dataset are dropped), the whole model trains (DEER Sec. 4: "In RL stage, we unfreeze and optimize the
# entire model"; editgrpo_trainer.yaml freezes the vision tower as the EditGRPO authors did).
# Usage: deer_rl_args <weighting> -> DEER_ARGS.
deer_rl_args() {
  local weighting="$1"
  TOTAL_STEPS=
  local unit=share switch="${DEER_BLEU_SWITCH:-0.5}"
  if [[ -n "${DEER_BLEU_SWITCH_STEP:-}" ]]; then unit=step; switch="$DEER_BLEU_SWITCH_STEP"; fi
  DEER_ARGS=(
    actor_rollout_ref.rollout.agent.agent_loop_manager_class=null
    editgrpo.scheme=none
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=true
    actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean
    actor_rollout_ref.rollout.n=8
    data.train_batch_size=64
    actor_rollout_ref.actor.ppo_mini_batch_size=64
    actor_rollout_ref.actor.optim.lr=1e-6
    "~reward.reward_kwargs.components"
    "+reward.reward_kwargs.components={chexbert_example_f1:1.0,bleu2:0.0}"
    "+reward.reward_kwargs.component_schedules={bleu2:[[0,0.0],[$switch,0.25]]}"
    "+reward.reward_kwargs.schedule_unit=$unit"
    +reward.reward_kwargs.bleu_n=2
    "ditpo.weighting=$weighting"
    actor_rollout_ref.model.override_config.verl_ext_freeze=none
  )
}

# Splits "$@" into DRY_RUN (0/1), PREFLIGHT (0/1), CPU (0/1) and USER_ARGS (the Hydra overrides).
_parse_args() {
  DRY_RUN=0
  PREFLIGHT=0
  CPU=0
  USER_ARGS=()
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      --preflight) PREFLIGHT=1 ;;
      --cpu) CPU=1 ;;
      *) USER_ARGS+=("$arg") ;;
    esac
  done
}

# ATTN_OVERRIDES for the model config at $1 (actor_rollout_ref.model | model), per ATTN_IMPL (see the header).
_attn_overrides() {
  ATTN_OVERRIDES=()
  local impl="${ATTN_IMPL:-auto}"
  if [[ "$impl" == "auto" ]]; then
    if "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("flash_attn") is None)' 2>/dev/null
    then impl=flash_attention_2; else impl=sdpa; fi
    if [[ "$impl" == "sdpa" ]]; then
      echo "common.sh: flash-attn is not installed: using attn_implementation=sdpa with use_remove_padding=False" >&2
    fi
  fi
  case "$impl" in
    flash_attention_2) ;;
    sdpa|eager)
      ATTN_OVERRIDES=("+$1.override_config.attn_implementation=$impl" "$1.use_remove_padding=False")
      if [[ "$1" == "model" ]]; then ATTN_OVERRIDES+=("data.pad_mode=right"); fi ;;
    *) echo "common.sh: ATTN_IMPL=$impl: expected auto, flash_attention_2, sdpa or eager" >&2; exit 2 ;;
  esac
}

_launch() {
  if [[ "${VERL_EXT_PRINT_CMD:-0}" == "1" ]]; then
    printf '%s\0' "$@"
    return 0
  fi
  printf '+'; printf ' %q' "$@"; printf '\n'
  exec "$@"
}

# RUN_DIR=$1 and RUN_DIR_OVERRIDES: everything a run writes goes under its checkpoint directory, not the current one:
# Hydra's run directory (verl's entry points default to ./outputs/<date>/<time>) and W&B's files (WANDB_DIR, default
# ./wandb; forwarded to Ray workers on other nodes, where the tracker may run).
_run_dir_setup() {
  RUN_DIR="$1"
  export WANDB_DIR="${WANDB_DIR:-$RUN_DIR}"
  RUN_DIR_OVERRIDES=(
    "hydra.run.dir=$RUN_DIR/hydra/\${now:%Y-%m-%d_%H-%M-%S}"
    "+ray_kwargs.ray_init.runtime_env.env_vars.WANDB_DIR=$WANDB_DIR"
  )
  if [[ "${VERL_EXT_PRINT_CMD:-0}" != "1" ]]; then mkdir -p "$WANDB_DIR"; fi
}

# An RL training run that a scheduler's notice stops cleanly (README "Long runs on a cluster"): on SIGTERM or SIGUSR1
# this shell creates the trainer's stop file ($1, preemption.stop_file); the trainer finishes the current step, writes
# its checkpoint, removes the file and exits; this shell then exits 143 and the same command resumes the run. SIGINT
# (Ctrl-C) ends the run at once, as before (a background job ignores SIGINT, so it is passed on as SIGTERM).
_launch_stoppable() {
  local stop_file="$1"
  shift
  if [[ "${VERL_EXT_PRINT_CMD:-0}" == "1" ]]; then
    printf '%s\0' "$@"
    return 0
  fi
  printf '+'; printf ' %q' "$@"; printf '\n'
  rm -f "$stop_file"  # a request that an earlier, killed run never saw
  local requested=0 pid rc
  trap 'requested=1; mkdir -p "$(dirname "$stop_file")"; touch "$stop_file"
        echo "common.sh: stop requested: the trainer stops after the current step and its checkpoint" >&2' TERM USR1
  trap 'kill -TERM "$pid" 2>/dev/null' INT
  "$@" &
  pid=$!
  while true; do
    wait "$pid" && rc=0 || rc=$?
    kill -0 "$pid" 2>/dev/null || break  # still running: the wait was interrupted by a signal
  done
  trap - TERM USR1 INT
  if (( requested && rc != 0 )) && [[ ! -e "$stop_file" ]]; then
    echo "common.sh: the run stopped after a complete checkpoint; run the same command again to resume it" >&2
    exit 143
  fi
  exit "$rc"
}

# Overrides for the models of the edit analyzer (editgrpo.models) and of the reward (reward.reward_kwargs.models).
_model_overrides() {
  local base="${MODELS_DIR:-}"
  local -A paths=(
    [rate_ner]="${RATE_NER_PATH:-${base:+$base/RaTE-NER-Deberta}}"
    [biolord]="${BIOLORD_PATH:-${base:+$base/BioLORD-2023-C}}"
    [radgraph_cache]="${RADGRAPH_CACHE:-${base:+$base/radgraph}}"
    [chexbert_checkpoint]="${CHEXBERT_CHECKPOINT:-${base:+$base/chexbert.pth}}"
    [chexbert_bert]="${CHEXBERT_BERT_PATH:-${base:+$base/bert-base-uncased}}"
  )
  local key
  for key in rate_ner biolord radgraph_cache; do
    if [[ -n "${paths[$key]}" ]]; then MODEL_OVERRIDES+=("editgrpo.models.$key=${paths[$key]}"); fi
  done
  for key in rate_ner biolord chexbert_checkpoint chexbert_bert radgraph_cache; do
    if [[ -n "${paths[$key]}" ]]; then MODEL_OVERRIDES+=("reward.reward_kwargs.models.$key=${paths[$key]}"); fi
  done
}

# RL (stage 2): verl's own entry point with verl_ext/config/editgrpo_trainer.yaml; the variant's overrides come from
# the recipe (VARIANT_ARGS), then the caller's.
run_rl() {
  _parse_args "$@"
  # A laptop run has no W&B project to log to (and usually no login): offline unless the caller says otherwise.
  if (( CPU )); then export WANDB_MODE="${WANDB_MODE:-offline}"; fi
  # verl imports these plugin modules at `import verl` in every process; forwarded to Ray workers on other nodes.
  export VERL_USE_EXTERNAL_MODULES=verl_ext.register
  local experiment="${EXPERIMENT_NAME:-${DATASET}_${VARIANT}}"
  local project="${WANDB_PROJECT:-editgrpo}"
  _run_dir_setup "$CKPT_DIR/$project/$experiment"
  STOP_FILE="${STOP_FILE:-$CKPT_DIR/$project/$experiment/STOP}"
  local overrides=(
    "data.train_files=$TRAIN_FILES"
    "data.val_files=$VAL_FILES"
    "actor_rollout_ref.rollout.limit_images=$LIMIT_IMAGES"
    "trainer.n_gpus_per_node=$N_GPUS"
    "trainer.nnodes=$NNODES"
    "trainer.project_name=$project"
    "trainer.experiment_name=$experiment"
    "trainer.default_local_dir=$RUN_DIR"
    "${RUN_DIR_OVERRIDES[@]}"
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=$VERL_USE_EXTERNAL_MODULES"
    "preemption.stop_file=$STOP_FILE"
  )
  if [[ -n "${MODEL_PATH:-}" ]]; then overrides+=("actor_rollout_ref.model.path=$MODEL_PATH"); fi
  if [[ -n "$TOTAL_STEPS" ]]; then overrides+=("trainer.total_training_steps=$TOTAL_STEPS"); fi
  if [[ -n "${WANDB_MODE:-}" ]]; then overrides+=("+ray_kwargs.ray_init.runtime_env.env_vars.WANDB_MODE=$WANDB_MODE"); fi
  if (( NNODES > 1 )); then overrides+=("+ray_kwargs.ray_init.address=${RAY_ADDRESS:-auto}"); fi
  MODEL_OVERRIDES=()
  _model_overrides
  _attn_overrides actor_rollout_ref.model
  overrides+=("${MODEL_OVERRIDES[@]}" "${ATTN_OVERRIDES[@]}" "${VARIANT_ARGS[@]}")
  if (( CPU )); then
    export VERL_PLATFORM=cpu
    local line
    while IFS= read -r line; do overrides+=("$line"); done < <("$PYTHON" -m verl_ext.cpu.profile --procs "${CPU_PROCS:-1}")
  fi
  overrides+=("${USER_ARGS[@]}")

  local entry=(-m verl.trainer.main_ppo)
  if (( DRY_RUN )); then entry=(-m verl_ext.config.dry_run); fi
  if (( PREFLIGHT )); then entry=(-m verl_ext.preflight); fi
  if (( DRY_RUN || PREFLIGHT )); then
    _launch "$PYTHON" "${entry[@]}" "--config-path=$CONFIG_DIR" --config-name=editgrpo_trainer "${overrides[@]}"
    return
  fi
  _launch_stoppable "$STOP_FILE" "$PYTHON" "${entry[@]}" "--config-path=$CONFIG_DIR" --config-name=editgrpo_trainer \
    "${overrides[@]}"
}

# SFT (stage 1): verl's SFT trainer (torchrun) with verl_ext/config/editgrpo_sft.yaml.
run_sft() {
  _parse_args "$@"
  if (( CPU )); then
    echo "common.sh: --cpu is for RL recipes; for SFT on CPU set VERL_PLATFORM=cpu N_GPUS=1 and add engine.strategy=fsdp2" \
      "model.use_remove_padding=False +model.override_config.attn_implementation=sdpa trainer.device=cpu" >&2
    exit 2
  fi
  local experiment="${EXPERIMENT_NAME:-${DATASET}_sft}"
  local project="${WANDB_PROJECT:-editgrpo-sft}"
  _run_dir_setup "$CKPT_DIR/$project/$experiment"
  local overrides=(
    "data.train_files=$TRAIN_FILES"
    "trainer.n_gpus_per_node=$N_GPUS"
    "trainer.nnodes=$NNODES"
    "trainer.project_name=$project"
    "trainer.experiment_name=$experiment"
    "trainer.default_local_dir=$RUN_DIR"
    "${RUN_DIR_OVERRIDES[0]}"
  )
  if [[ -n "${MODEL_PATH:-}" ]]; then overrides+=("model.path=$MODEL_PATH"); fi
  _attn_overrides model
  overrides+=("${ATTN_OVERRIDES[@]}" "${SFT_ARGS[@]}" "${USER_ARGS[@]}")

  if (( DRY_RUN )); then
    _launch "$PYTHON" -m verl_ext.config.dry_run "--config-path=$CONFIG_DIR" --config-name=editgrpo_sft "${overrides[@]}"
  elif (( PREFLIGHT )); then
    _launch "$PYTHON" -m verl_ext.preflight "--config-path=$CONFIG_DIR" --config-name=editgrpo_sft "${overrides[@]}"
  else
    _launch "$PYTHON" -m torch.distributed.run "--nnodes=$NNODES" "--nproc_per_node=$N_GPUS" "--node_rank=${NODE_RANK:-0}" \
      "--master_addr=${MASTER_ADDR:-127.0.0.1}" "--master_port=${MASTER_PORT:-29500}" \
      -m verl.trainer.sft_trainer "--config-path=$CONFIG_DIR" --config-name=editgrpo_sft "${overrides[@]}"
  fi
}
