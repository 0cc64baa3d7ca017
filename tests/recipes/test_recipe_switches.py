"""recipes/common.sh: --preflight and the attention switch (flash-attn absent -> sdpa without padding removal)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SDPA = ["+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False"]


def _cmd(recipe: str, *args: str, **env: str):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VERL_EXT_", "ATTN_IMPL"))}
    full.update(VERL_EXT_PRINT_CMD="1", PYTHON=sys.executable, MODEL_PATH="/m", **env)
    out = subprocess.run(["bash", str(REPO / "recipes" / f"{recipe}.sh"), *args], env=full, capture_output=True,
                         timeout=60)
    return out.returncode, out.stdout.decode().split("\0")[:-1], out.stderr.decode()


def test_preflight_runs_the_preflight_module():
    rc, cmd, _ = _cmd("mimic_editgrpo", "--preflight", "trainer.logger=[console]")
    assert rc == 0 and cmd[1:3] == ["-m", "verl_ext.preflight"] and cmd[-1] == "trainer.logger=[console]"
    rc, cmd, _ = _cmd("iu_xray_sft", "--preflight")
    assert rc == 0 and cmd[1:3] == ["-m", "verl_ext.preflight"] and "--config-name=editgrpo_sft" in cmd


def test_attention_follows_flash_attn_availability():
    rc, cmd, err = _cmd("mimic_grpo")
    assert rc == 0
    if importlib.util.find_spec("flash_attn") is None:
        assert all(o in cmd for o in SDPA) and "attn_implementation=sdpa" in err
    else:
        assert not any(o in cmd for o in SDPA)
    rc, cmd, _ = _cmd("mimic_grpo", ATTN_IMPL="flash_attention_2")
    assert rc == 0 and not any("attn_implementation" in o for o in cmd)
    rc, cmd, _ = _cmd("iu_xray_sft", ATTN_IMPL="sdpa")
    assert {"+model.override_config.attn_implementation=sdpa", "model.use_remove_padding=False",
            "data.pad_mode=right"} <= set(cmd)
    rc, _, err = _cmd("mimic_grpo", ATTN_IMPL="triton")
    assert rc == 2 and "ATTN_IMPL=triton" in err
