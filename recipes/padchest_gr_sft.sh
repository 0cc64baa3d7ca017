#!/usr/bin/env bash
# Stage 1 on PadChest-GR: full-parameter SFT of Qwen2.5-VL-3B-Instruct on the findings section (paper App. E), with
# verl's SFT trainer (torchrun). Three epochs, one checkpoint per epoch with a Hugging Face copy
# (<CKPT_DIR>/editgrpo-sft/padchest_gr_sft/global_step_N/huggingface): the RL recipes start from the SFT epoch-2 checkpoint.
#
#   MODEL_PATH=<Qwen2.5-VL-3B-Instruct dir> DATA_DIR=<data_prep output> bash recipes/padchest_gr_sft.sh [--dry-run] [overrides]
#
# Settings: verl_ext/config/editgrpo_sft.yaml; environment variables: recipes/common.sh.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_dataset padchest_gr
SFT_ARGS=()
run_sft "$@"
