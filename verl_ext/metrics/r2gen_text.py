"""R2Gen's report cleaning, the text every BLEU / METEOR / ROUGE-L of the R2Gen line of work (R2Gen, PromptMRG,
DEER, ...) is computed on: lower-cased, punctuation stripped, sentences separated by a " . " token.

Written from R2Gen's ``Tokenizer.clean_report_mimic_cxr`` (zhjohnchan/R2Gen ``modules/tokenizers.py``), step by step:

1. newlines become spaces; runs of ``_``, of spaces and of ``.`` shrink to one; list numbering is dropped
   (``"1. "`` removed, ``". N. "`` and ``" N. "`` for N = 2..5 become ``". "``);
2. the text is stripped, lower-cased and split into sentences at ``". "``;
3. in each sentence ``" / \\ '`` are deleted, then the characters of R2Gen's class ``[.,?;*!%^&_+():-\\[\\]{}]``; its
   ``:-\\[`` is a range (``:`` to ``[``), so ``< = > @`` go too while hyphens, digits, ``#`` and ``$`` stay;
4. the sentences (empty ones included, as R2Gen keeps them) are joined by ``" . "`` and end with ``" ."``.

R2Gen's IU X-Ray cleaner is the same without step 1's newline/underscore/space handling, which does not change IU
X-Ray's single-line reports, so one function serves both. R2Gen also maps words seen fewer than ``threshold`` times
in its training split to ``<unk>`` in the references it decodes; that depends on R2Gen's own vocabulary and is not
reproduced (a model with its own tokenizer generates full words).
"""
from __future__ import annotations

import re

_STRIPPED = re.compile(r"[.,?;*!%^&_+():<=>@\[\]{}]")
# R2Gen's order: "1. " removed, then ". N. " and then " N. " (N = 2..5) replaced by ". ", one pattern at a time.
_NUMBERING = [(f". {n}. ", ". ") for n in range(2, 6)] + [(f" {n}. ", ". ") for n in range(2, 6)]


def r2gen_clean(report: str) -> str:
    """``report`` as R2Gen's tokenizer cleans it (see the module docstring); tokens are ``.split()``."""
    text = str(report).replace("\n", " ")
    text = re.sub(r"_{2,}", "_", text)
    text = re.sub(r" {2,}", " ", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = text.replace("1. ", "")
    for old, new in _NUMBERING:
        text = text.replace(old, new)
    sentences = text.strip().lower().split(". ")
    cleaned = []
    for sentence in sentences:
        for ch in ('"', "/", "\\", "'"):
            sentence = sentence.replace(ch, "")
        cleaned.append(_STRIPPED.sub("", sentence.strip().lower()))
    return " . ".join(cleaned) + " ."
