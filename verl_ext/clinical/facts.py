"""FactS with a local instruction model through vLLM (the offline stand-in for the paper's GPT-4.1).

Two greedy passes per batch: fact extraction for every report, then one judgement per report against its
reference's CheXpert labels. Prompts and parsing are project code (``verl_ext.metrics.facts``); the model is any
local instruction-tuned directory (its own chat template is applied). A completion that cannot be parsed gives
``None`` for that pair (counted by the caller, never a silent 0). ``generate_fn`` replaces vLLM (tests use canned
completions). ``availability(model_path)`` says why the backend cannot run here (no vLLM, no CUDA, no directory).
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

from verl_ext.clinical import local_llm
from verl_ext.metrics.facts import (
    DEFAULT_BETA,
    FactsResult,
    extraction_prompt,
    facts_score,
    judgement_prompt,
    parse_facts,
    parse_verdicts,
)

logger = logging.getLogger(__name__)


class FactsUnavailable(RuntimeError):
    pass


class FactsLLMScorer:
    def __init__(
        self,
        model_path: Optional[str] = None,
        beta: float = DEFAULT_BETA,
        max_new_tokens: int = 512,
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        dtype: str = "bfloat16",
        neutral_as_fp: bool = False,
        generate_fn: Optional[Callable[[list[str]], list[str]]] = None,
    ):
        self.model_path = model_path
        self.beta = float(beta)
        self.max_new_tokens = int(max_new_tokens)
        self.max_model_len = int(max_model_len)
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype = dtype
        self.neutral_as_fp = neutral_as_fp
        self._generate_fn = generate_fn
        self._llm = None
        self.counters = {"pairs": 0, "unparseable_extraction": 0, "unparseable_judgement": 0}

    @staticmethod
    def availability(model_path: Optional[str]) -> tuple[bool, str]:
        return local_llm.availability(model_path, "FactS")

    def _load(self) -> None:
        self._llm = local_llm.load_llm(self.model_path, "FactS", FactsUnavailable, dtype=self.dtype,
                                       max_model_len=self.max_model_len,
                                       gpu_memory_utilization=self.gpu_memory_utilization,
                                       tensor_parallel_size=self.tensor_parallel_size)

    def generate(self, prompts: list[str]) -> list[str]:
        if not prompts:
            return []
        if self._generate_fn is not None:
            out = list(self._generate_fn(prompts))
        else:
            if self._llm is None:
                self._load()
            from vllm import SamplingParams

            tok = self._llm.get_tokenizer()
            texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in prompts]
            params = SamplingParams(temperature=0.0, max_tokens=self.max_new_tokens)
            out = [o.outputs[0].text for o in self._llm.generate(texts, params)]
        if len(out) != len(prompts):
            raise RuntimeError(f"FactS generation returned {len(out)} completions for {len(prompts)} prompts")
        return out

    def score(self, reports: Sequence[str], reference_labels: Sequence[Sequence[int]]) -> list[Optional[FactsResult]]:
        """FactS of each report against its reference's 14 binary CheXpert labels; None = unparseable."""
        if len(reports) != len(reference_labels):
            raise ValueError(f"{len(reports)} reports vs {len(reference_labels)} label vectors")
        self.counters["pairs"] += len(reports)
        facts = [parse_facts(c) for c in self.generate([extraction_prompt(r) for r in reports])]
        todo = [i for i, f in enumerate(facts) if f]
        judged = dict(zip(todo, self.generate([judgement_prompt(facts[i], reference_labels[i]) for i in todo])))
        results: list[Optional[FactsResult]] = []
        for i, f in enumerate(facts):
            if f is None:
                self.counters["unparseable_extraction"] += 1
                results.append(None)
                continue
            verdicts = parse_verdicts(judged[i], f) if f else []
            if verdicts is None:
                self.counters["unparseable_judgement"] += 1
                results.append(None)
                continue
            results.append(facts_score(verdicts, reference_labels[i], self.beta, self.neutral_as_fp))
        return results
