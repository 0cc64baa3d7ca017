"""examples/cpu_demo.py: its helpers, and a reduced end-to-end run (the README's first command, smaller)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cpu_demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("cpu_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_studies_become_verl_rows(demo, tmp_path):
    paths = demo.build_data(tmp_path / "data", n_patients=6, seed=0)
    rows = pd.read_parquet(paths["train"])
    assert len(rows) > 0
    row = rows.iloc[0]
    content = row["prompt"][0]["content"]
    assert content.count("<image>") == len(row["images"]) in (1, 2)
    assert "As a radiologist assistant" in content and "INDICATION:" in content
    assert row["reward_model"]["ground_truth"] and row["images"][0]["bytes"][:4] == b"\x89PNG"


def test_mark_edit(demo):
    source = "Heart is normal. Small left effusion. No pneumothorax."
    edited = "Heart is normal. No pleural effusion. No pneumothorax. Mild edema."
    assert demo.mark_edit(source, edited) == (
        "Heart is normal. [-Small left effusion.-] {+No pleural effusion.+} No pneumothorax. {+Mild edema.+}"
    )
    assert demo.mark_edit(source, source) == source


@pytest.mark.slow
def test_reduced_demo_run(tmp_path):
    cmd = [sys.executable, str(DEMO), "--out", str(tmp_path / "demo"), "--patients", "8", "--sft-steps", "30",
           "--steps", "2", "--prompts", "2", "--group", "4", "--eval-prompts", "2", "--response-length", "64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sampled vs edited reports" in proc.stdout and "validation reward" in proc.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary["steps"]) == 2
    step = summary["steps"][0]
    assert step["edit/edited_share"] > 0 and "actor/pg_loss" in step and "critic/score/mean" in step
    assert list((tmp_path / "demo" / "wandb").glob("offline-run-*"))
