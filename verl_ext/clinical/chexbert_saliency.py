"""CheXbert gradient saliency of each report token for a set of target conditions (DEER Sec. 3.3, Eq. 9-11).

For a report and its target set T (the conditions CheXbert finds positive in the reference report):

* tokenise the report as the labeler does (`CheXbertLabeler.input_ids`: normalised text, WordPiece, ``[CLS] ...
  [SEP]``, 512 cap) and take CheXbert's input (word-piece) embeddings ``E = [e_1..e_L]`` with gradients on;
* run CheXbert's BERT encoder on ``E`` (``inputs_embeds``: BERT adds its position/type embeddings as for ids), take
  the [CLS] vector and the 14 heads; ``S_target = sum_{c in T} logit_c^(1)`` (Eq. 9; class 1 is "positive" on every
  head). The text around Eq. 9 also speaks of "positive and uncertain" logits; ``logit_classes="positive_uncertain"``
  adds ``logit_c^(3)`` (uncertain, heads 0-12) for that reading. The formula is the default;
* ``g = dS_target/dE`` (Eq. 10), ``s^j = ||g^j||_2`` per CheXbert token (Eq. 11).

Batched: the reports of a micro-batch are padded into one tensor and ``sum_i S_target,i`` is back-propagated once.
Rows do not interact (attention is masked per row; CheXbert is in eval mode, dropout off), so each row's gradient is
exactly its own ``dS_i/dE_i``. A report with an empty T has ``S = 0`` and all-zero saliency.

Each result carries the character span of every word piece in the *original* text (the normaliser's whitespace
collapsing is undone), so scores can be mapped onto another tokeniser's tokens by characters. [CLS]/[SEP] have no
characters and are left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LOGIT_CLASSES = ("positive", "positive_uncertain")
POSITIVE, UNCERTAIN = 1, 3
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Saliency:
    """Per CheXbert word piece of one report: character spans in the original text and ``||dS/de_j||_2``."""

    spans: tuple[tuple[int, int], ...]
    scores: np.ndarray


def normalize_with_map(text: str) -> tuple[str, list[int]]:
    """``verl_ext.clinical.chexbert.normalize_report(text)`` and, per normalised character, its index in ``text``."""
    out: list[str] = []
    index: list[int] = []
    pending_space = -1
    for i, ch in enumerate(str(text)):
        if ch.isspace() or ch == "\n":
            if out and pending_space < 0:
                pending_space = i
            continue
        if pending_space >= 0:
            out.append(" ")
            index.append(pending_space)
            pending_space = -1
        out.append(ch)
        index.append(i)
    return "".join(out), index


def _encode(tokenizer, text: str, max_len: int = 512) -> tuple[list[int], list[tuple[int, int]]]:
    """Labeler-identical ids and original-text spans of the word pieces (without [CLS]/[SEP])."""
    norm, index = normalize_with_map(text)
    if not norm:
        return [tokenizer.cls_token_id, tokenizer.sep_token_id], []
    enc = tokenizer(norm, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    expected = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(norm))
    if ids != list(expected):
        raise ValueError("CheXbert saliency: the tokenizer's offsets pass does not reproduce the labeler's word pieces")
    ids, offsets = ids[: max_len - 2], offsets[: max_len - 2]
    spans = [(index[a], index[b - 1] + 1) if b > a else (index[a], index[a]) for a, b in offsets]
    return [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id], spans


def chexbert_saliency(
    chexbert,
    texts: Sequence[str],
    targets: Sequence[Sequence[int]],
    logit_classes: str = "positive",
    batch_size: int = 32,
) -> list[Saliency]:
    """Eq. 9-11 for each ``(texts[i], targets[i])``; ``chexbert`` is ``verl_ext.clinical.models.CheXbertModel``.

    ``targets[i]``: indices (0-13, CheXbert head order) of the reference's positive conditions.
    """
    import torch

    if logit_classes not in LOGIT_CLASSES:
        raise ValueError(f"logit_classes={logit_classes!r}: expected one of {LOGIT_CLASSES}")
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} target sets")
    encoded = [_encode(chexbert.tokenizer, t) for t in texts]
    model, dev = chexbert.model, chexbert.device
    embed = model.bert.get_input_embeddings()
    pad = chexbert.tokenizer.pad_token_id or 0
    out: list = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i][0]))
    for start in range(0, len(order), max(1, int(batch_size))):
        idx = order[start : start + max(1, int(batch_size))]
        width = max(len(encoded[i][0]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(encoded[i][0])] = torch.tensor(encoded[i][0])
            mask[row, : len(encoded[i][0])] = 1
        with torch.enable_grad():
            emb = embed(ids.to(dev)).detach().requires_grad_(True)
            hidden = model.bert(inputs_embeds=emb, attention_mask=mask.to(dev))[0]
            cls = model.dropout(hidden[:, 0, :])
            heads = [head(cls) for head in model.linear_heads]
            total = emb.new_zeros(())
            for row, i in enumerate(idx):
                for c in targets[i]:
                    c = int(c)
                    if not 0 <= c < len(heads):
                        raise ValueError(f"target condition index {c} outside 0..{len(heads) - 1}")
                    total = total + heads[c][row, POSITIVE]
                    if logit_classes == "positive_uncertain" and heads[c].shape[-1] > UNCERTAIN:
                        total = total + heads[c][row, UNCERTAIN]
            if total.requires_grad:
                (grad,) = torch.autograd.grad(total, emb)
            else:
                grad = torch.zeros_like(emb)
        norms = grad.detach().norm(dim=-1).float().cpu().numpy()
        for row, i in enumerate(idx):
            spans = encoded[i][1]
            out[i] = Saliency(spans=tuple(spans), scores=norms[row, 1 : 1 + len(spans)].astype(np.float64))
    return out
