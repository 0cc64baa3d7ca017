#!/usr/bin/env bash
# Deterministic install of verl_ext and its dependency stack into the current Python environment.
#   bash install.sh        CPU / development profile (what CI runs)
#   bash install.sh gpu    adds verl[vllm,fsdp] (vLLM 0.24, flash-attn) for GPU machines
# The steps are ordered on purpose: the scorer stack needs packages installed with --no-deps after the main
# resolve (their metadata is wrong for numpy 2 / transformers 5), and constraints.txt holds every pin.
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-cpu}"
PIP="${PIP:-python -m pip}"

# The CPU profile also applies the lock (every transitive version CI was tested with); GPU machines resolve the
# CUDA stack themselves under constraints.txt.
lock=()
[ "$profile" = "gpu" ] || lock=(-c requirements-lock.txt)
$PIP install --upgrade pip
$PIP install -r requirements.txt -c constraints.txt "${lock[@]}"
$PIP install --no-deps -r requirements-nodeps.txt
if [ "$profile" = "gpu" ]; then
  $PIP install -e ".[gpu]" -c constraints.txt
else
  $PIP install --no-deps -e .
fi
python - <<'PY'
import importlib.metadata as md
for name in ("verl", "torch", "torchvision", "transformers", "numpy", "spacy", "medspacy", "RaTEScore", "radgraph"):
    print(f"{name:14s} {md.version(name)}")
PY
