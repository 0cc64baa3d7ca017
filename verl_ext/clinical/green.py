"""GREEN with a local GREEN model (e.g. StanfordAIMI/GREEN-radllama2-7b) through vLLM.

Prompt, chat format and parsing are project code (``verl_ext.metrics.green``). Generation follows the reference
implementation: the GREEN chat template, the tokenizer's BOS plus an appended EOS (its ``add_eos_token=True``),
greedy decoding, prompt + completion within ``max_length`` (2048) tokens. How the conversation is rendered and the
completion parsed is a ``GreenProtocol`` (``verl_ext.metrics.green``: `REFERENCE` for ReXrank, `PROJECT` by default). The green-score package itself cannot be
installed on this stack (it pins torch 2.2 / transformers 4.40 / Python 3.12.1).

``GreenScorer.availability(model_path)`` says why GREEN cannot run (no vLLM, no CUDA, no model directory); the
evaluation CLI then skips the column with that message. ``generate_fn`` replaces vLLM (tests use canned completions).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

from verl_ext.clinical import local_llm
from verl_ext.metrics.green import PROJECT, CHAT_TEMPLATE, GreenProtocol, GreenResult, make_prompt, parse_completion

logger = logging.getLogger(__name__)


class GreenUnavailable(RuntimeError):
    pass


class GreenScorer:
    def __init__(
        self,
        model_path: Optional[str] = None,
        max_length: int = 2048,
        max_words: int = 300,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        dtype: str = "float16",
        generate_fn: Optional[Callable[[list[str]], list[str]]] = None,
        protocol: GreenProtocol = PROJECT,
    ):
        self.model_path = model_path
        self.max_length = int(max_length)
        self.max_words = int(max_words)
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype = dtype
        self._generate_fn = generate_fn
        self.protocol = protocol
        self._llm = None
        self._tokenizer = None

    @staticmethod
    def availability(model_path: Optional[str]) -> tuple[bool, str]:
        """(can run, reason if not)."""
        return local_llm.availability(model_path, "GREEN", " (--green-model)")

    def prompts(self, references: Sequence[str], candidates: Sequence[str]) -> list[str]:
        return [make_prompt(r, c, self.max_words) for r, c in zip(references, candidates)]

    def _load(self) -> None:
        self._llm = local_llm.load_llm(
            self.model_path,
            "GREEN",
            GreenUnavailable,
            path_flag=" (--green-model)",
            dtype=self.dtype,
            max_model_len=self.max_length,
            gpu_memory_utilization=self.gpu_memory_utilization,
            tensor_parallel_size=self.tensor_parallel_size,
            trust_remote_code=True,
        )
        self._tokenizer = self._llm.get_tokenizer()
        self._tokenizer.chat_template = CHAT_TEMPLATE

    def prompt_text(self, prompt: str) -> str:
        """The rendered conversation (``protocol.messages`` through ``CHAT_TEMPLATE``, with the generation prompt)."""
        return self._tokenizer.apply_chat_template(self.protocol.messages(prompt), tokenize=False,
                                                   add_generation_prompt=True)

    def prompt_token_ids(self, prompt: str) -> list[int]:
        tok = self._tokenizer
        ids = list(tok(self.prompt_text(prompt), add_special_tokens=True)["input_ids"])
        if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
            ids.append(tok.eos_token_id)
        return ids[: self.max_length - 1]

    def generate(self, prompts: list[str]) -> list[str]:
        if self._generate_fn is not None:
            return list(self._generate_fn(prompts))
        if self._llm is None:
            self._load()
        from vllm import SamplingParams

        inputs, params = [], []
        for p in prompts:
            ids = self.prompt_token_ids(p)
            inputs.append({"prompt_token_ids": ids})
            params.append(SamplingParams(temperature=0.0, max_tokens=max(1, self.max_length - len(ids))))
        outputs = self._llm.generate(inputs, params)
        return [o.outputs[0].text for o in outputs]

    def score(self, references: Sequence[str], candidates: Sequence[str]) -> list[GreenResult]:
        if len(references) != len(candidates):
            raise ValueError(f"{len(references)} references vs {len(candidates)} candidates")
        completions = self.generate(self.prompts(references, candidates))
        if len(completions) != len(references):
            raise RuntimeError(f"GREEN generation returned {len(completions)} completions for {len(references)} pairs")
        return [parse_completion(c, self.protocol) for c in completions]
