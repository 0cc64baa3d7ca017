"""Crash-safe checkpoints and exact resume for long runs: a run killed at any moment resumes and loses nothing.

A multi-day run (MIMIC-CXR: 1,000 steps, about five days on 4 GPUs) is stopped several times by its cluster's time
limit or by preemption: SIGTERM, then SIGKILL after a grace period. This module makes the ``editgrpo`` and ``orapo``
trainers (`verl_ext.trainer.editgrpo_trainer`) survive that. It changes nothing in verl; it wraps the trainer hooks.

What verl 0.9.1 already guarantees (``verl/trainer/ppo/v1/trainer_base.py``, ``TB`` below):

* ``_save_checkpoint`` writes the actor (and critic) folders and ``data.pt`` (the dataloader position), and only then
  ``latest_checkpointed_iteration.txt`` (TB:948-1029), from which ``resume_mode=auto`` resumes
  (``find_latest_ckpt_path``, ``verl/utils/checkpoint/checkpoint_manager.py:222-252``); a kill while the actor is being
  written therefore leaves the tracker on the previous step. ``extra_state`` holds the RNG states
  (``fsdp_checkpoint_manager.py:355-362``); ``data.pt`` puts the dataloader back at the same batch.

What it does not, and what this module adds (each guarded by ``tests/integration/test_resume_cpu.py``):

1. **Retention deletes the fallback before the new checkpoint is usable.** With ``max_actor_ckpt_to_keep=1`` (the
   authors' setting, our config) the actor's checkpoint manager deletes the previous step's actor folder right after
   writing the new one (``register_checkpoint``, ``checkpoint_manager.py:181-194``, called at
   ``fsdp_checkpoint_manager.py:476``), before ``data.pt`` and the tracker are written: a kill in between leaves the
   tracker on a step whose actor folder is gone, and resume fails loading it. Here verl's retention is switched off
   while it saves, and old checkpoints are deleted only after the new one is complete (`prune_checkpoints`; it also
   counts the checkpoints of earlier launches, which verl's in-memory list forgets).
2. **A complete checkpoint is one whose step is complete.** verl checkpoints step k before that step's validation,
   metrics, rollout dump (written by a background thread, TB:1262-1283) and edit records; a kill in between resumes
   at k+1 without them, and the tracker is rewritten in place (``open(..., "w")``, TB:1024), so a kill at that moment
   leaves an empty file (``int("")`` fails at ``checkpoint_manager.py:245``). Here the project's own state (OraPO's
   EMA table) is written into the step folder *before* verl's files, and the file `COMMIT_FILE` is written atomically
   at the next step boundary, after the step's records and metrics are on disk. ``resume_mode=auto`` resumes from the
   newest folder holding it (`plan_resume`): newer, incomplete folders are removed and the tracker is rewritten
   (atomically), with a line saying so.
3. **What the run writes, once per step.** verl's file logger opens its file with ``"wb"`` on every launch
   (``verl/utils/tracking.py:541``) and W&B is initialised without a run id (``tracking.py:85``): a resumed run's
   ``metrics.jsonl`` lost the earlier steps and each launch was a new W&B run. Here the metric lines up to the resumed
   step are kept (`kept_metric_lines`), the records of the abandoned steps are removed (`stale_record_files`), and the
   W&B run id is kept in ``<checkpoint dir>/wandb_run_id`` and passed to ``wandb.init`` (``WANDB_RUN_ID``,
   ``WANDB_RESUME=allow``). The validation before training is not repeated on resume (it would log a second row for the
   resumed step).
4. **A stop request** (the recipes turn SIGTERM into one, ``recipes/common.sh``): the file ``preemption.stop_file``
   (default ``<trainer.default_local_dir>/STOP``). At the end of the step during which it appears, the trainer writes
   that step's checkpoint (also when ``save_freq`` does not call for one), completes it, removes the file and stops
   with `RunStopped` (non-zero exit) saying how to resume.

State that needs nothing here: the DEER reward phase and the edit step's random streams are functions of the global
step (``reward.component_schedules``; ``edit_worker._group_rng`` seeds from (seed, step, dataset index)), which verl
restores from the checkpoint folder's name; the DDSampling subset is a file chosen before training.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

__all__ = ["COMMIT_FILE", "TRACKER_FILE", "WANDB_ID_FILE", "ResumePlan", "ResumableTrainerMixin", "RunStopped",
           "atomic_write_text", "kept_metric_lines", "plan_resume", "prune_checkpoints", "stale_record_files"]

COMMIT_FILE = "verl_ext_checkpoint.json"
"""Written last into ``global_step_<k>``, atomically: the checkpoint and everything step k wrote are complete."""
TRACKER_FILE = "latest_checkpointed_iteration.txt"  # verl's tracker (checkpoint_manager.py:255-259)
WANDB_ID_FILE = "wandb_run_id"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")
_STEP_RECORD = re.compile(r"^(?:edits_)?(\d+)\.jsonl$")


class RunStopped(RuntimeError):
    """The run stopped on request after a complete checkpoint; running the same command again resumes it."""


def _say(message: str) -> None:
    # print, as verl reports checkpoint decisions: it reaches the driver's console through Ray's log forwarding
    print(f"verl_ext resume: {message}", flush=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` so that a reader sees the old content or the new one, never a part (write, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some file systems do not open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_folders(root: str | os.PathLike) -> dict[int, Path]:
    """``global_step_<k>`` folders under `root`, by k."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {int(m.group(1)): p for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))}


