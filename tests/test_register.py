"""verl swallows plugin import errors (at DEBUG level), so these tests prove registration from a fresh interpreter."""
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, sys
import verl
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
heavy = sorted(m for m in ("RaTEScore", "radgraph", "f1chexbert", "medspacy", "spacy", "sentence_transformers")
               if m in sys.modules)
print(json.dumps({
    "adv": sorted(ADV_ESTIMATOR_REGISTRY),
    "reward": {k: v.__module__ for k, v in REWARD_MANAGER.items()},
    "trainer": {k: v.__module__ for k, v in TRAINER_REGISTRY.items()},
    "heavy": heavy,
}))
"""


def _probe(**env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_registered(names: dict) -> None:
    assert "dr_grpo" in names["adv"]
    assert names["reward"].get("radiology") == "verl_ext.reward.manager"
    assert names["trainer"].get("editgrpo") == "verl_ext.trainer.editgrpo_trainer"
    assert names["trainer"].get("orapo") == "verl_ext.trainer.orapo_trainer"


@pytest.fixture(scope="module")
def entry_point_names() -> dict:
    return _probe()


def test_plain_import_verl_registers_plugins(entry_point_names):
    _assert_registered(entry_point_names)


def test_registration_stays_import_light(entry_point_names):
    # verl imports the plugin in every Ray process: scorer stacks must load lazily, not at registration.
    assert entry_point_names["heavy"] == []


def test_env_var_fallback_registers_without_entry_points():
    names = _probe(VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="verl_ext.register")
    _assert_registered(names)


def test_disabled_plugins_register_nothing():
    names = _probe(VERL_USE_EXTERNAL_PLUGINS="none")
    assert "radiology" not in names["reward"] and "editgrpo" not in names["trainer"]
