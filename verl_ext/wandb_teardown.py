"""Shut the W&B service down when verl finishes its tracking, while the service still runs (a shim of verl).

verl's TaskRunner ends a run with ``Tracking.finish`` -> ``wandb.finish`` (``verl/trainer/main_ppo.py:161``,
``verl/utils/tracking.py:196-204``) and leaves the W&B service process (``wandb-core``, a child of the TaskRunner
actor) to wandb's own atexit hook. In a Ray actor that hook runs too late: when the worker exits, Ray ends its child
processes (``RAY_kill_child_processes_on_worker_exit``, on by default), so the hook finds the service gone and every
successful run ends with ``ConnectionResetError: Connection lost`` in an ``Exception ignored in atexit callback``
traceback. The run's data is already written by then; the traceback only makes a good run look broken.

`install` wraps ``Tracking.finish`` so that, after verl's own finish, ``wandb.teardown()`` stops the service and
unregisters that hook (``wandb/sdk/lib/service/service_connection.py``: ``teardown`` -> ``cleanup``). Only when
verl's tracker used wandb; other backends are untouched. ``tests/test_wandb_teardown.py`` shows the traceback
without the shim and its absence with it.
"""
from __future__ import annotations

import functools
import sys

from verl_ext.post_import import when_imported

__all__ = ["TRACKING_MODULE", "install"]

TRACKING_MODULE = "verl.utils.tracking"


def install() -> None:
    """Wrap ``verl.utils.tracking.Tracking.finish`` (idempotent)."""
    from verl.utils.tracking import Tracking

    original = Tracking.finish
    if getattr(original, "__verl_ext_wandb_teardown__", False):
        return

    @functools.wraps(original)
    def finish(self, exit_code: int = 0):
        first = not getattr(self, "_finished", False)  # verl calls finish again from Tracking.__del__
        try:
            return original(self, exit_code=exit_code)
        finally:
            # From Tracking.__del__ at interpreter exit nothing can be imported any more: wandb's own hook runs then.
            if first and "wandb" in getattr(self, "logger", {}) and not sys.is_finalizing():
                sys.modules["wandb"].teardown(exit_code=exit_code)

    finish.__verl_ext_wandb_teardown__ = True
    Tracking.finish = finish


when_imported(TRACKING_MODULE, install)
