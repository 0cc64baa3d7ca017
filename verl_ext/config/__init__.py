"""Hydra configs in verl's style (``editgrpo_trainer.yaml``, ``editgrpo_sft.yaml``) and the GPU-free dry run
(``python -m verl_ext.config.dry_run``). `CONFIG_DIR` is the directory to pass as ``--config-path``."""
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
