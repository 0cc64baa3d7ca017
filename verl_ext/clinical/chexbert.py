"""CheXbert labeler: the 14 CheXpert conditions of a report, batched and cached.

Same model (f1chexbert's ``bert_labeler`` with ``chexbert.pth``), same text normalisation and tokenisation as
``f1chexbert.F1CheXbert.get_label`` (strip, newlines to spaces, collapse whitespace; WordPiece; ``[CLS] ... [SEP]``,
cut to 512 with the final ``[SEP]`` kept; an empty report is ``[CLS] [SEP]``), and the same argmax per head. What
changes: many reports per forward pass (padded, with the attention mask), a per-text cache, and no transformers-4
``encode_plus`` (removed in transformers 5; the ids are built directly). Equality with the package's ``get_label``
is tested with the compat shim.

``classes(texts)`` returns the raw head outputs, shape ``[n, 14]``: heads 0-12 ``0 blank, 1 positive, 2 negative,
3 uncertain``; head 13 (No Finding) ``0 blank, 1 positive``. ``labels(texts)`` maps them to binary vectors with
``verl_ext.metrics.chexbert.binarize`` (default: the "rrg" mapping of f1chexbert/RadEval, uncertain = positive).
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from verl_ext.clinical.cache import MiB, LRUCache
from verl_ext.metrics.chexbert import CONDITIONS, binarize

if TYPE_CHECKING:
    import torch

__all__ = ["CheXbertLabeler", "CONDITIONS", "normalize_report"]

_WS = re.compile(r"\s+")


def normalize_report(text: str) -> str:
    """f1chexbert's ``tokenize`` normalisation: strip, ``\\n`` -> space, collapse whitespace, strip."""
    return _WS.sub(" ", str(text).strip().replace("\n", " ")).strip()


class CheXbertLabeler:
    def __init__(
        self,
        checkpoint: str,
        bert_dir: str,
        device: str = "auto",
        batch_size: int = 64,
        cache_mb: float = 64.0,
    ):
        from verl_ext.clinical import models

        self.m = models.load_chexbert(checkpoint, bert_dir, device)
        self.batch_size = max(1, int(batch_size))
        self.cache = LRUCache(int(cache_mb * MiB))  # text -> 14 classes, bounded by bytes
        self._lock = threading.RLock()
        self.counters = {"texts": 0, "forward_passes": 0, "labelled": 0}

    def input_ids(self, text: str) -> list[int]:
        tok = self.m.tokenizer
        pieces = tok.tokenize(normalize_report(text))
        if not pieces:
            return [tok.cls_token_id, tok.sep_token_id]
        ids = [tok.cls_token_id] + tok.convert_tokens_to_ids(pieces) + [tok.sep_token_id]
        if len(ids) > 512:
            ids = ids[:511] + [tok.sep_token_id]
        return ids

    def overlong(self, text: str) -> bool:
        """Whether the report exceeds the model's 512 positions (it is then read up to there, as f1chexbert does)."""
        if len(text) <= 510:  # a wordpiece holds at least one character
            return False
        return len(self.m.tokenizer.tokenize(normalize_report(text))) > 510

    def classes(self, texts: Sequence[str]) -> np.ndarray:
        """Raw CheXbert classes, ``int64 [n, 14]`` (see the module docstring)."""
        texts = [str(t).strip() for t in texts]
        with self._lock:
            self.counters["texts"] += len(texts)
            rows = self.cache.get_many(texts, self._classes_uncached)
        return np.stack(rows) if rows else np.zeros((0, 14), dtype=np.int64)

    def labels(self, texts: Sequence[str], uncertain: str = "positive") -> np.ndarray:
        """Binary label vectors ``int64 [n, 14]``; ``uncertain``: "positive" (rrg convention) or "negative"."""
        return binarize(self.classes(texts), uncertain=uncertain)

    def padded_batches(
        self, all_ids: Sequence[list[int]]
    ) -> Iterator[tuple[list[int], "torch.Tensor", "torch.Tensor"]]:
        """``(positions in all_ids, ids [b, width], float attention mask [b, width])`` batches of ``batch_size``
        id lists on the model's device, shortest first (least padding), padded with the tokenizer's pad id."""
        import torch

        order = sorted(range(len(all_ids)), key=lambda i: len(all_ids[i]))
        dev = self.m.device
        pad = self.m.tokenizer.pad_token_id or 0
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            width = max(len(all_ids[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.float)
            for row, i in enumerate(idx):
                ids[row, : len(all_ids[i])] = torch.tensor(all_ids[i])
                mask[row, : len(all_ids[i])] = 1.0
            yield idx, ids.to(dev), mask.to(dev)

    def _classes_uncached(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        out: list = [None] * len(texts)
        with torch.inference_mode():
            for idx, ids, mask in self.padded_batches([self.input_ids(t) for t in texts]):
                heads = self.m.model(ids, mask)
                pred = torch.stack([h.argmax(dim=1) for h in heads], dim=1).cpu().numpy().astype(np.int64)
                for row, i in enumerate(idx):
                    r = pred[row].copy()
                    r.setflags(write=False)
                    out[i] = r
                self.counters["forward_passes"] += 1
        self.counters["labelled"] += len(texts)
        return out
