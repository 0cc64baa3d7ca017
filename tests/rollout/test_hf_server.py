"""HFGenerationServer (in-process): verl's server contract, and rollout log-probs that match the training forward."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture(scope="module")
def server(model_dir):
    from verl_ext.rollout.hf_server import HFGenerationServer

    return HFGenerationServer(str(model_dir), response_length=24, prompt_length=256, seed=3, num_threads=1)


def _prompt(server, n_images=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray((rng.random((64, 56, 3)) * 255).astype("uint8")) for _ in range(n_images)]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": "Findings?"}]
    text = server.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                tokenize=False)
    ids = server.processor(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
    return ids, images


def test_generate_follows_verl_server_contract(server):
    from verl.workers.rollout.replica import TokenOutput

    ids, images = _prompt(server)
    out = server.generate(prompt_ids=ids, sampling_params={"temperature": 1.0, "top_p": 1.0, "top_k": -1,
                                                           "repetition_penalty": 1.0, "logprobs": False},
                          request_id="r1", image_data=images)
    assert isinstance(out, TokenOutput) and 1 <= len(out.token_ids) <= 24 and out.log_probs is None
    if out.stop_reason == "completed":
        assert out.token_ids[-1] in server.eos_token_ids
    else:
        assert len(out.token_ids) == 24
    greedy = [server.generate(prompt_ids=ids, sampling_params={"temperature": 0, "max_tokens": 5}, request_id=f"g{i}",
                              image_data=images).token_ids for i in range(2)]
    assert greedy[0] == greedy[1] and len(greedy[0]) <= 5


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_log_probs_match_the_training_forward(server, temperature):
    from verl_ext.rollout.hf_actor import sequence_next_token_log_probs
    from verl_ext.rollout.hf_server import mm_token_type_ids

    ids, images = _prompt(server)
    out = server.generate(prompt_ids=ids, sampling_params={"temperature": temperature, "logprobs": True},
                          request_id="lp", image_data=images)
    full = torch.tensor(ids + out.token_ids)
    mm = server.processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        lp = sequence_next_token_log_probs(server.model, full, None, dict(mm), temperature,
                                           mm_token_type_ids=mm_token_type_ids(server.processor, full))
    trained = lp[len(ids) - 1 : len(full) - 1]
    assert torch.allclose(trained, torch.tensor(out.log_probs), atol=1e-4)


def test_set_weights_changes_generation(server, model_dir):
    ids, images = _prompt(server, n_images=1)
    params = {"temperature": 0, "max_tokens": 6}
    before = server.generate(prompt_ids=ids, sampling_params=dict(params), request_id="a", image_data=images).token_ids
    state = {k: v.clone() for k, v in server.model.state_dict().items()}
    bias = torch.zeros_like(state["lm_head.weight"])
    bias[:, :] = -100.0
    bias[server.tokenizer.convert_tokens_to_ids("."), :] = 0.0
    server.set_weights({"lm_head.weight": bias + 0 * state["lm_head.weight"]}, global_steps=4)
    after = server.generate(prompt_ids=ids, sampling_params=dict(params), request_id="b", image_data=images)
    assert after.extra_fields["global_steps"] == 4 and after.token_ids != before
    server.set_weights(state)
    with pytest.raises(ValueError, match="unexpected keys"):
        server.set_weights({"not.a.parameter": torch.zeros(1)})
