"""Misbehaving ``ReportAnalyzer``s for the edit-worker robustness tests (loaded by path like a user's analyzer)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from _keyword_analyzer import KeywordAnalyzer  # noqa: E402

from verl_ext.editing import ReportAnalysis  # noqa: E402


class PoisonAnalyzer(KeywordAnalyzer):
    """Fails the whole batched call when any text of it contains "POISON" (as a model error would)."""

    batches: list = []

    def analyze(self, texts):
        PoisonAnalyzer.batches.append(list(texts))
        if any("POISON" in t for t in texts):
            raise ValueError("analyzer cannot read POISON")
        return super().analyze(texts)


class NormalisingAnalyzer(KeywordAnalyzer):
    """Returns analyses of a whitespace-collapsed text (a custom analyzer that normalises its input)."""

    def analyze(self, texts):
        return [ReportAnalysis.from_dict(self._one(" ".join(t.split())).to_dict()) for t in texts]
