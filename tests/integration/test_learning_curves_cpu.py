"""bench/learning_curves.py: the imbalanced SFT targets, the rare-finding reward fields, the exploration statistics
and the command-line checks (pure logic), and the CI guard against a silently inert objective.

The guard (slow) is a short EditGRPO run of verl's trainer on the bench's ``--sft-conflict`` task: the warm-up
targets state a pneumothorax that every reference denies, so the SFT policy contradicts every reference, and the
paper's first edit rule (a conflicting sentence is replaced by the reference's) fixes it in every group. It asserts
that the held-out reward after training exceeds the reward before training by `MARGIN` (how it was chosen: its
comment). A wiring test passes on an inert objective (a zero or sign-flipped advantage, edits that never reach the
loss, a reference model that is the policy); this one does not: the same run with every advantage zeroed
(``_inert_advantage.py``) is the ``inert`` case, which must fail the check. It costs a second launch, so it runs
only with ``VERL_EXT_CONTROL_TESTS=1``.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "learning_curves.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("learning_curves", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_sft_targets_keep_the_rare_sentence_in_the_chosen_share(bench, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    sentences = bench.rare_sentences("left")
    rows = [{"reward_model": {"ground_truth": f"The heart size is normal. {sentences[i % len(sentences)]} "
                                              "No pneumothorax is seen.", "style": "rule"}} for i in range(200)]
    src = tmp_path / "train-00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    files, kept, total = bench.write_sft_files([str(src)], tmp_path / "sft", 0.2, seed=0)
    out = pq.read_table(files[0]).to_pylist()
    assert total == 200 and 25 <= kept <= 55  # Binomial(200, 0.2)
    with_rare = [r for r in out if any(s in r["reward_model"]["ground_truth"] for s in sentences)]
    assert len(with_rare) == kept
    dropped = [r["reward_model"]["ground_truth"] for r in out if r not in with_rare]
    assert set(dropped) == {"The heart size is normal. No pneumothorax is seen."}


def test_sft_targets_refuse_a_target_without_the_rare_sentence(bench, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "train-00000.parquet"
    pq.write_table(pa.Table.from_pylist([{"reward_model": {"ground_truth": "No pleural effusion."}}]), src)
    with pytest.raises(ValueError, match="without exactly one rare sentence"):
        bench.write_sft_files([str(src)], tmp_path / "sft", 0.2, seed=0)


def test_reward_counts_any_wording_of_the_rare_fact(bench):
    reward = bench._reward_module()
    ref = "The heart size is normal. There is a small left pleural effusion. No pneumothorax is seen."
    hit = reward.compute_score("iu_xray", "Blunting of the left costophrenic angle is compatible with a small "
                               "effusion. The heart size is normal.", ref)
    miss = reward.compute_score("iu_xray", "The heart size is normal. No pleural effusion is seen.", ref)
    assert hit["rare_in_ref"] == 1.0 and hit["rare_hit"] == 1.0
    assert miss["rare_in_ref"] == 1.0 and miss["rare_hit"] == 0.0
    assert reward.compute_score("iu_xray", ref, "The heart size is normal.")["rare_in_ref"] == 0.0
    with pytest.raises(ValueError, match="exactly one"):
        reward.compute_score("iu_xray", ref, ref, rare_sentence="No pleural effusion.")


def test_reward_flags_a_response_that_contradicts_its_reference(bench):
    reward = bench._reward_module()
    ref = "The heart size is normal. There is a small left pleural effusion. No pneumothorax is seen."
    assert reward.compute_score("iu_xray", "There is a small left apical pneumothorax.", ref)["contradicts"] == 1.0
    assert reward.compute_score("iu_xray", "There is no pneumothorax.", ref)["contradicts"] == 0.0
    assert reward.compute_score("iu_xray", "The heart is enlarged.", ref)["contradicts"] == 1.0
    assert reward.compute_score("iu_xray", "There is consolidation.", ref)["contradicts"] == 0.0  # not stated: FP


def test_sft_conflict_states_the_denied_finding_in_every_target(bench, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    absent, present = bench.conflict_sentences("left")
    rare = bench.rare_sentences("left")[0]
    rows = [{"reward_model": {"ground_truth": f"{rare} {absent[i % len(absent)]} The heart size is normal.",
                              "style": "rule"}} for i in range(20)]
    src = tmp_path / "train-00000.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    files, _, _ = bench.write_sft_files([str(src)], tmp_path / "sft", 0.5, seed=0, conflict=True)
    for row in pq.read_table(files[0]).to_pylist():
        text = row["reward_model"]["ground_truth"]
        assert present[0] in text and not any(a in text for a in absent), text
    pq.write_table(pa.Table.from_pylist([{"reward_model": {"ground_truth": rare}}]), src)
    with pytest.raises(ValueError, match="pneumothorax negation"):
        bench.write_sft_files([str(src)], tmp_path / "sft2", 0.5, seed=0, conflict=True)


def test_rare_exposure_counts_the_rare_sentence_and_its_advantage(bench, tmp_path):
    ref = "There is a small left pleural effusion. The heart size is normal."
    with_rare, without = "There is a small left pleural effusion.", "The heart size is normal."
    # one group: two sampled responses (session 0 says it, session 1 does not) and their edited copies (2, 3); the
    # copy of session 1 gains the sentence (fn_append), the copy of session 0 keeps it (conflict_replace elsewhere)
    responses = {0: (with_rare, 0.5, False), 1: (without, 0.3, False), 2: (ref, 0.7, True), 3: (ref, 0.6, True)}
    (tmp_path / "rollouts").mkdir()
    rows = [{"uid": f"g_{k}_0", "output": text, "gts": ref, "score": score} for k, (text, score, _) in
            responses.items()]
    edits = [{"uid": "g", "session": k, "is_edited": edited, "edit_source_session": {2: 0, 3: 1}.get(k, -1),
              "edit_ops": {2: ["conflict_replace"], 3: ["fn_append"]}.get(k, []),
              "reward_extra_info": {"rare_hit": float(k != 1)}} for k, (_, _, edited) in responses.items()]
    for name, items in (("1.jsonl", rows), ("edits_1.jsonl", edits)):
        (tmp_path / "rollouts" / name).write_text("".join(json.dumps(r) + "\n" for r in items))
    out = bench.rare_exposure(tmp_path)
    mean = (0.5 + 0.3 + 0.7 + 0.6) / 4
    assert out["rare_sampled_per_step"] == 1 and out["rare_edited_per_step"] == 2
    assert out["rare_sampled_advantage_mean"] == pytest.approx(0.5 - mean)
    assert out["rare_edited_advantage_mean"] == pytest.approx((0.7 + 0.6) / 2 - mean)
    assert out["rare_sampled_positive_share"] == 0 and out["rare_edited_positive_share"] == 1
    assert out["edits"] == 2 and out["edits_inserting_rare_share"] == 0.5
    assert out["edit_ops_share"] == {"conflict_replace": 0.5, "fn_append": 0.5}


def test_parse_args_rejects_a_last_step_without_validation(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", "x", "--steps", "10", "--test-freq", "4"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", "x", "--variants", "grpo,ppo"])


#: The guard's run: `bench/learning_curves.py` options (the conflict task; weight decay 0, so that a zero advantage
#: leaves the policy exactly where it started: AdamW's decay alone moves it, and Adam turns the KL term's tiny
#: gradients off the reference into full-size steps).
GUARD_STEPS = 6
GUARD_ARGS = ["--variants", "editgrpo", "--seeds", "1", "--steps", str(GUARD_STEPS), "--test-freq", str(GUARD_STEPS),
              "--sft-conflict", "--patients", "300", "--sft-steps", "200", "--prompts", "16", "--lr", "1e-3",
              "--val-n", "8", "--override", "actor_rollout_ref.actor.optim.weight_decay=0"]
#: Held-out reward gain the run must exceed: 3 standard deviations of the before/after difference of a run that
#: learns nothing, 3 * sqrt(2) * sigma0, sigma0 being the seed-to-seed spread of the held-out reward of one policy
#: (pure validation noise). Measured at 42 x 4 samples: three validations of the SFT policy (two runs' step 0, and
#: step 6 of the inert run, whose parameters are exactly the SFT policy's: grad norm 0 at every step) gave 0.217,
#: 0.222, 0.195, SD 0.0144 (per-sample SD 0.153 / sqrt(168) = 0.0118). The guard validates 42 x 8 samples:
#: sigma0 = 0.0144 / sqrt(2) = 0.0102, MARGIN = 3 * 1.414 * 0.0102 = 0.043. Gains measured: +0.105 (6 steps,
#: 42 x 4), +0.114 and +0.111 (8 steps, 42 x 8, two seeds); the inert run: -0.027 (42 x 4) and -0.006 (42 x 8, the
#: `inert` case). Four validations of the SFT policy at 42 x 8 spread by SD 0.006: the margin is conservative.
MARGIN = 0.043


@pytest.fixture(scope="module")
def guard_task(bench, tmp_path_factory):
    root = tmp_path_factory.mktemp("learning_guard")
    args = bench.parse_args(["--out", str(root), *GUARD_ARGS])
    return root, args, bench.build_task(root, args)


@pytest.mark.slow
@pytest.mark.parametrize("objective", [
    "editgrpo",
    pytest.param("inert", marks=pytest.mark.skipif(os.environ.get("VERL_EXT_CONTROL_TESTS") != "1",
                                                   reason="the inert control: VERL_EXT_CONTROL_TESTS=1")),
])
def test_editgrpo_raises_the_held_out_reward(bench, guard_task, objective, monkeypatch):
    """Held-out reward after GUARD_STEPS EditGRPO steps > before + MARGIN; with every advantage zeroed it is not."""
    root, args, task = guard_task
    if objective == "inert":
        monkeypatch.setenv("VERL_USE_EXTERNAL_MODULES", "_inert_advantage")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).resolve().parent),
                                                          os.environ.get("PYTHONPATH", "")]))
    run = bench.run_one(task, "editgrpo", 0, root / "runs" / objective, args)
    points = bench.validation_points(run)
    assert sorted(points) == [0, GUARD_STEPS]
    start, end = points[0], points[GUARD_STEPS]
    before, after = start["reward"], end["reward"]
    train = bench.train_stats(run)
    print(f"{objective}: held-out reward {before:.3f} -> {after:.3f} ({start['samples']} samples), responses "
          f"contradicting their reference {start['contradicting']:.2f} -> {end['contradicting']:.2f}; "
          f"training: {json.dumps(train)}")
    assert train["edit/edited_share"] > 0.4  # edits were made and trained on (G/2 of G per group)
    learnt = after - before > MARGIN
    assert learnt == (objective == "editgrpo"), (objective, before, after, MARGIN)

