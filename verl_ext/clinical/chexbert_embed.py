"""CheXbert report embeddings for SembScore: the [CLS] vector of CheXbert's BERT, batched.

CXR-Report-Metric's ``CheXbert/src/encode.py`` runs ``bert_encoder`` (CheXbert's BERT with ``logits=False``): the
last hidden state at position 0, no dropout, for each report tokenised like the labeler (strip, newlines to
spaces, whitespace collapsed, WordPiece, ``[CLS] ... [SEP]`` cut to 512, an empty report ``[CLS] [SEP]``) with an
attention mask over the padding. SembScore is then the cosine of the two reports' vectors
(``verl_ext.metrics.rexrank.cosine``). The model and the tokenisation are the labeler's
(``verl_ext.clinical.chexbert.CheXbertLabeler``), so one CheXbert load serves labels and embeddings.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CheXbertEncoder:
    def __init__(self, checkpoint: str, bert_dir: str, device: str = "auto", batch_size: int = 64):
        from verl_ext.clinical.chexbert import CheXbertLabeler

        self.labeler = CheXbertLabeler(checkpoint, bert_dir, device=device, batch_size=batch_size)

    def embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """``float64 [n, hidden]`` [CLS] vectors, in input order."""
        import torch

        bert = self.labeler.m.model.bert
        all_ids = [self.labeler.input_ids(str(t)) for t in texts]
        out = np.zeros((len(all_ids), bert.config.hidden_size), dtype=np.float64)
        with torch.inference_mode():
            for idx, ids, mask in self.labeler.padded_batches(all_ids):
                final_hidden = bert(ids, attention_mask=mask)[0]
                out[idx] = final_hidden[:, 0, :].float().cpu().numpy()
        return out
