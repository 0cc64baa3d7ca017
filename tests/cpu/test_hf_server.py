"""HFGenerationServer (in-process): verl's server contract, batching, and rollout log-probs equal to training's."""
import asyncio

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from verl_ext.testing.tiny_qwen import build_tiny_qwen25_vl

    return build_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny_qwen"), eos_probability=0.05)


@pytest.fixture(scope="module")
def server(model_dir):
    from verl_ext.cpu.hf_server import HFGenerationServer

    return HFGenerationServer(str(model_dir), response_length=24, prompt_length=256, seed=3, num_threads=1)


def _prompt(server, n_images=2, text="Findings?", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray((rng.random((64, 56 + 28 * k, 3)) * 255).astype("uint8")) for k in range(n_images)]
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    chat = server.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                                tokenize=False)
    ids = server.processor(text=[chat], images=images or None, return_tensors="pt")["input_ids"][0].tolist()
    return ids, images


def _training_log_probs(server, ids, out, images, temperature):
    """The response's log-probs under a plain teacher-forced forward (what the training engine computes)."""
    from verl_ext.cpu.hf_server import mm_token_type_ids

    full = torch.tensor(ids + out.token_ids)
    kwargs = {"input_ids": full[None], "attention_mask": torch.ones_like(full)[None],
              "mm_token_type_ids": mm_token_type_ids(server.processor, full)}
    if images:
        kwargs.update(server.processor.image_processor(images=images, return_tensors="pt"))
    with torch.no_grad():
        logits = server.model(**kwargs).logits[0].float() / temperature
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, full[1:, None]).squeeze(-1)
    return lp[len(ids) - 1 :]


def test_generate_follows_verl_server_contract(server):
    from verl.workers.rollout.replica import TokenOutput

    ids, images = _prompt(server)
    out = server.generate_sync(ids, {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0,
                                     "logprobs": False}, "r1", image_data=images)
    assert isinstance(out, TokenOutput) and 1 <= len(out.token_ids) <= 24 and out.log_probs is None
    if out.stop_reason == "completed":
        assert out.token_ids[-1] in server.eos_token_ids
    else:
        assert len(out.token_ids) == 24
    greedy = [server.generate_sync(ids, {"temperature": 0, "max_tokens": 5}, image_data=images).token_ids
              for _ in range(2)]
    assert greedy[0] == greedy[1] and len(greedy[0]) <= 5


def test_placeholder_and_padding_tokens_are_never_sampled(server):
    banned = set(server.suppress_token_ids)
    assert server.tokenizer.convert_tokens_to_ids("<|image_pad|>") in banned
    assert len(server.tokenizer) in banned and server.tokenizer.eos_token_id not in banned
    ids, images = _prompt(server, n_images=1)
    for i in range(6):
        out = server.generate_sync(ids, {"temperature": 1.5, "max_tokens": 24}, image_data=images)
        assert not banned & set(out.token_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_log_probs_match_the_training_forward(server, temperature):
    ids, images = _prompt(server)
    out = server.generate_sync(ids, {"temperature": temperature, "logprobs": True}, image_data=images)
    expected = _training_log_probs(server, ids, out, images, temperature)
    assert torch.allclose(expected, torch.tensor(out.log_probs), atol=1e-4)


def test_concurrent_requests_are_batched_and_stay_exact(server):
    prompts = [_prompt(server, n_images=2, seed=1), _prompt(server, n_images=1, text="Describe.", seed=2),
               _prompt(server, n_images=0, text="No image here, just text.", seed=3)]
    before = server.num_batches

    async def main():
        return await asyncio.gather(*(
            server.generate(prompt_ids=ids, sampling_params={"temperature": 1.0, "logprobs": True},
                            request_id=str(i), image_data=images or None)
            for i, (ids, images) in enumerate(prompts)
        ))

    outs = asyncio.run(main())
    assert server.num_batches == before + 1  # one left-padded generate call for all three
    for (ids, images), out in zip(prompts, outs):
        expected = _training_log_probs(server, ids, out, images, 1.0)
        assert torch.allclose(expected, torch.tensor(out.log_probs), atol=1e-4)


def test_set_weights_changes_generation(server):
    ids, images = _prompt(server, n_images=1)
    params = {"temperature": 0, "max_tokens": 6}
    before = server.generate_sync(ids, dict(params), image_data=images).token_ids
    state = {k: v.clone() for k, v in server.model.state_dict().items()}
    head = torch.zeros_like(state["lm_head.weight"])
    dot = server.tokenizer.convert_tokens_to_ids(".")
    head[dot, 0] = 100.0  # the fixture's embeddings all share a large positive coordinate 0 (eos_probability)
    server.set_weights_sync({"lm_head.weight": head}, global_steps=4)
    after = server.generate_sync(ids, dict(params), image_data=images)
    assert after.extra_fields["global_steps"] == 4 and after.token_ids[0] == dot
    server.set_weights_sync(state)
    assert server.generate_sync(ids, dict(params), image_data=images).token_ids == before
    with pytest.raises(ValueError, match="unexpected keys"):
        server.set_weights_sync({"not.a.parameter": torch.zeros(1)})
