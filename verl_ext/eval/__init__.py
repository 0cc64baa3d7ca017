"""The end of the pipeline: checkpoint export, report generation, and evaluation tables.

* `verl_ext.eval.export`   — a verl FSDP checkpoint (SFT or RL) → a Hugging Face model directory (vLLM/transformers);
* `verl_ext.eval.generate` — a model over a test parquet → ``(id, generated, reference)`` rows, resumable;
* `verl_ext.eval.compare`  — per-sample scores of several runs → Markdown/CSV tables and a plot, with bootstrap CIs;
* `verl_ext.eval.bootstrap` — the vectorised (paired) bootstrap behind `compare`.

Each is a CLI (``python -m verl_ext.eval.<name> --help``). Importing this package imports nothing heavy.
"""
