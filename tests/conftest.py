"""Test-wide environment: no network, caches in temporary directories, W&B offline."""
import os
import tempfile

import pytest

_TMP = tempfile.mkdtemp(prefix="verl_ext_tests_")
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HOME": os.path.join(_TMP, "hf"),
    "XDG_CACHE_HOME": os.path.join(_TMP, "cache"),
    "WANDB_MODE": "offline",
    "WANDB_DIR": os.path.join(_TMP, "wandb"),
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "0",
}.items():
    os.environ[key] = value


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
