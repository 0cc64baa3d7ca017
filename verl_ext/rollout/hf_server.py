"""A Hugging Face ``generate`` server standing in for verl's vLLM server, for CPU tests and the CPU demo.

verl's agent loop talks to its rollout servers through ``verl.workers.rollout.llm_server.LLMServerClient``: the
client asks verl's global load balancer (a Ray actor) for a server handle, then calls
``server.generate.remote(request_id=..., prompt_ids=..., sampling_params=..., image_data=..., video_data=...,
[audio_data=..., mm_processor_kwargs=..., priority=...])`` and expects a ``TokenOutput``. ``HFGenerationServer``
implements exactly that method (the signature of verl's vLLM server, ``vllm_async_server.py``) with
``model.generate``, so the real client and the real load balancer run unchanged:

    servers = launch_hf_servers(model_path, config.actor_rollout_ref.rollout)   # {address: Ray actor handle}
    llm_client = make_llm_client(config, servers)                                 # verl's own LLMServerClient

The server is a plain class wrapped with ``ray.remote`` at use (a synchronous actor: one request at a time).
Token-in/token-out like vLLM: ``prompt_ids`` already contain the expanded ``<|image_pad|>`` runs, and the pixel
values are recomputed from ``image_data`` with the model's processor. Responses include the end-of-turn token when
generation stopped on it (as vLLM returns it). Sampling follows ``sampling_params`` (temperature 0 -> greedy,
``top_k=-1`` -> disabled); ``logprobs=True`` returns log-softmax(logits / T) of the sampled tokens.
"""
from __future__ import annotations

import logging
from typing import Any, Optional

logger = logging.getLogger(__name__)

__all__ = ["HFGenerationServer", "launch_hf_servers", "make_llm_client", "mm_token_type_ids"]


def mm_token_type_ids(processor, input_ids):
    """``(1, L)`` long tensor: 1 at image pad tokens, 2 at video pad tokens, else 0 (transformers-5 Qwen-VL input)."""
    import torch

    from verl.utils.tokenizer import get_processor_token_id

    ids = torch.as_tensor(list(input_ids), dtype=torch.long)
    out = torch.zeros_like(ids)
    image, video = get_processor_token_id(processor, "image"), get_processor_token_id(processor, "video")
    if image is not None:
        out[ids == image] = 1
    if video is not None:
        out[ids == video] = 2
    return out[None]


