"""RadGraph annotations, batched and cached, and the RadGraph-based ``ReportAnalyzer`` of the edit engine.

``RadGraphAnnotator.annotate(texts)`` returns, per text, the annotation dict radgraph 0.1.18 returns per report
(``{"text", "entities": {id: {tokens, label, start_ix, end_ix, relations}}}``, plus ``input_capped``), from the
package's own model, preprocessing (``radgraph.utils.preprocess_reports``) and post-processing
(``radgraph.utils.get_entity``). Input cap: a report is read up to one BERT window (512 wordpieces, the model's own
``max_length``; ``words_within_window``); ``input_capped`` says whether it was cut.

Batching: radgraph runs one report per forward pass (its DyGIE model rejects multi-document batches). DyGIE treats
the sentences of one document independently whenever its cross-sentence parts are off (coreference loss weight and
coref propagation 0, events 0), which is the case for the RadGraph models: each sentence gets its own wordpiece
sequence, span enumeration, NER, span pruning and relations. So up to ``batch_size`` reports are packed as the
sentences of one document, and the per-sentence predictions are shifted back to report-relative token indices.
One catch: the relation pruner keeps ``ceil(n_tokens * spans_per_word)`` spans per sentence and pads shorter rows
with a repeated index, and ``RelationExtractor._predict_sentence`` masks the padding on one axis only, so padded
slots emit spurious relations. Packs therefore only group reports with the same number of kept spans (no padding).
The result equals the package's per-report output (tested on the fixtures; float rounding from padding of the
wordpiece sequences aside). If a model's config enables a cross-sentence module, packing is switched off.

``RadGraphAnalyzer`` maps RadGraph entities onto the project's sentences (exact char spans) for the RadGraph-based
edit variant: ``OBS-DP``/``Observation::definitely present`` -> ABNORMALITY (present), ``OBS-DA``/``...definitely
absent`` -> NON-ABNORMALITY (absent), ``OBS-U``/``...uncertain`` -> ABNORMALITY with presence "uncertain", anatomy
-> ANATOMY. Entities carry no embedding (RadGraph has no entity embedder; the edit rules then match exactly).
"""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any, Optional, Sequence

from verl_ext.clinical.cache import MiB, LRUCache
from verl_ext.clinical.rate import _sentence_of
from verl_ext.editing.sentences import split_sentences
from verl_ext.editing.types import ABNORMALITY, ANATOMY, NON_ABNORMALITY, UNCERTAIN, Entity, ReportAnalysis, Sentence

logger = logging.getLogger(__name__)


def _radgraph_utils():
    from verl_ext.clinical import compat

    compat.install()
    with compat.quiet_imports():
        import radgraph.utils as rg_utils
        from radgraph.allennlp.data.dataloader import PyTorchDataLoader
        from radgraph.allennlp.data.dataset_readers import AllennlpDataset
    return rg_utils, AllennlpDataset, PyTorchDataLoader


def empty_annotation(text: str = "") -> dict:
    return {"text": text, "entities": {}, "data_source": None, "data_split": "inference", "input_capped": False}


