"""DEER's gradient DiTPO weights and the LUFFY-shaped inserted-token loss through verl's own trainer on CPU.

The resumed launch of ``conftest.py``'s ``editgrpo_runs`` (``python -m verl.trainer.main_ppo`` in the CPU debug
profile, as ``test_main_ppo_cpu.py``): step 3 of EditGRPO (scheme ``paper``, so every group holds edited copies) with
``ditpo.weighting=gradient`` -- CheXbert saliency computed in the ``radiology`` reward with the tiny scorer models --
and ``actor.policy_loss.loss_mode=inserted_luffy`` run by verl's FSDP engine through the channel's loss wrapper
(`verl_ext.trainer.token_channel_step`).

Everything asserted is read from what the run wrote:

* ``rollouts/edits_3.jsonl`` (the editgrpo trainer's edit records, with the channel's per-token fields:
  ``token_ids``, ``advantages`` as the actor read them and ``verl_ext_inserted``) and the reward's encoded channel
  in each record's ``reward_extra_info``;
* ``rollouts/3.jsonl`` (verl's own generation dump: each trajectory's reference);
* the step's metrics in verl's file logger (``actor/*`` come back from the FSDP workers' loss).

Known answers: Eq. 12's ``w = 1 + beta * s`` is > 1 on every token CheXbert reads when the reference has a positive
condition, exactly 1 on tokens without characters (end of turn) or with only whitespace, and 1 everywhere when the
reference has no positive condition (no target logit, no gradient); the advantages the loss read are Dr. GRPO's
``A_i = r_i - mean(group)`` times ``w`` token by token; inserted tokens are flagged exactly on edited responses, and
the LUFFY loss reports their share from inside the actor.
"""
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

G = 4
PROMPTS = 2
STEP = 3  # the resumed step


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(editgrpo_runs):
    out = editgrpo_runs.out
    metrics = {row["step"]: row["data"] for row in _jsonl(out / "resumed.jsonl")}
    return {"out": out, "inputs": editgrpo_runs.inputs, "log": editgrpo_runs.resumed, "metrics": metrics[STEP],
            "records": _jsonl(out / "rollouts" / f"edits_{STEP}.jsonl"),
            "dump": {row["uid"]: row for row in _jsonl(out / "rollouts" / f"{STEP}.jsonl")}}


def _weights(record: dict) -> np.ndarray:
    from verl_ext import token_channel

    channel = token_channel.decode(record["reward_extra_info"][token_channel.CHANNEL_KEY])
    return channel.arrays[token_channel.DITPO_WEIGHT]


def test_gradient_weights_reach_the_loss(run):
    from transformers import AutoTokenizer

    from verl_ext.clinical.chexbert import CheXbertLabeler

    records, scorers = run["records"], run["inputs"].scorers
    assert len(records) == PROMPTS * G
    tok = AutoTokenizer.from_pretrained(str(run["inputs"].model))
    bert = AutoTokenizer.from_pretrained(scorers["chexbert_bert"])
    labeler = CheXbertLabeler(scorers["chexbert_checkpoint"], scorers["chexbert_bert"], device="cpu")
    references = {r["key"]: run["dump"][r["key"]]["gts"] for r in records}
    positive = {ref: bool(labeler.labels([ref])[0].any()) for ref in set(references.values())}
    assert any(positive.values()), "no reference with a positive CheXbert condition: the test could not fail"

    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["uid"], []).append(r)
    read, silent, ends = 0, 0, 0
    for r in records:
        ids, w = r["token_ids"], _weights(r)
        assert r["reward_extra_info"]["ditpo_weighted"] == 1 and len(w) == len(ids) == len(r["advantages"])
        for k, token in enumerate(ids):
            text = tok.decode([token], skip_special_tokens=True)
            if not text.strip():  # end of turn / whitespace: no CheXbert token, no gradient
                assert w[k] == 1.0, (r["key"], k, repr(text), w[k])
                silent += 1
                ends += token == tok.eos_token_id
            elif positive[references[r["key"]]] and "\ufffd" not in text and bert.tokenize(text):
                # a token CheXbert reads (a byte-fragment token decodes to U+FFFD alone: its characters are not its own)
                assert w[k] > 1.0, (r["key"], k, text, w[k])
                read += 1
        if not positive[references[r["key"]]]:
            assert np.all(w == 1.0), r["key"]
        # the advantages the actor's loss read: Dr. GRPO's group-centred reward, times w token by token
        seq_adv = r["reward"] - np.mean([g["reward"] for g in groups[r["uid"]]])
        np.testing.assert_allclose(r["advantages"], seq_adv * w, rtol=1e-4, atol=1e-5, err_msg=r["key"])
    assert read > 0 and silent > 0 and ends > 0, (read, silent, ends)

    m = run["metrics"]
    assert m["ditpo/weighted_share"] == 1.0 and m["ditpo/weight/max"] > 1.0
    weights = np.concatenate([_weights(r) for r in records])
    np.testing.assert_allclose(m["ditpo/weight/mean"], weights.mean(), rtol=1e-5)
    assert m["timing_s/token_channel"] >= 0


def test_inserted_luffy_loss_runs_in_the_fsdp_engine(run):
    from transformers import AutoTokenizer

    from verl_ext.trainer.token_channel_step import INSERTED_FIELD

    records, m = run["records"], run["metrics"]
    eos = AutoTokenizer.from_pretrained(str(run["inputs"].model)).eos_token_id
    edited = [r for r in records if r["is_edited"]]
    assert edited and m["edit/num_edited"] == len(edited) and m["edit/tokens_inserted/sum"] > 0
    for r in records:
        inserted = np.asarray(r[INSERTED_FIELD])
        assert set(np.unique(inserted)) <= {0.0, 1.0} and len(inserted) == len(r["token_ids"])
        if r["is_edited"]:
            # edit_tokens_inserted counts the reference tokens spliced in; the appended end of turn is not sampled
            ends_turn = r["token_ids"][-1] == eos
            assert r["edit_tokens_inserted"] > 0 and inserted.sum() == r["edit_tokens_inserted"] + ends_turn, r["key"]
            assert not ends_turn or inserted[-1] == 1.0
        else:
            assert inserted.sum() == 0, r["key"]
    share = sum(np.sum(r[INSERTED_FIELD]) for r in records) / sum(len(r["token_ids"]) for r in records)
    np.testing.assert_allclose(m["edit/inserted_token_share"], share, rtol=1e-5)
    # reported by compute_policy_loss_inserted_luffy inside verl's FSDP actor, from the mask of its micro-batch
    # (one micro-batch of PROMPTS * G trajectories): the same share as the trainer wrote
    assert 0.0 < m["actor/inserted_token_share"] < 1.0
    np.testing.assert_allclose(m["actor/inserted_token_share"], share, rtol=1e-5)
    assert np.isfinite(m["actor/pg_loss"]) and np.isfinite(m["actor/grad_norm"]) and m["actor/grad_norm"] > 0
