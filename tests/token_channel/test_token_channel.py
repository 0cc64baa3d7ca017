"""The per-token channel: encoding, merging the rollout/reward/edit producers, padding (verl_ext.token_channel)."""
import numpy as np
import pytest
import torch

from verl_ext import token_channel as tc


def test_roundtrip_is_exact_float32_and_keeps_scalars():
    ch = tc.Channel().put_array("w", [1.0, 1.25, 3.1415927]).put_scalar("mix", 0.05)
    back = tc.decode(tc.encode(ch))
    np.testing.assert_array_equal(back.arrays["w"], np.float32([1.0, 1.25, 3.1415927]))
    assert back.scalars == {"mix": 0.05}
    assert isinstance(tc.encode(ch), str)  # verl's validation metrics skip strings
    assert tc.decode("").arrays == {} and tc.decode(None).scalars == {}


def test_bad_values_and_payloads_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        tc.Channel().put_array("w", [1.0, float("nan")])
    with pytest.raises(ValueError, match="version"):
        tc.decode('{"v": 99, "a": {}, "s": {}}')
    with pytest.raises(TypeError):
        tc.decode([1, 2])


def test_inserted_mask_from_the_edit_steps_kept_runs():
    # edited response of 7 tokens: sampled ids [0,3) kept at 0, [5,7) kept at 4; tokens 3 and 6 were written
    extra = {"is_edited": True, "edit_kept_runs": [[0, 3, 0], [5, 7, 4]]}
    assert tc.inserted_token_mask(extra, 7).tolist() == [0, 0, 0, 1, 0, 0, 1]
    assert tc.inserted_token_mask({"is_edited": False}, 5) is None
    with pytest.raises(ValueError, match="does not fit"):
        tc.inserted_token_mask({"is_edited": True, "edit_kept_runs": [[0, 9, 0]]}, 5)


def test_read_merges_reward_and_rollout_producers_and_checks_lengths():
    reward_info = tc.put_reward_info({"score": 1.0}, tc.Channel().put_array(tc.DITPO_WEIGHT, [1.0, 2.0, 1.0]))
    extra = {tc.CHANNEL_KEY: tc.encode(tc.Channel().put_scalar("orapo_weight", 0.1)), "reward_extra_info": reward_info,
             "is_edited": True, "edit_kept_runs": [[0, 2, 0]]}
    ch = tc.read(extra, 3)
    assert ch.arrays[tc.DITPO_WEIGHT].tolist() == [1.0, 2.0, 1.0]
    assert ch.arrays[tc.INSERTED].tolist() == [0.0, 0.0, 1.0]
    assert ch.scalars == {"orapo_weight": 0.1}
    with pytest.raises(ValueError, match="2 values for a response of 3"):
        tc.read({"reward_extra_info": tc.put_reward_info({}, tc.Channel().put_array("w", [1, 1]))}, 3)
    dup = {tc.CHANNEL_KEY: tc.encode(tc.Channel().put_scalar("x", 1)),
           "reward_extra_info": tc.put_reward_info({}, tc.Channel().put_scalar("x", 2))}
    with pytest.raises(ValueError, match="twice"):
        tc.read(dup, 1)


def test_stack_pads_and_fills_missing():
    chans = [tc.Channel().put_array("w", [2.0, 3.0]), tc.Channel(), tc.Channel().put_array("w", [4.0])]
    out, present = tc.stack(chans, "w", [2, 3, 1], width=3, fill=1.0)
    assert present == 2
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0, 1.0], [1.0, 1.0, 1.0], [4.0, 1.0, 1.0]]))
