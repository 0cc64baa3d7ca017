"""bench/learning_curves.py: the imbalanced SFT targets, the rare-finding reward fields, the exploration statistics
and the command-line checks (pure logic, no trainer).

No slow "does it learn" guard is here: on this task a short EditGRPO run's held-out gain is within the noise of a
zero-advantage control run (README, "Does it learn?"), so such a test could not fail reliably on an inert objective.
"""
import importlib.util
import json
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
