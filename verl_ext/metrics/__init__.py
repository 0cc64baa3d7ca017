"""Evaluation metrics of the paper (Table 1) and their pure math.

Pure (numpy / stdlib only):
  ``chexbert``  per-sample micro-F1-14, corpus Micro/Macro-F1-14 and -5, label binarisation, inverse-frequency reward
  ``radgraph``  RadGraph F1 (simple / partial / complete) from annotations
  ``bleu``      sentence BLEU-n
  ``green``     GREEN prompt, chat template and completion parsing
  ``aggregate`` Table 1 columns from per-sample records (``table_from_per_sample``), ``format_table``
  ``rexrank``   ReXrank's BLEU-2, RadGraph entity/relation F1, SembScore cosine and RadCliQ-v1

The model-backed runner that scores generated reports with these (``python -m verl_ext.eval.evaluate``; the older
``python -m verl_ext.metrics`` is an alias) lives in ``verl_ext.eval.evaluate``.
"""
