"""The oracle trajectory's response: the reference under the rollouts' own chat template."""
import pytest

from verl_ext.rollout.oracle_worker import oracle_response_ids, reference_of


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    return AutoTokenizer.from_pretrained(str(build_tiny_qwen25_vl(tmp_path_factory.mktemp("q"))))


def test_oracle_is_the_assistant_turn_of_the_chat_template(tokenizer):
    reference = "The heart is enlarged. Small left pleural effusion."
    messages = [{"role": "user", "content": "Describe the findings of this chest X-ray."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reference}], tokenize=True)
    full = list(full["input_ids"] if hasattr(full, "keys") else full)
    ids, truncated = oracle_response_ids(tokenizer, reference, tokenizer.eos_token_id, max_length=64)
    assert not truncated and ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # the template renders "<prompt><reference><|im_end|>\n": the oracle is exactly the assistant turn
    assert full[: len(prompt) + len(ids)] == prompt + ids and len(full) == len(prompt) + len(ids) + 1
    cut, truncated = oracle_response_ids(tokenizer, reference, tokenizer.eos_token_id, max_length=4)
    assert truncated and len(cut) == 4


def test_missing_reference_is_a_clear_error():
    assert reference_of({"reward_model": {"ground_truth": "No effusion."}}) == "No effusion."
    with pytest.raises(ValueError, match="ground_truth"):
        reference_of({"reward_model": {"ground_truth": "  "}})