class HFGenerationServer:
    """Token-in/token-out generation with a Hugging Face model (see the module docstring)."""

    def __init__(
        self,
        model_path: str,
        *,
        response_length: int,
        prompt_length: int,
        seed: int = 0,
        num_threads: Optional[int] = None,
        dtype: str = "float32",
    ):
        import torch
        from transformers import AutoConfig, GenerationConfig

        from verl.utils.tokenizer import hf_processor, hf_tokenizer

        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.model_path = str(model_path)
        self.response_length = int(response_length)
        self.prompt_length = int(prompt_length)
        self.tokenizer = hf_tokenizer(self.model_path)
        self.processor = hf_processor(self.model_path)
        config = AutoConfig.from_pretrained(self.model_path)
        if self.processor is not None and hasattr(config, "vision_config"):
            from transformers import AutoModelForImageTextToText as auto_cls
        else:
            from transformers import AutoModelForCausalLM as auto_cls
        self.model = auto_cls.from_pretrained(self.model_path, dtype=getattr(torch, dtype))
        self.model.eval()
        try:
            gen = GenerationConfig.from_pretrained(self.model_path)
            eos = gen.eos_token_id
        except OSError:
            eos = None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_token_ids = eos
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0]
        self.generator = torch.Generator().manual_seed(int(seed))
        self.global_steps: Optional[int] = None
        self.num_requests = 0

    # ------------------------------------------------------------------------------------------------------------
    # verl's server interface
    # ------------------------------------------------------------------------------------------------------------

    def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: Optional[list[Any]] = None,
        video_data: Optional[list[Any]] = None,
        audio_data: Optional[list[Any]] = None,
        mm_processor_kwargs: Optional[dict[str, Any]] = None,
        priority: int = 0,
        **_: Any,
    ):
        import torch

        from verl.utils import normalize_token_ids
        from verl.workers.rollout.replica import TokenOutput

        if audio_data is not None:
            raise NotImplementedError("HFGenerationServer: audio inputs are not supported")
        prompt_ids = normalize_token_ids(prompt_ids)
        params = dict(sampling_params or {})
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(self.response_length, self.prompt_length + self.response_length - len(prompt_ids))
        max_tokens = max(1, int(max_tokens))
        temperature = float(params.get("temperature", 1.0) or 0.0)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        top_k = int(params.get("top_k", -1) or -1)
        want_logprobs = bool(params.get("logprobs", False))

        inputs: dict[str, Any] = {"input_ids": torch.tensor([prompt_ids], dtype=torch.long)}
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        inputs.update(self._vision_inputs(prompt_ids, image_data, video_data, mm_processor_kwargs))

        do_sample = temperature > 0
        gen_kwargs: dict[str, Any] = dict(
            max_new_tokens=max_tokens,
            do_sample=do_sample,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            output_logits=want_logprobs,
            return_dict_in_generate=True,
            repetition_penalty=float(params.get("repetition_penalty", 1.0) or 1.0),
        )
        if do_sample:
            gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k if top_k > 0 else 0)
        # HF sampling draws from the global torch RNG: seed it from this server's generator, per request.
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, **gen_kwargs)
        new_tokens = out.sequences[0, len(prompt_ids) :].tolist()
        finish = "length"
        for i, tok in enumerate(new_tokens):
            if tok in self.eos_token_ids:
                new_tokens = new_tokens[: i + 1]
                finish = "stop"
                break
        log_probs = None
        if want_logprobs:
            t = temperature if do_sample else 1.0
            log_probs = [
                float(torch.log_softmax(out.logits[i][0].float() / t, dim=-1)[tok]) for i, tok in enumerate(new_tokens)
            ]
        self.num_requests += 1
        return TokenOutput(
            token_ids=new_tokens,
            log_probs=log_probs,
            stop_reason="completed" if finish == "stop" else "length",
            num_preempted=0,
            extra_fields={"global_steps": self.global_steps},
        )

    def _vision_inputs(self, prompt_ids, image_data, video_data, mm_processor_kwargs) -> dict[str, Any]:
        if self.processor is None or (not image_data and not video_data):
            return {}
        from verl.utils.tokenizer import build_multimodal_processor_inputs, get_processor_token_id

        # Collapse each expanded placeholder run to one token and let the processor expand it again (as verl's
        # AgentLoopWorker._compute_multi_modal_inputs does); only the pixel tensors are used.
        pad_ids = {get_processor_token_id(self.processor, "image"), get_processor_token_id(self.processor, "video")}
        collapsed, prev = [], None
        for t in prompt_ids:
            if t in pad_ids and t == prev:
                continue
            collapsed.append(t)
            prev = t
        text = self.tokenizer.decode(collapsed, skip_special_tokens=False)
        mm = build_multimodal_processor_inputs(
            self.processor,
            text=[text],
            images=image_data or None,
            videos=video_data or None,
            mm_processor_kwargs=mm_processor_kwargs,
        )
        expected = mm["input_ids"][0].tolist()
        if expected != list(prompt_ids):
            logger.warning("HFGenerationServer: processor re-expansion differs from prompt_ids; using prompt_ids")
        out = {k: v for k, v in mm.items() if k in ("pixel_values", "image_grid_thw", "pixel_values_videos",
                                                    "video_grid_thw", "second_per_grid_ts")}
        # transformers 5 computes Qwen-VL mrope positions from mm_token_type_ids (1 image, 2 video); without it
        # the prompt's visual tokens get text positions. Built from prompt_ids, as verl's _compute_position_ids.
        out["mm_token_type_ids"] = mm_token_type_ids(self.processor, prompt_ids)
        return out

    # ------------------------------------------------------------------------------------------------------------
    # weights (for loops that train the policy in another process)
    # ------------------------------------------------------------------------------------------------------------

    def set_weights(self, state_dict: dict, global_steps: Optional[int] = None) -> int:
        """Load new policy weights (a full or partial ``state_dict``); returns the number of tensors loaded."""
        missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
        if unexpected:
            raise ValueError(f"HFGenerationServer.set_weights: unexpected keys {unexpected[:5]}...")
        self.global_steps = global_steps
        return len(state_dict)

    def stats(self) -> dict:
        return {"num_requests": self.num_requests, "global_steps": self.global_steps}


def launch_hf_servers(
    model_path: str,
    rollout_config,
    *,
    num_replicas: int = 1,
    num_cpus: float = 1,
    num_threads: Optional[int] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Start ``num_replicas`` ``HFGenerationServer`` Ray actors; returns ``{address: handle}`` for verl's router."""
    import ray

    remote_cls = ray.remote(num_cpus=num_cpus)(HFGenerationServer)
    servers = {}
    for i in range(num_replicas):
        servers[f"hf-server-{i}"] = remote_cls.remote(
            str(model_path),
            response_length=rollout_config.response_length,
            prompt_length=rollout_config.prompt_length,
            seed=seed + i,
            num_threads=num_threads,
        )
    ray.get([h.stats.remote() for h in servers.values()])  # surface construction errors here
    return servers


def make_llm_client(config, servers: dict[str, Any]):
    """verl's own ``LLMServerClient`` behind verl's own global load balancer, routing to ``servers``."""
    from verl.workers.rollout.llm_server import LLMServerClient
    from verl.workers.rollout.router import get_router_handle

    router = get_router_handle(servers=dict(servers))
    return LLMServerClient(config=config, load_balancer_handle=router)
