"""DDSampling as a command: select DEER's RL training subset from a prepared training split (DEER Sec. 3.2).

    python -m verl_ext.selection.ddsampling --model SFT_HF_DIR --data DATA_DIR/mimic_cxr --out OUT \\
        --chexbert-checkpoint /models/chexbert.pth --chexbert-bert /models/bert-base-uncased [--k 10 --share 0.2]

Stages (every one resumable: rerun the same command after an interruption):

1. **generate** K reports per study with the SFT model by nucleus sampling (`verl_ext.eval.generate`: vLLM when it
   is installed and a GPU is visible, else transformers; prompts built by verl's own code). Pass k writes
   ``OUT/generations/k<k>.jsonl`` with seed ``seed * 1000 + k``; finished rows are skipped on a rerun. The paper
   gives no nucleus p or temperature: defaults ``top_p = 0.9``, ``temperature = 1.0`` (flags);
2. **label** every report with CheXbert (batched, cached; ``--uncertain negative`` = PromptMRG's ``== 1``, DEER's
   F1 convention) and compute ``D(I)`` (`verl_ext.algorithms.ddsampling`);
3. **select** ``round(share * N)`` studies with ``P_r`` over the diversity ranks (seeded);
4. **write** ``OUT/train-00000.parquet`` ... (the selected rows of the input, schema unchanged, so a recipe's
   ``TRAIN_FILES`` can point at them), ``OUT/manifest.json`` (settings, selected ids in draw order) and
   ``OUT/scores.csv`` (every study: id, diversity, rank, probability, selected);
5. **report** DEER's Table 7 for this run, selected vs full: share of zero-variance groups, distinct rewards per
   group and mean reward std, where a study's group is its K reports' rewards (example-based CheXbert F1 against
   the reference, PromptMRG) — ``OUT/report.md`` / ``report.json`` and the plot ``OUT/report.png``.

A study that lacks some of its K generations stops the run with the count (rerun to finish generating); nothing is
silently dropped. Selection itself never reads the references (label-free, as the paper stresses).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from verl_ext.algorithms.ddsampling import (
    DEFAULT_K,
    DEFAULT_SHARE,
    diagnostic_diversity,
    log_rank_probabilities,
    rank_descending,
    reward_diversity,
    sample_by_rank,
)
from verl_ext.help_format import HelpFormatter

logger = logging.getLogger(__name__)


@dataclass
class DDSamplingConfig:
    model: str
    """SFT model directory (Hugging Face format)."""
    data: list[str]
    """Training parquet files, globs or directories (a directory contributes its ``train*.parquet``)."""
    out: str
    chexbert_checkpoint: str
    chexbert_bert: str
    k: int = DEFAULT_K
    """Reports per study (DEER Sec. 4: 10)."""
    share: float = DEFAULT_SHARE
    """Share of studies selected (DEER: 20 %)."""
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 512
    backend: str = "auto"
    batch_size: int = 8
    uncertain: str = "negative"
    """CheXbert "uncertain" as positive or negative (negative: PromptMRG's ``label == 1``)."""
    device: str = "auto"
    rows_per_shard: int = 10_000
    limit: Optional[int] = None
    """Generate for at most this many studies per pass (smoke tests); selection then needs a complete rerun."""
    generate_options: dict = field(default_factory=dict)
    """Extra `verl_ext.eval.generate.GenerateConfig` fields (e.g. ``tensor_parallel_size``)."""


def train_files(specs: list[str]) -> list[str]:
    from verl_ext.eval.generate import resolve_data_files

    out = []
    for spec in specs:
        p = Path(spec).expanduser()
        out += sorted(str(f) for f in p.glob("train*.parquet")) if p.is_dir() else resolve_data_files([spec])
    if not out:
        raise FileNotFoundError(f"no training parquet found in {specs}")
    return out


def generate_all(cfg: DDSamplingConfig, files: list[str]) -> list[Path]:
    from verl_ext.eval.generate import GenerateConfig, run

    paths = []
    for k in range(cfg.k):
        path = Path(cfg.out) / "generations" / f"k{k:02d}.jsonl"
        gen = GenerateConfig(model=cfg.model, data=files, out=str(path), backend=cfg.backend,
                             batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                             temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed * 1000 + k, limit=cfg.limit,
                             **cfg.generate_options)
        counts = run(gen)
        logger.info("ddsampling pass %d/%d: %s", k + 1, cfg.k, counts)
        paths.append(path)
    return paths


def read_generations(paths: list[Path]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """id -> the K generated reports (pass order), id -> reference."""
    texts: dict[str, list[Optional[str]]] = {}
    refs: dict[str, str] = {}
    for k, path in enumerate(paths):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                texts.setdefault(rec["id"], [None] * len(paths))[k] = rec["generated"]
                refs[rec["id"]] = rec.get("reference") or ""
    return texts, refs  # type: ignore[return-value]


def _row_ids(files: list[str]) -> list[tuple[str, int, str]]:
    """(file, row index in file, row id) for every input row, ids as `verl_ext.eval.generate.row_id` makes them."""
    import pyarrow.parquet as pq

    from verl_ext.eval.generate import row_id

    out, ordinal = [], 0
    for f in files:
        extras = pq.read_table(f, columns=["extra_info"]).column("extra_info").to_pylist()
        for i, extra in enumerate(extras):
            out.append((f, i, row_id({"extra_info": extra}, ordinal)))
            ordinal += 1
    return out


def write_selected(files: list[str], selected_ids: list[str], out: Path, rows_per_shard: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    wanted = set(selected_ids)
    by_file: dict[str, list[int]] = {}
    for f, i, rid in _row_ids(files):
        if rid in wanted:
            by_file.setdefault(f, []).append(i)
    tables = [pq.read_table(f).take(pa.array(rows)) for f, rows in by_file.items()]
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows != len(wanted):
        raise RuntimeError(f"found {0 if table is None else table.num_rows} of {len(wanted)} selected rows in the data")
    for old in out.glob("train-*.parquet"):
        old.unlink()
    written = []
    for n, start in enumerate(range(0, table.num_rows, rows_per_shard)):
        path = out / f"train-{n:05d}.parquet"
        pq.write_table(table.slice(start, rows_per_shard), path)
        written.append(str(path))
    return written


def example_f1_rows(hyp: np.ndarray, ref: np.ndarray) -> np.ndarray:
    from verl_ext.metrics.chexbert import sample_micro_f1_batch

    return sample_micro_f1_batch(hyp, ref)


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("zero_variance_share", "zero-variance groups"), ("unique_rewards_mean", "unique rewards / group"),
            ("reward_std_mean", "reward std")]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, (key, title) in zip(axes, keys):
        vals = [report["full"][key], report["selected"][key]]
        ax.bar(["full", "DDSampling"], vals, color=["#999999", "#c0392b"])
        ax.set_title(title)
        for x, v in enumerate(vals):
            ax.text(x, v, f"{v:.3g}", ha="center", va="bottom")
    fig.suptitle("Reward diversity of the selected subset vs the full split (DEER Table 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_markdown(report: dict) -> str:
    lines = ["| Data setting | Zero-variance (lower is better) | Unique rewards (higher) | Avg. std (higher) |",
             "|---|---|---|---|"]
    for name, key in ((f"Full ({report['full']['groups']:.0f})", "full"),
                      (f"DDSampling ({report['selected']['groups']:.0f})", "selected")):
        r = report[key]
        lines.append(f"| {name} | {100 * r['zero_variance_share']:.1f}% | {r['unique_rewards_mean']:.2f} | "
                     f"{r['reward_std_mean']:.3f} |")
    return "\n".join(lines) + "\n"


def run(cfg: DDSamplingConfig, labeler=None) -> dict:
    from verl_ext.clinical.chexbert import CheXbertLabeler

    out = Path(cfg.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    files = train_files(cfg.data)
    paths = generate_all(cfg, files)
    texts, refs = read_generations(paths)
    ids = [rid for _, _, rid in _row_ids(files)]
    incomplete = [rid for rid in ids if rid not in texts or any(t is None for t in texts[rid])]
    if incomplete:
        raise RuntimeError(f"{len(incomplete)} of {len(ids)} studies lack some of their {cfg.k} generations "
                           f"(first: {incomplete[:3]}); rerun the same command to finish generating")
    labeler = labeler or CheXbertLabeler(cfg.chexbert_checkpoint, cfg.chexbert_bert, device=cfg.device)
    flat = [t for rid in ids for t in texts[rid]]
    gen_labels = labeler.labels(flat, uncertain=cfg.uncertain).reshape(len(ids), cfg.k, -1)
    scores = np.array([diagnostic_diversity(gen_labels[i]) for i in range(len(ids))])
    ranks = rank_descending(scores)
    probs = log_rank_probabilities(len(ids))[ranks - 1]
    chosen = sample_by_rank(scores, cfg.share, cfg.seed)
    selected_ids = [ids[i] for i in chosen]
    shards = write_selected(files, selected_ids, out, cfg.rows_per_shard)

    ref_labels = labeler.labels([refs[rid] for rid in ids], uncertain=cfg.uncertain)
    rewards = [example_f1_rows(gen_labels[i], np.repeat(ref_labels[i][None], cfg.k, axis=0)) for i in range(len(ids))]
    report = {"full": reward_diversity(rewards), "selected": reward_diversity([rewards[i] for i in chosen]),
              "reward": "example-based CheXbert F1 of each report vs the reference (PromptMRG)"}
    sel = set(chosen.tolist())
    with (out / "scores.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "diversity", "rank", "probability", "selected"])
        for i, rid in enumerate(ids):
            w.writerow([rid, f"{scores[i]:.6f}", int(ranks[i]), f"{probs[i]:.8g}", int(i in sel)])
    manifest = {"method": "DDSampling (DEER arXiv 2603.04022, Sec. 3.2)", "settings": asdict(cfg),
                "input_files": files, "n_total": len(ids), "n_selected": len(selected_ids),
                "selected_ids": selected_ids, "selected_ranks": [int(ranks[i]) for i in chosen],
                "selected_scores": [float(scores[i]) for i in chosen], "shards": shards, "report": report}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    plot_report(report, out / "report.png")
    return manifest


def parse_args(argv: Optional[list[str]] = None) -> DDSamplingConfig:
    p = argparse.ArgumentParser(prog="python -m verl_ext.selection.ddsampling", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="SFT model directory (Hugging Face format)")
    p.add_argument("--data", required=True, action="append", help="training parquet(s), glob or directory")
    p.add_argument("--out", required=True, help="output directory (shards, manifest, report; resumable)")
    p.add_argument("--chexbert-checkpoint", required=True, help="chexbert.pth")
    p.add_argument("--chexbert-bert", required=True, help="bert-base-uncased tokenizer/config directory")
    p.add_argument("--k", type=int, default=DEFAULT_K, help="reports per study (DEER: 10)")
    p.add_argument("--share", type=float, default=DEFAULT_SHARE, help="share of studies selected (DEER: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of generation pass k (seed*1000+k) and of the selection")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (the paper gives none)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling p (the paper gives none)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="generation budget per report")
    p.add_argument("--backend", choices=("auto", "vllm", "hf"), default="auto",
                   help="auto: vLLM when installed and a GPU is visible, else transformers")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per transformers generate call")
    p.add_argument("--uncertain", choices=("negative", "positive"), default="negative",
                   help="CheXbert 'uncertain' counts as (negative = PromptMRG's label == 1)")
    p.add_argument("--device", default="auto", help="CheXbert device")
    p.add_argument("--rows-per-shard", type=int, default=10_000, help="rows per written train-*.parquet shard")
    p.add_argument("--limit", type=int, default=None, help="at most this many studies per generation pass")
    a = p.parse_args(argv)
    cfg = DDSamplingConfig(model=a.model, data=a.data, out=a.out, chexbert_checkpoint=a.chexbert_checkpoint,
                           chexbert_bert=a.chexbert_bert, k=a.k, share=a.share, seed=a.seed,
                           temperature=a.temperature, top_p=a.top_p, max_new_tokens=a.max_new_tokens,
                           backend=a.backend, batch_size=a.batch_size, uncertain=a.uncertain, device=a.device,
                           rows_per_shard=a.rows_per_shard, limit=a.limit)
    if cfg.k < 2:
        p.error("--k must be at least 2 (a standard deviation over one report is 0)")
    if not 0 < cfg.share <= 1:
        p.error("--share must be in (0, 1]")
    for path in (cfg.model, cfg.chexbert_checkpoint, cfg.chexbert_bert):
        if not Path(path).expanduser().exists():
            p.error(f"{path} does not exist")
    return cfg


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_args(argv)
    manifest = run(cfg)
    print(report_markdown(manifest["report"]), end="")
    print(f"selected {manifest['n_selected']} of {manifest['n_total']} studies -> {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
