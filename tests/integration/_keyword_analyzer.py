"""A deterministic keyword analyzer for the integration test (a ``verl_ext.editing.ReportAnalyzer``).

Entities are finding words; presence is "absent" after a negation cue in the same sentence; the embedding is the
word's one-hot vector, so identical findings have cosine 1 and different ones 0. Loaded by the agent-loop worker via
``editgrpo.analyzer=<this file>:KeywordAnalyzer``.
"""
import re

import numpy as np

from verl_ext.editing import Entity, ReportAnalysis, Sentence, split_sentences

FINDINGS = ("effusion", "pneumothorax", "cardiomegaly", "enlarged", "consolidation", "edema", "atelectasis", "opacity")
NEGATIONS = ("no ", "without ", "negative for ")


class KeywordAnalyzer:
    def __init__(self):
        self.calls = 0

    def analyze(self, texts):
        self.calls += 1
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> ReportAnalysis:
        sentences = []
        for a, b in split_sentences(text):
            sent = text[a:b]
            low = sent.lower()
            negated = any(low.startswith(n) or f" {n}" in low for n in NEGATIONS)
            entities = []
            for k, word in enumerate(FINDINGS):
                if re.search(rf"\b{word}\b", low):
                    vec = np.zeros(len(FINDINGS), dtype=np.float32)
                    vec[k] = 1.0
                    entities.append(Entity(word, "NON-ABNORMALITY" if negated else "ABNORMALITY", vec))
            sentences.append(Sentence(sent, a, b, tuple(entities)))
        return ReportAnalysis(text=text, sentences=tuple(sentences))
