"""BERTScore as ReXrank computes it: the bert-score package, distilroberta-base from a local directory, rescaled.

CXR-Report-Metric's ``add_bertscore_col`` builds ``BERTScorer(model_type="distilroberta-base", batch_size=256,
lang="en", rescale_with_baseline=True, idf=False)`` and keeps the F1. With a local directory as ``model_type``
bert-score cannot look up the two things it keys by the hub name, so they are given explicitly, from bert-score
itself: the layer (``bert_score.utils.model2layers["distilroberta-base"]`` = 5) and the baseline file it ships
(``rescale_baseline/en/distilroberta-base.tsv``), i.e. exactly what the hub name selects.

bert-score 0.3.13 encodes an empty sentence with ``tokenizer.build_inputs_with_special_tokens([])``, which
transformers 5 removed; ``verl_ext.clinical.compat.install()`` restores it (``<s></s>`` for RoBERTa, as
transformers 4 built it), and bert-score then scores an empty candidate 0 before rescaling, with a warning. It also
asks the RoBERTa tokenizer for a prefix space, which transformers 5 ignores as a keyword;
``compat.install_bert_score()`` loads the tokenizer with ``add_prefix_space=True`` so every report's first word is
encoded as on transformers 4 (``ĠNo``, not ``No``).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence

import numpy as np

#: The hub model ReXrank names; its layer and rescaling baseline are read from bert-score for this name.
REXRANK_MODEL = "distilroberta-base"
_SPACES = re.compile(r" +")


def bundled_baseline(model_name: str = REXRANK_MODEL, lang: str = "en") -> str:
    """Path of the rescaling baseline bert-score ships for `model_name`."""
    import bert_score

    path = os.path.join(os.path.dirname(bert_score.__file__), "rescale_baseline", lang, f"{model_name}.tsv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bert-score ships no {lang} baseline for {model_name!r} ({path})")
    return path


def default_layer(model_name: str = REXRANK_MODEL) -> int:
    from bert_score.utils import model2layers

    return model2layers[model_name]


class BertScorer:
    """``score(candidates, references) -> F1`` per pair, with ReXrank's settings."""

    def __init__(self, model_path: str, *, device: str = "auto", batch_size: int = 256,
                 num_layers: int | None = None, baseline_path: str | None = None, rescale: bool = True,
                 idf: bool = False):
        from verl_ext.clinical.models import require, resolve_device

        self.model_path = require(model_path, "bertscore_model", "distilroberta-base model directory")
        self.device = str(resolve_device(device))
        self.batch_size = int(batch_size)
        self.num_layers = default_layer() if num_layers is None else int(num_layers)
        self.baseline_path = baseline_path or bundled_baseline()
        self.rescale = rescale
        self.idf = idf
        self._scorer = None

    def _build(self, idf_sents: list[str] | None):
        from bert_score import BERTScorer

        from verl_ext.clinical import compat

        compat.install()
        compat.install_bert_score()
        return BERTScorer(model_type=self.model_path, num_layers=self.num_layers, batch_size=self.batch_size,
                          lang="en", rescale_with_baseline=self.rescale, baseline_path=self.baseline_path,
                          idf=self.idf, idf_sents=idf_sents, device=self.device)

    def score(self, candidates: Sequence[str], references: Sequence[str]) -> np.ndarray:
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates vs {len(references)} references")
        cands = [_SPACES.sub(" ", str(c)) for c in candidates]
        refs = [_SPACES.sub(" ", str(r)) for r in references]
        if not cands:
            return np.zeros(0)
        if self.idf:  # idf weights come from the references of this call, as ``idf_sents=test_reports``
            scorer = self._build(refs)
        else:
            if self._scorer is None:
                self._scorer = self._build(None)
            scorer = self._scorer
        _, _, f1 = scorer.score(cands, refs, verbose=False, batch_size=self.batch_size)
        return f1.numpy().astype(np.float64)
