"""The node actor's place and mechanics: ``verl_ext.node_actor`` sits below the reward and the edit step, which both
use it and no longer import each other (issue 19), and it runs jobs as its docstring says.

Imports are read from the source with ``ast``, function-level ones included (the old cycle was two lazy imports).
The Ray side (placement, timeouts, one actor shared by the reward and the analyzer): tests/reward/test_placement.py.
"""
import ast
from pathlib import Path

import pytest

import verl_ext

PACKAGE = Path(verl_ext.__file__).parent


def _module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _module_names()


def imports_of(module: str) -> set[str]:
    """The ``verl_ext`` modules that ``module`` imports anywhere in its source (``from pkg import sub`` counts as
    ``pkg.sub`` when ``sub`` is a module)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names
                       if f"{node.module}.{alias.name}" in MODULES)
    return {name for name in out if name in MODULES}


def reachable(module: str) -> set[str]:
    """Every ``verl_ext`` module that importing ``module`` may import, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for name in imports_of(todo.pop()) - seen:
            seen.add(name)
            todo.append(name)
    return seen


def _under(names: set[str], *packages: str) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in packages)}


def test_the_node_actor_imports_neither_the_reward_nor_the_rollout():
    assert not _under(reachable("verl_ext.node_actor"), "verl_ext.reward", "verl_ext.rollout")


@pytest.mark.parametrize("user", ["verl_ext.reward.service", "verl_ext.rollout.analysis"])
def test_the_reward_and_the_edit_step_use_the_node_actor(user):
    assert "verl_ext.node_actor" in imports_of(user)


def test_reward_service_and_rollout_analysis_do_not_import_each_other():
    assert not _under(imports_of("verl_ext.reward.service"), "verl_ext.rollout")
    assert not _under(imports_of("verl_ext.rollout.analysis"), "verl_ext.reward.service")
    # nor through others (config_get lives in verl_ext.config.access, not in the start-up checks that import both)
    assert "verl_ext.rollout.analysis" not in reachable("verl_ext.reward.service")
    assert "verl_ext.reward.service" not in reachable("verl_ext.rollout.analysis")


def test_the_import_reader_sees_lazy_imports():
    # a known function-level import, so that the tests above cannot pass by reading nothing
    assert "verl_ext.rollout.analysis" in imports_of("verl_ext.config.startup")


class EchoJob:
    """A job that counts its constructions and says which thread each method ran on."""

    built = 0

    def __init__(self, config: dict, model_thread):
        self.config = config
        EchoJob.built += 1

    def plain(self, x):
        import threading

        return x, threading.current_thread().name

    async def coroutine(self, x):
        import threading

        return x, threading.current_thread().name


def test_node_actor_builds_each_job_once_per_config_and_runs_plain_methods_on_its_model_thread():
    import asyncio
    import threading

    from verl_ext.node_actor import NodeActor

    actor = NodeActor(torch_threads=1)
    job = f"{__name__}:EchoJob"
    EchoJob.built = 0

    async def main():
        return [await actor.run(job, {"a": 1}, "plain", 1), await actor.run(job, {"a": 1}, "coroutine", 2),
                await actor.run(job, {"a": 2}, "plain", 3)]

    out = asyncio.new_event_loop().run_until_complete(main())
    assert [x for x, _ in out] == [1, 2, 3]
    assert out[0][1].startswith("node-models") and out[2][1].startswith("node-models")
    assert out[1][1] == threading.current_thread().name  # coroutines run on the actor's event loop
    assert EchoJob.built == 2 and actor.stats()["jobs"] == [job, job]  # one per distinct config