class RadGraphAnnotator:
    """Batched, cached RadGraph annotation (see the module docstring)."""

    def __init__(
        self,
        cache_dir: str,
        model_type: str = "radgraph-xl",
        device: str = "auto",
        batch_size: int = 16,
        cache_mb: float = 256.0,
    ):
        from verl_ext.clinical import models

        self.rg = models.load_radgraph(cache_dir, model_type, device)
        self.model_type = self.rg.model_type
        self.batch_size = max(1, int(batch_size))
        self.cache = LRUCache(int(cache_mb * MiB))  # text -> annotation, bounded by bytes
        self._lock = threading.RLock()
        self.pack = self._packing_is_exact(self.rg.model)
        self.counters = {"texts": 0, "forward_passes": 0, "annotated": 0}

    @staticmethod
    def _packing_is_exact(model) -> bool:
        w = model._loss_weights
        ok = w.get("coref", 0) == 0 and w.get("events", 0) == 0 and getattr(model._coref, "coref_prop", 0) == 0
        if not ok:
            logger.warning("RadGraph model has cross-sentence modules enabled; annotating one report per forward pass")
        return ok

    def annotate(self, texts: Sequence[str]) -> list[dict]:
        """One radgraph annotation per text (empty/whitespace text -> no entities, without running the model)."""
        texts = [str(t) for t in texts]
        with self._lock:
            self.counters["texts"] += len(texts)
            nonempty = [t for t in texts if t.strip()]
            annotated = iter(self.cache.get_many(nonempty, self._annotate_uncached))
            return [next(annotated) if t.strip() else empty_annotation() for t in texts]

    def _annotate_uncached(self, texts: list[str]) -> list[dict]:
        import torch

        rg_utils, AllennlpDataset, PyTorchDataLoader = _radgraph_utils()
        model_input = rg_utils.preprocess_reports(texts, self.model_type)
        token_lists = [m["sentences"][0] for m in model_input]
        capped = [False] * len(texts)
        for i, toks in enumerate(token_lists):
            keep = self.words_within_window(toks)
            if keep < len(toks):
                token_lists[i], capped[i] = toks[:keep], True
        results: list[Optional[dict]] = [None] * len(texts)
        runnable = [i for i, toks in enumerate(token_lists) if toks]
        for i, toks in enumerate(token_lists):
            if not toks:
                results[i] = empty_annotation()
        with torch.inference_mode():
            for idx in self._packs(runnable, token_lists):
                doc = {"doc_key": "0", "sentences": [token_lists[i] for i in idx], "dataset": self.model_type}
                with warnings.catch_warnings():  # "Document 0 has a sentence with a single token" (harmless)
                    warnings.simplefilter("ignore", UserWarning)
                    instance = self.rg.reader.text_to_instance(doc)
                data = AllennlpDataset([instance])
                data.index_with(self.rg.model.vocab)
                batch = next(iter(PyTorchDataLoader(batch_size=1, dataset=data)))
                batch = rg_utils.batch_to_device(batch, self.rg.device)
                output = self.rg.model(**batch)
                js = self.rg.model.make_output_human_readable(output).to_json()
                self.counters["forward_passes"] += 1
                offset = 0
                for k, i in enumerate(idx):
                    sent = js["sentences"][k]
                    ner = [[e[0] - offset, e[1] - offset, *e[2:]] for e in js["predicted_ner"][k]]
                    rel = [
                        [r[0] - offset, r[1] - offset, r[2] - offset, r[3] - offset, *r[4:]]
                        for r in js["predicted_relations"][k]
                    ]
                    results[i] = {
                        "text": " ".join(sent),
                        "entities": rg_utils.get_entity(ner, rel, sent),
                        "data_source": None,
                        "data_split": "inference",
                        "input_capped": capped[i],
                    }
                    offset += len(sent)
        self.counters["annotated"] += len(texts)
        return results  # type: ignore[return-value]

    def words_within_window(self, tokens: list[str]) -> int:
        """How many leading words of a preprocessed report fit in one window of the model's BERT (its
        ``max_length``, 512 wordpieces with [CLS]/[SEP]). The package folds longer inputs into several windows, but
        its span enumeration and relation scoring grow super-linearly with the words (about 2 GB at 4,000 characters,
        8 GB at 8,000), so one runaway response could take the scoring process down for its whole batch. Reports are
        far shorter (MIMIC-CXR findings: a few hundred wordpieces), so the cap only ever cuts runaway generations."""
        indexer = next(iter(self.rg.reader._token_indexers.values()))
        limit = getattr(indexer._matched_indexer, "_max_length", None) or 512
        if sum(map(len, tokens)) <= limit - 2:  # a wordpiece holds at least one character: it fits
            return len(tokens)
        _, offsets = indexer._allennlp_tokenizer.intra_word_tokenize(tokens)
        last = limit - 2  # wordpiece positions 1 .. limit-2 hold words; 0 is [CLS], limit-1 [SEP]
        keep = 0
        for k, off in enumerate(offsets):
            if off is not None and off[1] > last:
                break
            keep = k + 1
        return keep

    def _packs(self, runnable: list[int], token_lists: list[list[str]]) -> list[list[int]]:
        """Reports to run together: same number of relation-pruned spans (see the module docstring), at most
        ``batch_size`` per pack; one report per pack when packing is off."""
        import math

        if not self.pack:
            return [[i] for i in runnable]
        spw = self.rg.model._relation._spans_per_word
        groups: dict[int, list[int]] = {}
        for i in runnable:
            groups.setdefault(math.ceil(len(token_lists[i]) * spw), []).append(i)
        return [
            g[s : s + self.batch_size] for _, g in sorted(groups.items()) for s in range(0, len(g), self.batch_size)
        ]

    def preprocess_tokens(self, text: str) -> list[str]:
        """The tokens radgraph's preprocessing gives for ``text`` (entity ``start_ix``/``end_ix`` index them)."""
        rg_utils, _, _ = _radgraph_utils()
        return rg_utils.preprocess_reports([text], self.model_type)[0]["sentences"][0]


