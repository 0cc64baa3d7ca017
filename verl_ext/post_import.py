"""Run a callback right after a module has been imported, without importing it.

verl imports ``verl_ext.register`` in every process (driver, TaskRunner, agent-loop, reward and vLLM workers), so
registration must stay cheap. But verl's registries live in heavy modules: ``verl.trainer.ppo.core_algos`` (advantage
estimators) and ``verl.trainer.ppo.v1`` (V1 trainers; it imports TransferQueue, the engine workers and the
checkpoint engine, about twice the cost of ``import verl`` itself). Importing them from the plugin would make every
process pay for them and would import the V1 trainer while ``verl/__init__`` is still running.

`when_imported(name, callback)` defers the registration instead: if the module is already in ``sys.modules`` the
callback runs at once; otherwise a meta-path finder wraps that module's loader so the callback runs as soon as the
module has finished executing, i.e. before the ``import`` statement that triggered it returns. Whoever imports the
registry (``TaskRunnerV1.run`` does ``from verl.trainer.ppo.v1 import get_trainer_cls``) therefore finds our names.
"""
from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from typing import Callable

logger = logging.getLogger(__name__)

_lock = threading.RLock()
_pending: dict[str, list[Callable[[], None]]] = {}


def _run(name: str, callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a broken plugin must not break verl's own import; the registry lookup fails loudly later
            logger.exception("verl_ext: registration callback %r for module %s failed", callback, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asks the other finders for the spec and wraps the loader's ``exec_module``."""

    def __init__(self) -> None:
        self._resolving: set[str] = set()

    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending or fullname in self._resolving:
            return None
        self._resolving.add(fullname)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._resolving.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module, _original=original_exec, _name=fullname):
            _original(module)
            with _lock:
                callbacks = _pending.pop(_name, [])
            _run(_name, callbacks)

        # Shadow the method on this loader instance only (one loader object per module spec).
        spec.loader.exec_module = exec_module
        return spec


_finder = _PostImportFinder()


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Call `callback()` once module `name` is imported: now if it already is, else right after its import."""
    with _lock:
        if name in sys.modules and name not in _pending:
            run_now = True
        else:
            run_now = False
            _pending.setdefault(name, []).append(callback)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
    if run_now:
        _run(name, [callback])
