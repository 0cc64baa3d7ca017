"""examples/cpu_demo.py: its edit marking, and a reduced end-to-end run (the README's first command, smaller) that
drives verl's own trainer in the CPU debug profile."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "cpu_demo.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("cpu_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mark_edit(demo):
    source = "Heart is normal. Small left effusion. No pneumothorax."
    edited = "Heart is normal. No pleural effusion. No pneumothorax. Mild edema."
    assert demo.mark_edit(source, edited) == (
        "Heart is normal. [-Small left effusion.-] {+No pleural effusion.+} No pneumothorax. {+Mild edema.+}"
    )
    assert demo.mark_edit(source, source) == source


def test_edit_table_pairs_each_edit_with_its_source(demo):
    rows = [
        {"uid": "u", "session": 0, "response": "Heart is normal. Small effusion.", "reward": 0.5, "is_edited": False},
        {"uid": "u", "session": 1, "response": "Heart is normal. No effusion.", "reward": 0.9, "is_edited": True,
         "edit_source_session": 0, "edit_ops": ["conflict_replace"], "edit_tokens_kept": 4,
         "edit_tokens_inserted": 3},
    ]
    table = demo.edit_table(rows, {"u": "Heart is normal. No effusion."})
    assert "[1] EDITED copy of [0]  ops=conflict_replace  reward 0.500 -> 0.900" in table
    assert "[-Small effusion.-] {+No effusion.+}" in table


@pytest.mark.slow
def test_reduced_demo_run(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(DEMO), "--out", str(out), "--patients", "8", "--sft-steps", "150",
           "--steps", "2", "--prompts", "2", "--group", "4", "--response-length", "96"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sampled vs edited reports" in proc.stdout and "validation reward" in proc.stdout
    assert "EDITED copy of" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["steps"]) == 2
    step = summary["steps"][0]
    # A response cut at --response-length is never edited (its sentence fragment must not be spliced), so the warm-up
    # has to teach the policy to stop: 150 steps do, 30 do not (every source truncated, no edit).
    assert any(s["edit/edited_share"] > 0 for s in summary["steps"]), summary["steps"]
    assert "edit/skipped/truncated/share" in step and "actor/pg_loss" in step and "critic/score/mean" in step
    assert (out / "checkpoints" / "global_step_2" / "actor").is_dir()  # verl's own checkpoint
    assert list((out / "wandb").glob("offline-run-*"))