def entity_type_of(label: str) -> tuple[str, Optional[str]]:
    """(RaTE-style type, explicit presence label or None) for a RadGraph entity label (v1 or XL)."""
    low = label.lower()
    if low.startswith("anat"):
        return ANATOMY, None
    if "uncertain" in low or low.endswith("-u"):
        return ABNORMALITY, UNCERTAIN
    if "absent" in low or low.endswith("-da"):
        return NON_ABNORMALITY, None
    return ABNORMALITY, None


def token_char_starts(text: str, tokens: list[str]) -> list[int]:
    """Char offset in ``text`` of each preprocessed token (sequential search; a token radgraph rewrote, e.g. an
    escaped quote, gets the current cursor)."""
    starts, cursor = [], 0
    for tok in tokens:
        k = text.find(tok, cursor)
        if k < 0:
            starts.append(cursor)
            continue
        starts.append(k)
        cursor = k + len(tok)
    return starts


class RadGraphAnalyzer:
    """``ReportAnalyzer`` from RadGraph annotations: project sentences + entities with RadGraph presence labels."""

    def __init__(self, annotator: RadGraphAnnotator):
        self.annotator = annotator

    @classmethod
    def from_paths(
        cls, cache_dir: str, model_type: str = "radgraph-xl", device: str = "auto", **kw: Any
    ) -> "RadGraphAnalyzer":
        return cls(RadGraphAnnotator(cache_dir, model_type, device, **kw))

    def analyze(self, texts: Sequence[str]) -> list[ReportAnalysis]:
        texts = [str(t) for t in texts]
        anns = self.annotator.annotate(texts)
        return [self._analysis(t, a) for t, a in zip(texts, anns)]

    def _analysis(self, text: str, ann: dict) -> ReportAnalysis:
        spans = split_sentences(text)
        buckets: list[list[Entity]] = [[] for _ in spans]
        if ann["entities"] and spans:
            starts = token_char_starts(text, self.annotator.preprocess_tokens(text))
            for ent in ann["entities"].values():
                typ, presence = entity_type_of(ent["label"])
                pos = starts[ent["start_ix"]] if ent["start_ix"] < len(starts) else len(text)
                k = _sentence_of(spans, pos)
                buckets[k].append(Entity(ent["tokens"], typ, None, presence_label=presence))
        sentences = tuple(Sentence(text[a:b], a, b, tuple(bk)) for (a, b), bk in zip(spans, buckets))
        return ReportAnalysis(text=text, sentences=sentences)
