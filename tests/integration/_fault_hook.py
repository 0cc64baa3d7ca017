"""Fault injection for ``test_resume_cpu.py``: verl imports this module in every process of the run
(``VERL_USE_EXTERNAL_MODULES``), and in the trainer's process it stops at a chosen point, so the test can kill the run
there deterministically instead of guessing with sleeps.

``VERL_EXT_TEST_FAULT``:

* ``step:<k>``: block in verl's actor update of step k (the rollouts, rewards and OraPO's EMA update of step k are
  done, its checkpoint is not);
* ``checkpoint:<k>``: block when verl writes ``global_step_<k>/data.pt`` (the actor's files are written, the tracker
  is not);
* ``pause:<k>``: like ``step:<k>``, but carry on once the file ``<marker>.go`` exists.

On reaching the point it writes the file ``VERL_EXT_TEST_FAULT_MARKER``; the test waits for that file.
"""
import os
import time
from pathlib import Path

_FAULT = os.environ.get("VERL_EXT_TEST_FAULT", "")
_MARKER = Path(os.environ.get("VERL_EXT_TEST_FAULT_MARKER", "fault_reached"))


def _reached(what: str, wait_for: Path | None = None) -> None:
    _MARKER.write_text(f"{what} pid={os.getpid()}\n")
    while wait_for is None or not wait_for.exists():
        time.sleep(0.2)


def _install(kind: str, step: int) -> None:
    if kind == "checkpoint":
        import torch

        original_save = torch.save

        def save(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and str(f).endswith(os.path.join(f"global_step_{step}", "data.pt")):
                _reached(f"checkpoint {step}")
            return original_save(obj, f, *args, **kwargs)

        torch.save = save
        return

    from verl_ext.post_import import when_imported

    def patch() -> None:
        from verl.trainer.ppo.v1 import trainer_base

        original_update = trainer_base.PPOTrainer._update_actor

        def _update_actor(self, batch, metrics):
            if self.global_steps == step:
                _reached(f"step {step}", _MARKER.with_name(_MARKER.name + ".go") if kind == "pause" else None)
            return original_update(self, batch, metrics)

        trainer_base.PPOTrainer._update_actor = _update_actor

    when_imported("verl.trainer.ppo.v1.trainer_base", patch)


if _FAULT:
    _kind, _step = _FAULT.split(":")
    if _kind not in ("step", "checkpoint", "pause"):
        raise ValueError(f"VERL_EXT_TEST_FAULT={_FAULT!r}: expected step:<k>, checkpoint:<k> or pause:<k>")
    _install(_kind, int(_step))