def is_complete(folder: str | os.PathLike) -> bool:
    return (Path(folder) / COMMIT_FILE).is_file() and (Path(folder) / "actor").is_dir()


def _read_tracker(root: Path) -> tuple[bool, Optional[int]]:
    """(tracker file exists, its step or None when it cannot be read)."""
    path = root / TRACKER_FILE
    if not path.exists():
        return False, None
    try:
        return True, int(path.read_text().strip())
    except ValueError:
        return True, None


@dataclass
class ResumePlan:
    """Where ``resume_mode=auto`` resumes. `step` None: no complete checkpoint of ours (verl decides: from scratch,
    or a checkpoint written without `COMMIT_FILE` by an earlier version)."""

    step: Optional[int]
    tracker: Optional[int] = None
    tracker_exists: bool = False
    incomplete: list[int] = field(default_factory=list)

    def messages(self) -> list[str]:
        lines = []
        if self.step is not None and self.tracker != self.step and self.tracker_exists:
            said = "is unreadable" if self.tracker is None else f"names step {self.tracker}"
            lines.append(f"{TRACKER_FILE} {said}, but that checkpoint is incomplete (the run was stopped while "
                         f"writing it); resuming from the last complete checkpoint global_step_{self.step}")
        for step in self.incomplete:
            lines.append(f"removing incomplete checkpoint global_step_{step} (no {COMMIT_FILE}: killed before "
                         "it was complete)")
        return lines


def plan_resume(root: str | os.PathLike) -> ResumePlan:
    """The newest complete checkpoint under `root`, and the newer incomplete ones to remove."""
    root = Path(root)
    folders = checkpoint_folders(root)
    exists, tracker = _read_tracker(root)
    complete = [s for s, p in folders.items() if is_complete(p)]
    if not complete:
        return ResumePlan(None, tracker, exists)
    step = max(complete)
    return ResumePlan(step, tracker, exists, sorted(s for s in folders if s > step))


def prune_checkpoints(root: str | os.PathLike, keep: Optional[int]) -> list[int]:
    """Delete all but the `keep` newest complete checkpoints, and incomplete folders older than the newest complete
    one; returns the deleted steps. `keep` None or < 1: keep everything."""
    folders = checkpoint_folders(root)
    complete = sorted((s for s, p in folders.items() if is_complete(p)), reverse=True)
    if not keep or keep < 1 or not complete:
        return []
    kept = set(complete[:keep])
    doomed = sorted(s for s in folders if s not in kept and s < complete[0])
    for step in doomed:  # the commit file first: a kill during the deletion leaves no half folder that looks whole
        (folders[step] / COMMIT_FILE).unlink(missing_ok=True)
        shutil.rmtree(folders[step], ignore_errors=True)
    return doomed


def kept_metric_lines(text: str, last_step: int) -> str:
    """The lines of verl's file-logger output (``{"step": k, "data": {...}}`` per line) with k <= `last_step`; a line
    cut by a kill is dropped."""
    kept = []
    for line in text.splitlines():
        try:
            step = int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
        if step <= last_step:
            kept.append(line + "\n")
    return "".join(kept)


def stale_record_files(folder: str | os.PathLike, last_step: int) -> list[Path]:
    """verl's ``<k>.jsonl`` dumps and the ``edits_<k>.jsonl`` records of steps k > `last_step` in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (m := _STEP_RECORD.match(p.name)) and int(m.group(1)) > last_step)


def file_logger_path(project: str, experiment: str) -> Path:
    """Where verl's ``FileLogger`` writes (``verl/utils/tracking.py:534-539``)."""
    path = os.getenv("VERL_FILE_LOGGER_PATH")
    if path:
        return Path(path)
    return Path(os.path.expanduser(os.getenv("VERL_FILE_LOGGER_ROOT", "."))) / project / f"{experiment}.jsonl"


