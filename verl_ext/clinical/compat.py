"""The one compatibility shim between the upstream scorer packages and this stack (transformers 5, sklearn 1.8).

Why it exists (each point has a test in ``tests/clinical/test_compat.py`` that shows the upstream failure):

1. transformers 5 removed ``PreTrainedTokenizerBase.encode_plus`` and the slow tokenizers'
   ``build_inputs_with_special_tokens``. radgraph 0.1.18's bundled AllenNLP calls both when it builds its token
   indexer, so ``radgraph.RadGraph(...)`` raises ``AttributeError: ... has no attribute encode_plus``. f1chexbert
   0.0.2's ``get_label`` calls ``encode_plus`` too. ``install()`` restores both as thin wrappers around
   ``tokenizer(...)`` (BERT-style ``[CLS] ids [SEP]``; the radgraph and CheXbert tokenizers are BERT WordPiece).
   With it radgraph gives the same outputs as on transformers 4.57 (BERT WordPiece tokenizers; ModernBERT, i.e.
   ``modern-radgraph-xl``, is untested). bert-score 0.3.13 (ReXrank's BERTScore, ``verl_ext.clinical.bertscore``)
   encodes an empty sentence with ``build_inputs_with_special_tokens([])`` (``<s></s>`` for RoBERTa, the same
   ``cls + ids + sep``); ``tests/clinical/test_bertscore.py`` shows the failure without it.
2. bert-score 0.3.13 (``sent_encode``) asks RoBERTa and GPT-2 tokenizers for ``encode(..., add_prefix_space=True)``.
   transformers 5 makes the prefix space a setting of the tokenizer and drops the keyword, so the first word of
   every report is encoded without its leading space (``No`` instead of ``ĠNo``, another token with another
   embedding) and BERTScore moves. ``install_bert_score()`` makes bert-score's ``get_tokenizer`` load such a
   tokenizer with ``add_prefix_space=True`` (only when the keyword is ignored, i.e. not on transformers 4).
3. f1chexbert 0.0.2's ``F1CheXbert.forward`` unpacks sklearn's private ``_check_targets`` into 3 values; sklearn
   1.8 returns 4. We do not shim that: all F1s are computed in ``verl_ext.metrics`` from label vectors (and the
   CheXbert labeler here replaces ``get_label``, batched). The test documents the failure.
4. Importing the packages has process-wide side effects: f1chexbert calls ``warnings.filterwarnings("ignore")``,
   radgraph ``warnings.simplefilter("default", DeprecationWarning)``, and PyRuSH (via RaTEScore) logs ~8 DEBUG
   lines per report through loguru. ``quiet_imports()`` restores the warning filters after import and disables the
   PyRuSH logger. PyRuSH's rule matcher PyFastNER (``FastCNER.processWildCards``) also logs ``"\." is not a
   eligible syntax.`` at INFO on the *root* logger for every sentence it splits (1,286 lines in one ReXrank run):
   a note about PyRuSH's own rule file that no user can act on. ``silence_pyrush()`` drops exactly those records
   (a filter on the root logger matching that message from PyFastNER); every other record passes.

Nothing else in the project patches third-party code.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import Any, Iterator

_LOCK = threading.Lock()
_INSTALLED: dict[str, Any] = {}
_MARK = "_verl_ext_compat_shim"


def _encode_plus(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs):
    """transformers-4 ``encode_plus``: one example through ``__call__``.

    A list of strings is, as in transformers 4 for non-split input, a list of *tokens* (f1chexbert passes
    ``tokenizer.tokenize(text)``), so it is converted to ids directly.
    """
    if isinstance(text, (list, tuple)) and not kwargs.get("is_split_into_words", False):
        ids = self.convert_tokens_to_ids(list(text))
        pair_ids = None
        if text_pair is not None:
            pair_ids = self.convert_tokens_to_ids(list(text_pair)) if isinstance(text_pair, (list, tuple)) else None
        if add_special_tokens:
            ids = _build_inputs_with_special_tokens(self, ids, pair_ids)
        elif pair_ids is not None:
            ids = ids + pair_ids
        out = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if kwargs.get("return_token_type_ids", True):
            out["token_type_ids"] = [0] * len(ids)
        from transformers import BatchEncoding

        return BatchEncoding(out)
    kwargs.pop("pad_to_max_length", None)
    return self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, **kwargs)


def _build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
    """BERT-style: ``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
    cls = [self.cls_token_id] if self.cls_token_id is not None else []
    sep = [self.sep_token_id] if self.sep_token_id is not None else []
    if token_ids_1 is None:
        return cls + list(token_ids_0) + sep
    return cls + list(token_ids_0) + sep + list(token_ids_1) + sep


