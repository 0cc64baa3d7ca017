"""examples/cpu_demo.py: its edit marking, and a reduced end-to-end run (the README's first command, smaller) that
drives verl's own trainer in the CPU debug profile."""
import importlib.util
import json
import re
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


def test_help_shows_every_default():
    proc = subprocess.run([sys.executable, str(DEMO), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    options = [o for o in re.findall(r"^  (--[a-z-]+)", proc.stdout, re.M) if o != "--help"]
    assert len(options) == 14, options
    helps = re.split(r"^  (?=--)", proc.stdout, flags=re.M)[2:]
    missing = [h.split()[0] for h in helps if "(default:" not in " ".join(h.split())]
    assert not missing, f"options without their default in --help: {missing}"


def test_progress_names_each_stage_of_verls_start(demo, capsys):
    lines = [
        "[validate_config] All configuration checks passed successfully!",
        "2026-12-07 09:51:09,953\tINFO worker.py:2029 -- Started a local Ray instance.",
        "(TaskRunnerV1 pid=1) INFO:2026-12-07 09:51:30,555:train and validate dataloader initialized, train ...",
        "(TaskRunnerV1 pid=1) noise",
        "(TaskRunnerV1 pid=1) INFO:2026-12-07 09:51:55,372:all initialize finished, ready to fit",  # skips two
        "(TaskRunnerV1 pid=1) Started a local Ray instance",  # an earlier milestone again: ignored
        "(TaskRunnerV1 pid=1) (\"Initial validation metrics: {'val-core/iu_xray/reward/mean@2': \"",
    ]
    progress = demo.Progress(start=0.0, every=3600)
    for line in lines:
        progress.feed(line)
    said = [line.split("verl: ", 1)[1].rsplit("  (", 1)[0] for line in capsys.readouterr().out.splitlines()]
    stages = dict(demo.VERL_MILESTONES)
    assert said == [stages["All configuration checks passed"], stages["Started a local Ray instance"],
                    stages["train and validate dataloader initialized"],
                    stages["all initialize finished, ready to fit"], stages["Initial validation metrics"]]


def test_reward_curves_plot_the_logged_metrics(demo, tmp_path):
    val = "val-core/iu_xray/reward/mean@2"
    metrics = {0: {val: 0.2}, 1: {"sampled/reward/mean": 0.3, "edited/reward/mean": 0.5},
               2: {"sampled/reward/mean": 0.35, "edited/reward/mean": 0.55, val: 0.25}}
    curves = demo.plot_curves(metrics, val, tmp_path / "curves.png")
    assert curves == {"train: sampled responses": [(1, 0.3), (2, 0.35)],
                      "train: edited copies": [(1, 0.5), (2, 0.55)],
                      "validation (greedy, held-out)": [(0, 0.2), (2, 0.25)]}
    from PIL import Image

    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG" and image.size[0] > 300


@pytest.mark.slow
def test_reduced_demo_run(demo, tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, str(DEMO), "--out", str(out), "--patients", "8", "--sft-steps", "150",
           "--steps", "2", "--prompts", "2", "--group", "4", "--response-length", "96"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    (tmp_path / "stdout.txt").write_text(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sampled vs edited reports" in proc.stdout and "validation reward" in proc.stdout
    assert "EDITED copy of" in proc.stdout
    # verl's start is narrated: every milestone of VERL_MILESTONES passes, in order, before the first step's line
    said = [line.split("] verl: ", 1)[1].rsplit("  (", 1)[0] for line in proc.stdout.splitlines() if "] verl: " in line]
    milestones = [stage for _, stage in demo.VERL_MILESTONES]
    assert [s for s in said if s in milestones] == milestones, said
    first_step = next(i for i, s in enumerate(said) if s.startswith("step 1:"))
    assert said.index(milestones[-2]) < first_step < said.index(milestones[-1]), said
    png = out / "reward_curves.png"
    assert f"reward curves (train sampled vs edited, validation): {png}" in proc.stdout and png.stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["steps"]) == 2
    step = summary["steps"][0]
    # A response cut at --response-length is never edited (its sentence fragment must not be spliced), so the warm-up
    # has to teach the policy to stop: 150 steps do, 30 do not (every source truncated, no edit).
    assert any(s["edit/edited_share"] > 0 for s in summary["steps"]), summary["steps"]
    assert "edit/skipped/truncated/share" in step and "actor/pg_loss" in step and "critic/score/mean" in step
    assert (out / "checkpoints" / "global_step_2" / "actor").is_dir()  # verl's own checkpoint
    assert list((out / "wandb").glob("offline-run-*"))
