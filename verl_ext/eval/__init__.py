"""The end of the pipeline: checkpoint export, report generation, and evaluation tables.

* `verl_ext.eval.export`    — a verl FSDP checkpoint (SFT or RL, FSDP1 or FSDP2) → a Hugging Face model directory
  that vLLM and transformers load (verl's own merger underneath);
* `verl_ext.eval.generate`  — a model over a test parquet → ``(id, generated, reference)`` rows, resumable, with
  the prompts verl's RL rollouts build (vLLM, or transformers as a slower fallback);
* `verl_ext.eval.evaluate` — generated vs reference reports → the paper's Table 1 metrics and per-study scores
  (CheXbert, RadGraph, RaTEScore, GREEN models via ``verl_ext.clinical``; the math is ``verl_ext.metrics``);
* `verl_ext.eval.compare`   — per-study scores of several runs → Markdown/CSV tables and a plot, with bootstrap CIs
  and paired run-vs-baseline differences, in-domain and out-of-domain test sets (the paper's Tables 1, 2, 5, 6);
* `verl_ext.eval.bootstrap` — the vectorised (paired) study-level bootstrap behind `compare`;
* `verl_ext.eval.rexrank`   — ReXrank's protocol: its test JSONs, generation, its metrics, the same tables and a
  row ranked among the leaderboard's published ones.

End to end::

    python -m verl_ext.eval.export   --checkpoint checkpoints/mimic_editgrpo --out models/editgrpo
    python -m verl_ext.eval.generate --model models/editgrpo --data data/iu_xray --out gen/editgrpo_iu.jsonl
    python -m verl_ext.eval.evaluate --input gen/editgrpo_iu.jsonl --out scores/editgrpo/iu ...
    python -m verl_ext.eval.compare  --run SFT@iu_xray=scores/sft/iu --run EditGRPO@iu_xray=scores/editgrpo/iu \\
        ... --in-domain mimic_cxr --out tables/

Importing this package imports nothing heavy.
"""