@contextmanager
def _overridden(config, section: str, values: dict[str, Any]) -> Iterator[None]:
    from omegaconf import open_dict

    node = config[section]
    old = {k: node.get(k, None) for k in values}
    with open_dict(node):
        node.update(values)
    try:
        yield
    finally:
        with open_dict(node):
            node.update(old)


class ResumableTrainerMixin:
    """Trainer hooks of this module (see the module docstring); mixed into verl's ``PPOTrainerSync`` subclass.

    Subclasses keep their own state across a resume with `_save_project_state` / `_load_project_state`.
    """

    _pending_commit: Optional[int] = None
    _resumed_step: int = 0
    _kept_metrics: str = ""

    # ---------------------------------------------------------------- paths and settings
    def _checkpoint_root(self) -> Path:
        root = str(self.config.trainer.default_local_dir)
        return Path(root if os.path.isabs(root) else os.path.join(os.getcwd(), root))  # as verl (TB:857-860)

    def _stop_file(self) -> Path:
        preemption = self.config.get("preemption", None) or {}
        path = preemption.get("stop_file", None)
        return Path(path) if path else self._checkpoint_root() / "STOP"

    def _keep_checkpoints(self) -> Optional[int]:
        trainer = self.config.trainer
        if trainer.get("remove_previous_ckpt_in_save", False):
            return 1
        keeps = [trainer.get("max_actor_ckpt_to_keep", None)]
        if getattr(self, "use_critic", False):
            keeps.append(trainer.get("max_critic_ckpt_to_keep", None))
        keeps = [int(k) for k in keeps if k]
        return max(keeps) if keeps else None

    # ---------------------------------------------------------------- project state (subclasses)
    def _save_project_state(self, folder: str) -> None:
        """Write the project's own state of this step into the checkpoint folder (before verl's files)."""

    def _load_project_state(self, folder: str) -> None:
        """Read it back after verl restored its state from `folder`."""

    # ---------------------------------------------------------------- saving
    def _save_checkpoint(self):
        step = self.global_steps
        folder = self._checkpoint_root() / f"global_step_{step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / COMMIT_FILE).unlink(missing_ok=True)
        self._save_project_state(str(folder))
        # verl's retention would delete the fallback before this checkpoint is complete (module docstring, 1.)
        with _overridden(self.config, "trainer", {"max_actor_ckpt_to_keep": None, "max_critic_ckpt_to_keep": None,
                                                  "remove_previous_ckpt_in_save": False}):
            super()._save_checkpoint()
        self._pending_commit = step

    def _commit_pending(self) -> None:
        """Complete the checkpoint of the finished step once its records and metrics are on disk."""
        step = self._pending_commit
        if step is None:
            return
        for future in getattr(self, "_dump_futures", []):  # verl's asynchronous rollout dumps (TB:1262-1283)
            future.result()
        self._dump_futures = []
        root = self._checkpoint_root()
        record = {"global_step": step, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "wandb_run_id": os.environ.get("WANDB_RUN_ID")}
        atomic_write_text(root / f"global_step_{step}" / COMMIT_FILE, json.dumps(record) + "\n")
        self._pending_commit = None
        _say(f"checkpoint global_step_{step} is complete")
        pruned = prune_checkpoints(root, self._keep_checkpoints())
        if pruned:
            _say("removed older checkpoints " + ", ".join(f"global_step_{s}" for s in pruned))

    def _stop_if_requested(self, finished_step: int, finished: bool) -> None:
        stop_file = self._stop_file()
        if not stop_file.exists():
            return
        if finished:
            stop_file.unlink(missing_ok=True)
            _say(f"stop requested ({stop_file}) after the last step; the run is complete")
            return
        if finished_step > 0 and self._pending_commit != finished_step and not (
                self._checkpoint_root() / f"global_step_{finished_step}" / COMMIT_FILE).is_file():
            _say(f"stop requested ({stop_file}): writing the checkpoint of step {finished_step}")
            step_now = self.global_steps
            self.global_steps = finished_step
            try:
                # the rollout replicas are awake since on_step_end; verl saves with them asleep (their memory free)
                self.checkpoint_manager.sleep_replicas()
                self._save_checkpoint()
            finally:
                self.global_steps = step_now
        self._commit_pending()
        stop_file.unlink(missing_ok=True)
        logger = getattr(self, "logger", None)
        if logger is not None and hasattr(logger, "finish"):
            logger.finish(exit_code=1)
        done = (f"after step {finished_step}; checkpoint global_step_{finished_step} in {self._checkpoint_root()} is "
                "complete" if finished_step > 0 else "before the first step")
        raise RunStopped(f"stopped on request ({stop_file}) {done}. Resume: run the same command again "
                         "(trainer.resume_mode=auto).")

    # ---------------------------------------------------------------- verl hooks
    def init(self):
        from omegaconf import OmegaConf

        if OmegaConf.select(self.config, "actor_rollout_ref.actor.checkpoint.async_save", default=False):
            # verl then returns before its tracker (TB:1012-1020) while the actor is still being written: no step
            # could be known complete
            raise ValueError("actor_rollout_ref.actor.checkpoint.async_save=True: crash-safe checkpoints "
                             "(verl_ext.trainer.resume) need synchronous saves; set it to False")
        super().init()

    def on_step_begin(self):
        finished = self.global_steps - 1
        self._commit_pending()
        self._stop_if_requested(finished, finished=False)
        super().on_step_begin()

    def _load_checkpoint(self):
        trainer = self.config.trainer
        root = self._checkpoint_root()
        if trainer.resume_mode == "auto":
            plan = plan_resume(root)
            for line in plan.messages():
                _say(line)
            for step in plan.incomplete:
                shutil.rmtree(root / f"global_step_{step}", ignore_errors=True)
            if plan.step is not None and plan.tracker != plan.step:
                atomic_write_text(root / TRACKER_FILE, str(plan.step))
        elif trainer.resume_mode == "resume_path":
            folder = Path(str(trainer.resume_from_path))
            if not folder.is_absolute():
                folder = Path(os.getcwd()) / folder
            siblings = checkpoint_folders(folder.parent).values()
            if not (folder / COMMIT_FILE).is_file() and any((p / COMMIT_FILE).is_file() for p in siblings):
                plan = plan_resume(folder.parent)
                raise ValueError(f"trainer.resume_from_path={folder} is an incomplete checkpoint (no {COMMIT_FILE}: "
                                 f"the run was stopped while writing it); the last complete one is "
                                 f"global_step_{plan.step}")
        super()._load_checkpoint()
        self._resumed_step = int(self.global_steps)
        if self.global_steps > 0:
            folder = (str(trainer.resume_from_path) if trainer.resume_mode == "resume_path"
                      else str(root / f"global_step_{self.global_steps}"))
            self._load_project_state(folder)

    def fit(self, agent_loop_manager):
        trainer = self.config.trainer
        resumed = self._resumed_step
        backends = list(trainer.logger) if not isinstance(trainer.logger, str) else [trainer.logger]
        if "wandb" in backends:
            self._continue_wandb_run(resumed)
        self._kept_metrics = ""
        if resumed > 0 and "file" in backends:
            path = file_logger_path(trainer.project_name, trainer.experiment_name)
            if path.exists():  # verl truncates it when the logger opens (tracking.py:541); restored in on_train_begin
                self._kept_metrics = kept_metric_lines(path.read_text(errors="replace"), resumed)
        if resumed > 0:
            stale = [p for key in ("rollout_data_dir", "validation_data_dir") if trainer.get(key, None)
                     for p in stale_record_files(trainer[key], resumed)]
            for path in stale:
                path.unlink(missing_ok=True)
            if stale:
                _say(f"removed {len(stale)} record files of steps after {resumed} (they are written again)")
        skip_validation = resumed > 0 and trainer.get("val_before_train", True)
        if skip_validation:
            _say(f"resumed at step {resumed}: the validation before training is not repeated")
        with _overridden(self.config, "trainer", {"val_before_train": False} if skip_validation else {}):
            result = super().fit(agent_loop_manager)
        self._commit_pending()
        self._stop_if_requested(self.global_steps - 1, finished=True)
        return result

    def on_train_begin(self):
        if self._kept_metrics:
            file_logger = getattr(self, "logger", None) and self.logger.logger.get("file")
            if file_logger is not None:  # keep what this launch logged already, after the kept lines
                written = Path(file_logger.filepath).read_bytes()
                file_logger.fp.seek(0)
                file_logger.fp.truncate()
                file_logger.fp.write(self._kept_metrics.encode() + written)
        super().on_train_begin()

    def _continue_wandb_run(self, resumed: int) -> None:
        """Give ``wandb.init`` (in verl's ``Tracking``) the run id of this checkpoint folder, so the resumed run
        continues the same W&B run; a fresh run (nothing resumed) gets a new id. A ``WANDB_RUN_ID`` set by the user
        wins."""
        if os.environ.get("WANDB_RUN_ID"):
            return
        path = self._checkpoint_root() / WANDB_ID_FILE
        run_id = path.read_text().strip() if resumed > 0 and path.exists() else ""
        if not run_id:
            run_id = uuid.uuid4().hex[:12]  # W&B ids: lower-case letters and digits
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, run_id + "\n")
        os.environ["WANDB_RUN_ID"] = run_id
        os.environ["WANDB_RESUME"] = "allow"
        if resumed > 0:
            _say(f"continuing W&B run {run_id}")
