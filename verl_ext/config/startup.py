"""Settings that verl would only trip over after loading the models, checked before anything is loaded.

``check_before_loading(config)`` runs in the ``editgrpo`` trainer's constructor (``verl_ext.trainer.editgrpo_trainer``,
i.e. in verl's TaskRunner before ``trainer.init()`` builds datasets, workers and models), in the dry run and in the
pre-flight check. It raises one ``ValueError`` listing every problem, each naming its setting:

* ``data.val_batch_size`` unset: verl's V1 trainer then builds the validation loader with
  ``batch_size=len(val_dataset)`` (``trainer_base.py:754``), so the whole validation split, pixel values included,
  goes through TransferQueue in one batch. ``editgrpo_trainer.yaml`` sets a default; this catches an explicit null.
* ``wandb`` in ``trainer.logger`` without credentials: ``wandb.init`` runs in ``fit`` after every model is loaded and
  fails there without an API key. Credentials are ``WANDB_API_KEY``, a ``wandb login`` entry in ``~/.netrc`` (or
  ``$NETRC``) for the W&B host, or ``WANDB_MODE=offline`` / ``disabled``.
* a reward phase the run never reaches (``reward.reward_kwargs.component_schedules``): a step-based switch past the
  run's length (``trainer.total_training_steps``, else the train files' rows // batch * epochs, read from the
  parquet footers) would silently train on the first phase only (DEER's BLEU-2 phase at step 500 of a ~460-step run).
* the edit step's and the reward's model paths (``editgrpo.models.*``, ``reward.reward_kwargs.models.*``): each must
  exist, as the workers would only find out when they load them.
"""
from __future__ import annotations

import netrc
import os
from typing import Any, Optional
from urllib.parse import urlparse

from verl_ext.config.access import config_get

__all__ = ["check_before_loading", "startup_problems", "wandb_credentials"]

_OFFLINE_MODES = ("offline", "disabled", "dryrun")


def wandb_credentials(env: Optional[dict] = None) -> Optional[str]:
    """How this process would authenticate to W&B (a short description), or None when it could not."""
    env = os.environ if env is None else env
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode in _OFFLINE_MODES:
        return f"WANDB_MODE={mode}"
    if env.get("WANDB_API_KEY", "").strip():
        return "WANDB_API_KEY"
    host = urlparse(env.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    path = env.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        entry = None
    if entry and entry[2]:
        return f"{path} entry for {host}"
    return None


def _loggers(config: Any) -> list[str]:
    value = config_get(config, "trainer.logger", [])
    return [value] if isinstance(value, str) else [str(v) for v in value]


def startup_problems(config: Any, env: Optional[dict] = None, check_models: bool = True) -> list[str]:
    """Every problem ``check_before_loading`` would raise for, one line each (empty: none)."""
    problems = []
    if "data" in config and "val_batch_size" in config.data and config_get(config, "data.val_batch_size") in (None, 0):
        problems.append(
            "data.val_batch_size is not set: verl would put the whole validation split (with pixel values) "
            "through TransferQueue as one batch. Set data.val_batch_size (editgrpo_trainer.yaml: 64)."
        )
    if any(name in ("wandb", "vemlp_wandb") for name in _loggers(config)) and wandb_credentials(env) is None:
        problems.append(
            "trainer.logger includes wandb but this machine has no W&B credentials (WANDB_API_KEY, `wandb login`) "
            "and WANDB_MODE is not offline: the run would die in wandb.init after loading every model. Set "
            "WANDB_API_KEY, run `wandb login`, export WANDB_MODE=offline, or drop wandb from trainer.logger "
            "(e.g. trainer.logger='[console,file]')."
        )
    problems += _schedule_problems(config)
    if check_models:
        problems += _model_path_problems(config)
    return problems


def planned_training_steps(config: Any) -> Optional[int]:
    """The run's step count as verl will compute it: ``trainer.total_training_steps``, else (rows of
    ``data.train_files`` from the parquet footers) // ``data.train_batch_size`` * ``trainer.total_epochs`` -- an upper
    bound, as verl's overlong-prompt filter can only drop rows. None where the files cannot be read here."""
    total = config_get(config, "trainer.total_training_steps")
    if total is not None:
        return int(total)
    files = config_get(config, "data.train_files")
    batch = config_get(config, "data.train_batch_size")
    if files is None or not batch:
        return None
    files = [files] if isinstance(files, str) else list(files)
    try:
        import pyarrow.parquet as pq

        rows = sum(pq.ParquetFile(os.path.expanduser(str(f))).metadata.num_rows for f in files)
    except Exception:  # noqa: BLE001 - missing/unreadable data is the data checks' business, not this one's
        return None
    return rows // int(batch) * int(config_get(config, "trainer.total_epochs", 1))


def _schedule_problems(config: Any) -> list[str]:
    """Reward phases that the run never reaches (DEER's BLEU-2 phase at a fixed step past the run's end)."""
    if config_get(config, "reward.reward_manager.name") != "radiology":
        return []
    from verl_ext.reward.config import RadiologyRewardConfig

    try:
        reward = RadiologyRewardConfig.from_trainer_config(config)
    except ValueError as exc:
        return [str(exc)]
    if not reward.component_schedules:
        return []
    total = planned_training_steps(config)
    if total is None:
        return []
    return reward.schedule_problems(total)


def _model_path_problems(config: Any) -> list[str]:
    problems = []
    if config.get("editgrpo", None) is not None:
        try:
            from verl_ext.rollout.analysis import check_analyzer_paths
            from verl_ext.rollout.config import EditRolloutConfig

            cfg = EditRolloutConfig.from_trainer_config(config)
            manager = str(config_get(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class", "") or "")
            if cfg.needs_analyzer and manager.startswith("verl_ext.rollout"):
                check_analyzer_paths(cfg)
        except (ValueError, FileNotFoundError) as exc:
            problems.append(str(exc))
    if config_get(config, "reward.reward_manager.name") == "radiology":
        try:
            from verl_ext.reward.config import RadiologyRewardConfig
            from verl_ext.reward.service import check_model_paths

            check_model_paths(RadiologyRewardConfig.from_trainer_config(config))
        except (ValueError, FileNotFoundError) as exc:
            problems.append(str(exc))
    return problems


def check_before_loading(config: Any) -> None:
    """Raise ``ValueError`` naming every late-failing setting of ``config`` (see the module docstring)."""
    problems = startup_problems(config)
    if problems:
        raise ValueError("verl_ext start-up check failed (nothing has been loaded yet):\n  - "
                         + "\n  - ".join(problems))
