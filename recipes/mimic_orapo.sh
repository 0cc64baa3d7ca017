#!/usr/bin/env bash
# OraPO + FactS on MIMIC-CXR (arXiv 2509.18600 v2): RL only, from the base Qwen2.5-VL-3B-Instruct, on a seeded
# subset of ~1K training studies (TRAIN_SUBSET, SUBSET_SEED). Each prompt's group is K sampled rollouts plus the
# reference report (the oracle); prompts whose rollouts fail get a ZRR-weighted LN-DPO term (verl_ext/trainer).
#
#   MODEL_PATH=<Qwen2.5-VL-3B-Instruct> DATA_DIR=<data_prep output> MODELS_DIR=<scorer models> \
#     bash recipes/mimic_orapo.sh [--dry-run] [overrides]
#
# Data: $DATA_DIR/mimic_cxr/{train,test}*.parquet (data_prep/mimic.py). OraPO settings:
# recipes/orapo_settings.bash (with the source of every value: paper, notes, EditGRPO or ours); shared settings:
# verl_ext/config/editgrpo_trainer.yaml; environment: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/orapo_settings.bash"
use_dataset mimic
VARIANT=orapo
orapo_variant_args
run_rl "$@"
