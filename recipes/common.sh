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
#   CKPT_DIR        checkpoint root (default <repo>/checkpoints); WANDB_MODE=offline works as usual
#   Scorer and analyzer models (RL; local paths, never hub ids): RATE_NER_PATH, BIOLORD_PATH, CHEXBERT_CHECKPOINT,
#                   CHEXBERT_BERT_PATH, RADGRAPH_CACHE; with MODELS_DIR set they default to $MODELS_DIR/RaTE-NER-Deberta,
#                   BioLORD-2023-C, chexbert.pth, bert-base-uncased, radgraph (see verl_ext/clinical/models.py).
#   PYTHON          interpreter (default python3)
# Arguments: --dry-run checks the composed config without a GPU (python -m verl_ext.config.dry_run) and exits;
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
    *) echo "common.sh: unknown dataset '$DATASET' (mimic | rexgradient | iu_xray | padchest_gr)" >&2; exit 2 ;;
  esac
  N_GPUS="${N_GPUS:-$DEFAULT_GPUS}"
  TRAIN_FILES="${TRAIN_FILES:-$(_split_files train)}"
  # The authors validate on the test split (before training only); point VAL_FILES elsewhere if you have a val split.
  VAL_FILES="${VAL_FILES:-$(_split_files test)}"
}

# The data_prep shards of one split as a Hydra list; <split>.parquet when no shard exists yet (dry runs before prep).
_split_files() {
  local shards=("$DATA_DIR/$DATA_NAME/$1"-[0-9]*.parquet)
  if [[ -e "${shards[0]}" ]]; then
    local IFS=,
    echo "[${shards[*]}]"
  else
    echo "$DATA_DIR/$DATA_NAME/$1.parquet"
  fi
}

# Splits "$@" into DRY_RUN (0/1), CPU (0/1) and USER_ARGS (the Hydra overrides).
_parse_args() {
  DRY_RUN=0
  CPU=0
  USER_ARGS=()
  local arg
  for arg in "$@"; do
    if [[ "$arg" == "--dry-run" ]]; then DRY_RUN=1
    elif [[ "$arg" == "--cpu" ]]; then CPU=1
    else USER_ARGS+=("$arg"); fi
  done
}

_launch() {
  if [[ "${VERL_EXT_PRINT_CMD:-0}" == "1" ]]; then
    printf '%s\0' "$@"
    return 0
  fi
  printf '+'; printf ' %q' "$@"; printf '\n'
  exec "$@"
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
  # verl imports these plugin modules at `import verl` in every process; forwarded to Ray workers on other nodes.
  export VERL_USE_EXTERNAL_MODULES=verl_ext.register
  local experiment="${EXPERIMENT_NAME:-${DATASET}_${VARIANT}}"
  local project="${WANDB_PROJECT:-editgrpo}"
  local overrides=(
    "data.train_files=$TRAIN_FILES"
    "data.val_files=$VAL_FILES"
    "actor_rollout_ref.rollout.limit_images=$LIMIT_IMAGES"
    "trainer.n_gpus_per_node=$N_GPUS"
    "trainer.nnodes=$NNODES"
    "trainer.project_name=$project"
    "trainer.experiment_name=$experiment"
    "trainer.default_local_dir=$CKPT_DIR/$project/$experiment"
    "+ray_kwargs.ray_init.runtime_env.env_vars.VERL_USE_EXTERNAL_MODULES=$VERL_USE_EXTERNAL_MODULES"
  )
  if [[ -n "${MODEL_PATH:-}" ]]; then overrides+=("actor_rollout_ref.model.path=$MODEL_PATH"); fi
  if [[ -n "$TOTAL_STEPS" ]]; then overrides+=("trainer.total_training_steps=$TOTAL_STEPS"); fi
  if [[ -n "${WANDB_MODE:-}" ]]; then overrides+=("+ray_kwargs.ray_init.runtime_env.env_vars.WANDB_MODE=$WANDB_MODE"); fi
  if (( NNODES > 1 )); then overrides+=("+ray_kwargs.ray_init.address=${RAY_ADDRESS:-auto}"); fi
  MODEL_OVERRIDES=()
  _model_overrides
  overrides+=("${MODEL_OVERRIDES[@]}" "${VARIANT_ARGS[@]}")
  if (( CPU )); then
    export VERL_PLATFORM=cpu
    local line
    while IFS= read -r line; do overrides+=("$line"); done < <("$PYTHON" -m verl_ext.cpu.profile --procs "${CPU_PROCS:-1}")
  fi
  overrides+=("${USER_ARGS[@]}")

  local entry=(-m verl.trainer.main_ppo)
  if (( DRY_RUN )); then entry=(-m verl_ext.config.dry_run); fi
  _launch "$PYTHON" "${entry[@]}" "--config-path=$CONFIG_DIR" --config-name=editgrpo_trainer "${overrides[@]}"
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
  local overrides=(
    "data.train_files=$TRAIN_FILES"
    "trainer.n_gpus_per_node=$N_GPUS"
    "trainer.nnodes=$NNODES"
    "trainer.project_name=$project"
    "trainer.experiment_name=$experiment"
    "trainer.default_local_dir=$CKPT_DIR/$project/$experiment"
  )
  if [[ -n "${MODEL_PATH:-}" ]]; then overrides+=("model.path=$MODEL_PATH"); fi
  overrides+=("${SFT_ARGS[@]}" "${USER_ARGS[@]}")

  if (( DRY_RUN )); then
    _launch "$PYTHON" -m verl_ext.config.dry_run "--config-path=$CONFIG_DIR" --config-name=editgrpo_sft "${overrides[@]}"
  else
    _launch "$PYTHON" -m torch.distributed.run "--nnodes=$NNODES" "--nproc_per_node=$N_GPUS" "--node_rank=${NODE_RANK:-0}" \
      "--master_addr=${MASTER_ADDR:-127.0.0.1}" "--master_port=${MASTER_PORT:-29500}" \
      -m verl.trainer.sft_trainer "--config-path=$CONFIG_DIR" --config-name=editgrpo_sft "${overrides[@]}"
  fi
}
