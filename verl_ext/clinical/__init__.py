"""Model-backed clinical NLP: RaTE-NER + BioLORD analyzer, RadGraph, CheXbert, RaTEScore, GREEN.

  ``models``   the one place that loads each model (local paths, once per process per device)
  ``compat``   the one shim for the upstream packages on transformers 5 (and why)
  ``rate``     ``RateAnalyzer`` (the edit engine's ``ReportAnalyzer``) and RaTEScore from its analyses
  ``radgraph`` ``RadGraphAnnotator`` (batched radgraph) and ``RadGraphAnalyzer`` (the RadGraph edit variant)
  ``chexbert`` ``CheXbertLabeler`` (14 conditions, batched)
  ``green``    ``GreenScorer`` (GREEN through vLLM)
  ``scorer``   ``ClinicalScorer``: the above, built lazily from one config (used by the reward and the evaluation)
  ``lexicon``  a light lexicon analyzer (owned by the edit engine)

Importing this package is cheap: the submodules import torch/transformers and the scorer packages only when used.
"""
