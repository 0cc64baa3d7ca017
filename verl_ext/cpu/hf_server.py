"""The CPU profile's rollout server: Hugging Face ``generate`` behind verl's token-in/token-out server protocol.

verl's agent loop talks to its rollout servers through ``verl.workers.rollout.llm_server.LLMServerClient``: the
client asks verl's global load balancer (a Ray actor) for a server handle, then calls
``server.generate.remote(request_id=..., prompt_ids=..., sampling_params=..., image_data=..., video_data=...,
[audio_data=..., mm_processor_kwargs=..., priority=...])`` and expects a ``TokenOutput``. ``HFGenerationServer``
implements exactly that method (the signature of verl's vLLM server, ``vllm_async_server.py``) with
``model.generate``, so the real client and the real load balancer run unchanged. In training it is started by the
``hf`` rollout replica (`verl_ext.cpu.rollout.HFReplica`, ``actor_rollout_ref.rollout.name=hf``) and receives the
actor's weights after every step through verl's naive checkpoint engine (`verl_ext.cpu.rollout.HFServerAdapter`).

Behaviour, as close to vLLM's as a test server needs:

* token-in/token-out: ``prompt_ids`` already contain the expanded ``<|image_pad|>`` runs; pixel values are
  recomputed from ``image_data`` with the model's processor, and the Qwen-VL ``mm_token_type_ids`` from the ids;
* continuous-ish batching: concurrent requests with the same sampling parameters that arrive within
  ``batch_wait_ms`` run as one left-padded ``generate`` call (the model runs on one worker thread);
* the response includes the end-of-turn token when generation stopped on it, as vLLM returns it;
* sampling follows ``sampling_params`` (temperature 0 -> greedy, ``top_k=-1`` -> off); ``logprobs=True`` returns
  log-softmax(logits / T) of the sampled tokens, which equals the training forward's log-probs
  (``tests/cpu/test_hf_server.py``);
* ``suppress_token_ids`` (default: the vision placeholder tokens and the padded, token-less rows of the embedding
  matrix) are never sampled: a tiny random policy would otherwise emit ``<|image_pad|>`` in a response, which no
  trained model does and which breaks verl's mrope position computation for that trajectory.

The server is a plain class wrapped with ``ray.remote`` at use; ``generate_sync`` runs one request in-process for
tests. The replica lifecycle calls verl makes on a server (``sleep``/``wake_up`` around weight syncs, KV-cache
release, profiling) have nothing to free on a CPU and return at once; ``abort_all_requests`` (the asynchronous
trainers' partial rollout) is not supported and raises.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger(__name__)

__all__ = ["HFGenerationServer", "mm_token_type_ids"]

_VISION_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
_PLACEHOLDER_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")


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


@dataclass
class _Request:
    prompt_ids: list[int]
    vision: dict
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    logprobs: bool

    def group_key(self) -> tuple:
        return (self.max_tokens, self.temperature, self.top_p, self.top_k, self.repetition_penalty, self.logprobs)


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
        max_batch_size: int = 32,
        batch_wait_ms: float = 10.0,
        suppress_token_ids: Optional[list[int]] = None,
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
            eos = GenerationConfig.from_pretrained(self.model_path).eos_token_id
        except OSError:
            eos = None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_token_ids = eos
        self.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0]
        if suppress_token_ids is None:
            vocab = self.model.get_output_embeddings().weight.shape[0]
            placeholders = [self.tokenizer.convert_tokens_to_ids(t) for t in _PLACEHOLDER_TOKENS
                            if t in self.tokenizer.get_vocab()]
            suppress_token_ids = placeholders + list(range(len(self.tokenizer), vocab))
        self.suppress_token_ids = sorted({int(i) for i in suppress_token_ids} - set(self.eos_token_ids))
        self.generator = torch.Generator().manual_seed(int(seed))
        self.max_batch_size = max(1, int(max_batch_size))
        self.batch_wait_s = max(0.0, float(batch_wait_ms) / 1000.0)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._queue: list[tuple[_Request, asyncio.Future]] = []
        self._timer: Optional[asyncio.TimerHandle] = None
        self.global_steps: Optional[int] = None
        self.num_requests = 0
        self.num_batches = 0

    # ------------------------------------------------------------------------------------------------------------
    # verl's server interface
    # ------------------------------------------------------------------------------------------------------------

    async def generate(
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
        request = self._prepare(prompt_ids, sampling_params, image_data, video_data, audio_data, mm_processor_kwargs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._queue.append((request, future))
        if len(self._queue) >= self.max_batch_size:
            self._flush(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self.batch_wait_s, self._flush, loop)
        return await future

    def generate_sync(self, prompt_ids, sampling_params, request_id: str = "", image_data=None, video_data=None,
                      audio_data=None, mm_processor_kwargs=None, **_: Any):
        """One request, in the calling thread (tests)."""
        request = self._prepare(prompt_ids, sampling_params, image_data, video_data, audio_data, mm_processor_kwargs)
        return self._generate_batch([request])[0]

    # ------------------------------------------------------------------------------------------------------------

    def _prepare(self, prompt_ids, sampling_params, image_data, video_data, audio_data, mm_processor_kwargs):
        from verl.utils import normalize_token_ids

        if audio_data is not None:
            raise NotImplementedError("HFGenerationServer: audio inputs are not supported")
        prompt_ids = normalize_token_ids(prompt_ids)
        params = dict(sampling_params or {})
        max_tokens = params.pop("max_tokens", params.pop("max_new_tokens", None))
        if max_tokens is None:
            max_tokens = min(self.response_length, self.prompt_length + self.response_length - len(prompt_ids))
        return _Request(
            prompt_ids=prompt_ids,
            vision=self._vision_inputs(prompt_ids, image_data, video_data, mm_processor_kwargs),
            max_tokens=max(1, int(max_tokens)),
            temperature=float(params.get("temperature", 1.0) or 0.0),
            top_p=float(params.get("top_p", 1.0) or 1.0),
            top_k=int(params.get("top_k", -1) or -1),
            repetition_penalty=float(params.get("repetition_penalty", 1.0) or 1.0),
            logprobs=bool(params.get("logprobs", False)),
        )

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queue, self._queue = self._queue, []
        groups: dict[tuple, list] = {}
        for request, future in queue:
            groups.setdefault(request.group_key(), []).append((request, future))
        for items in groups.values():
            for i in range(0, len(items), self.max_batch_size):
                loop.create_task(self._run(items[i : i + self.max_batch_size]))

    async def _run(self, items) -> None:
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._generate_batch, [r for r, _ in items])
            for (_, future), output in zip(items, outputs):
                if not future.done():
                    future.set_result(output)
        except BaseException as exc:  # noqa: BLE001 - every waiting request must see the failure
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)

    def _generate_batch(self, requests: list[_Request]) -> list:
        import torch

        from verl.workers.rollout.replica import TokenOutput

        first = requests[0]
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for i, r in enumerate(requests):  # left padding, as generation requires
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            attention[i, width - len(r.prompt_ids) :] = 1
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": attention}
        vision = [r.vision for r in requests if r.vision]
        if vision:
            for key in _VISION_KEYS:
                parts = [v[key] for v in vision if v.get(key) is not None]
                if parts:
                    inputs[key] = torch.cat(parts) if key != "second_per_grid_ts" else sum(parts, [])
            inputs["mm_token_type_ids"] = mm_token_type_ids(self.processor, ids.flatten().tolist()).view_as(ids)

        do_sample = first.temperature > 0
        kwargs: dict[str, Any] = dict(
            max_new_tokens=first.max_tokens,
            do_sample=do_sample,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            output_logits=first.logprobs,
            return_dict_in_generate=True,
            repetition_penalty=first.repetition_penalty,
            suppress_tokens=self.suppress_token_ids or None,
        )
        if do_sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p, top_k=first.top_k if first.top_k > 0 else 0)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator).item())
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)  # HF samples from the global torch RNG: seed it from this server's generator
            out = self.model.generate(**inputs, **kwargs)
        self.num_requests += len(requests)
        self.num_batches += 1

        results = []
        for i in range(len(requests)):
            tokens = out.sequences[i, width:].tolist()
            stop = "length"
            for t, token in enumerate(tokens):
                if token in self.eos_token_ids:
                    tokens, stop = tokens[: t + 1], "completed"
                    break
            log_probs = None
            if first.logprobs:
                scale = first.temperature if do_sample else 1.0
                log_probs = [
                    float(torch.log_softmax(out.logits[t][i].float() / scale, dim=-1)[token])
                    for t, token in enumerate(tokens)
                ]
            results.append(TokenOutput(token_ids=tokens, log_probs=log_probs, stop_reason=stop, num_preempted=0,
                                       extra_fields={"global_steps": self.global_steps}))
        return results

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
        if mm["input_ids"][0].tolist() != list(prompt_ids):
            logger.warning("HFGenerationServer: processor re-expansion differs from prompt_ids; using prompt_ids")
        return {k: mm[k] for k in _VISION_KEYS if k in mm}

    # ------------------------------------------------------------------------------------------------------------
    # weights (for loops that train the policy in another process)
    # ------------------------------------------------------------------------------------------------------------

    def _set_weights(self, state_dict: dict, global_steps: Optional[int]) -> int:
        _missing, unexpected = self.model.load_state_dict(state_dict, strict=False)
        if unexpected:
            raise ValueError(f"HFGenerationServer.set_weights: unexpected keys {unexpected[:5]}...")
        self.global_steps = global_steps
        print(f"HFGenerationServer: loaded {len(state_dict)} weight tensors of step {global_steps}", flush=True)
        return len(state_dict)

    async def set_weights(self, state_dict: dict, global_steps: Optional[int] = None) -> int:
        """Load new policy weights (full or partial ``state_dict``) between generation batches; returns #tensors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._set_weights, state_dict, global_steps)

    def set_weights_sync(self, state_dict: dict, global_steps: Optional[int] = None) -> int:
        return self._set_weights(state_dict, global_steps)

    async def stats(self) -> dict:
        return {"num_requests": self.num_requests, "num_batches": self.num_batches, "global_steps": self.global_steps}

    # ------------------------------------------------------------------------------------------------------------
    # verl's replica lifecycle (verl/workers/rollout/replica.py: RolloutReplica.wake_up ... stop_profile)
    # ------------------------------------------------------------------------------------------------------------

    async def wake_up(self) -> None:
        """Weights stay resident in this process's memory; nothing to restore."""

    async def sleep(self) -> None:
        """Nothing to free: a CPU server shares no device memory with the trainer."""

    async def clear_kv_cache(self) -> None:
        """``generate`` keeps no cache between calls."""

    async def release_kv_cache(self) -> None:
        """``generate`` keeps no cache between calls."""

    async def resume_kv_cache(self) -> None:
        """``generate`` keeps no cache between calls."""

    async def start_profile(self, **_: Any) -> None:
        """Profiling of the HF server is not wired to verl's profiler."""

    async def stop_profile(self) -> None:
        """Profiling of the HF server is not wired to verl's profiler."""

    async def abort_all_requests(self, reject_request: bool = False) -> None:
        raise NotImplementedError(
            "HFGenerationServer cannot abort a running generate() call: partial rollout (trainer.v1.trainer_mode "
            "colocate_async/separate_async) is not supported by the CPU profile; use the sync trainer"
        )

    async def resume_generation(self) -> None:
        """Nothing was aborted (see abort_all_requests)."""
