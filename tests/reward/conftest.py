"""Tiny scorer models, a verl-style reward config, and DataProto items built the way verl's agent loop builds them."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def scorer_paths():
    from verl_ext.testing.scorer_models import shared_models

    return shared_models()


@pytest.fixture(scope="session")
def model_paths(scorer_paths):
    return scorer_paths.as_dict()


@pytest.fixture(scope="session")
def tokenizer(scorer_paths):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(scorer_paths.chexbert_bert))


@pytest.fixture()
def fresh_services():
    """A fresh scoring service per test (models stay loaded; caches and counters start empty)."""
    from verl_ext.reward.service import reset_services

    reset_services()
    yield
    reset_services()


def trainer_config(scorer_paths, **reward_kwargs):
    """The slice of verl's trainer config that RewardLoopWorker and load_reward_manager read."""
    from omegaconf import OmegaConf

    kwargs = {"models": scorer_paths.as_dict(), "device": "cpu", "service": "local"}
    kwargs.update(reward_kwargs)
    return OmegaConf.create(
        {
            "actor_rollout_ref": {"model": {"path": str(scorer_paths.chexbert_bert), "tokenizer_path": None}},
            "reward": {
                "num_workers": 1,
                "custom_reward_function": {"path": None, "name": "compute_score"},
                "reward_manager": {"source": "register", "name": "radiology", "module": {"path": None, "name": "x"}},
                "reward_model": {"enable": False, "enable_resource_pool": False},
                "sandbox_fusion": {"url": None},
                "reward_kwargs": kwargs,
            },
        }
    )


@pytest.fixture()
def make_config(scorer_paths):
    return lambda **kw: trainer_config(scorer_paths, **kw)


def build_item(tokenizer, response: str, reference, extra_fields=None, kwargs=None, response_width: int = 64):
    """One trajectory as ``AgentLoopWorker._compute_score`` builds it for the reward loop (verl 0.9.1); responses
    are right-padded to ``response_width`` with attention 0 (as in a padded batch), so items concatenate."""
    import torch
    from tensordict import TensorDict

    from verl import DataProto

    prompt_ids = tokenizer("describe the chest x-ray", add_special_tokens=True)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    prompts = torch.tensor(prompt_ids, dtype=torch.int64)
    n_pad = response_width - len(response_ids)
    assert n_pad >= 0, "response longer than response_width"
    responses = torch.tensor(response_ids + [tokenizer.pad_token_id] * n_pad, dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    attention_mask = torch.cat(
        [torch.ones(len(prompt_ids) + len(response_ids), dtype=torch.int64), torch.zeros(n_pad, dtype=torch.int64)]
    )
    position_ids = torch.arange(len(input_ids))
    batch = TensorDict(
        {
            "prompts": prompts[None],
            "responses": responses[None],
            "attention_mask": attention_mask[None],
            "input_ids": input_ids[None],
            "position_ids": position_ids[None],
        },
        batch_size=1,
    )
    kwargs = dict(kwargs or {})
    kwargs.setdefault("data_source", "mimic_cxr")
    kwargs.setdefault("reward_model", {"ground_truth": reference, "style": "model"})
    kwargs.setdefault("extra_info", {"index": 0})
    non_tensor = {k: np.array([v], dtype=object) for k, v in kwargs.items()}
    non_tensor.update(
        {
            "__num_turns__": np.array([2]),
            "tool_extra_fields": np.array([dict(extra_fields or {})], dtype=object),
            "prompt_len": np.array([len(prompt_ids)]),
            "response_len": np.array([len(response_ids)]),
        }
    )
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


@pytest.fixture()
def make_item(tokenizer):
    return lambda response, reference, extra_fields=None, **kw: build_item(
        tokenizer, response, reference, extra_fields, kw or None
    )


@pytest.fixture()
def run():
    """Run a coroutine on verl's event loop (the reward manager binds it at construction)."""
    from verl.utils.ray_utils import get_event_loop

    return lambda coro: get_event_loop().run_until_complete(coro)
