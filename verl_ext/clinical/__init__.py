"""Model-backed clinical NLP: RaTE-NER + BioLORD analyzer, RadGraph, CheXbert, RaTEScore, GREEN.

Every model is loaded from a configured local path, once per process, by ``verl_ext.clinical.models``. Importing
this package is cheap: the submodules import torch/transformers and the scorer packages only when used.
"""