_SHIMS = {"encode_plus": _encode_plus, "build_inputs_with_special_tokens": _build_inputs_with_special_tokens}


def install() -> None:
    """Restore the transformers-4 tokenizer methods the scorer packages call, where transformers lacks them."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    with _LOCK:
        for name, fn in _SHIMS.items():
            if name in _INSTALLED or hasattr(PreTrainedTokenizerBase, name):
                continue
            setattr(fn, _MARK, True)
            setattr(PreTrainedTokenizerBase, name, fn)
            _INSTALLED[name] = fn


def uninstall() -> None:
    """Remove what ``install()`` added (tests use it to show the upstream failure)."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    with _LOCK:
        for name in [n for n in _INSTALLED if n in _SHIMS]:
            if getattr(getattr(PreTrainedTokenizerBase, name, None), _MARK, False):
                delattr(PreTrainedTokenizerBase, name)
            del _INSTALLED[name]


def is_installed() -> bool:
    return any(name in _INSTALLED for name in _SHIMS)


def _ignores_prefix_space_keyword(tokenizer) -> bool:
    """Whether ``encode(text, add_prefix_space=True)`` leaves out the leading space (transformers 5)."""
    asked = tokenizer.encode("No", add_special_tokens=False, add_prefix_space=True)
    return asked != tokenizer.encode(" No", add_special_tokens=False)


def install_bert_score() -> None:
    """Make bert-score's tokenizers add the prefix space it asks for (point 2 of the module docstring)."""
    import bert_score.scorer
    import bert_score.utils

    with _LOCK:
        if "bert_score_get_tokenizer" in _INSTALLED:
            return
        original = bert_score.utils.get_tokenizer

        def get_tokenizer(model_type, use_fast=False):
            tokenizer = original(model_type, use_fast)
            prefix_space_types = (bert_score.utils.GPT2Tokenizer, bert_score.utils.RobertaTokenizer)
            if isinstance(tokenizer, prefix_space_types) and _ignores_prefix_space_keyword(tokenizer):
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(model_type, use_fast=use_fast, add_prefix_space=True)
            return tokenizer

        setattr(get_tokenizer, _MARK, True)
        bert_score.utils.get_tokenizer = bert_score.scorer.get_tokenizer = get_tokenizer
        _INSTALLED["bert_score_get_tokenizer"] = original


def uninstall_bert_score() -> None:
    """Undo ``install_bert_score()`` (tests use it to show the upstream tokenisation)."""
    import bert_score.scorer
    import bert_score.utils

    with _LOCK:
        original = _INSTALLED.pop("bert_score_get_tokenizer", None)
        if original is not None:
            bert_score.utils.get_tokenizer = bert_score.scorer.get_tokenizer = original


@contextlib.contextmanager
def quiet_imports() -> Iterator[None]:
    """Import scorer packages without letting them change process-wide warning filters; silence PyRuSH."""
    with warnings.catch_warnings():
        yield
    silence_pyrush()


class _PyFastNERSyntaxNote(logging.Filter):
    """Drops PyFastNER's ``"\<char>" is not a eligible syntax.`` records (point 4 of the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_pyfastner = "PyFastNER" in record.pathname.replace("\\", "/").split("/")
        return not (from_pyfastner and str(record.msg).endswith("is not a eligible syntax."))


_PYFASTNER_FILTER = _PyFastNERSyntaxNote()


def silence_pyrush() -> None:
    """Disable PyRuSH's loguru output and PyFastNER's syntax notes on the root logger (idempotent)."""
    root = logging.getLogger()
    if _PYFASTNER_FILTER not in root.filters:
        root.addFilter(_PYFASTNER_FILTER)
    try:
        from loguru import logger

        logger.disable("PyRuSH")
    except ImportError:  # pragma: no cover - loguru is a dependency of PyRuSH
        pass
