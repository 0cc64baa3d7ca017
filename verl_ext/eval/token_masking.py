"""DEER's token-masking validation of the DiTPO weightings (arXiv 2603.04022, Sec. 4.5, the "masking" table).

    python -m verl_ext.eval.token_masking --input rollouts.jsonl --tokenizer POLICY_DIR \\
        --chexbert-checkpoint /models/chexbert.pth --chexbert-bert /models/bert-base-uncased --out masking/

For each response, the top ``share`` (10 %) of its policy tokens by a weighting are masked and the response is
labelled again by CheXbert. Per weighting (``random``, ``tfidf`` = Eq. 7-8 over the response's group,
``gradient`` = Eq. 9-12 for the reference's positive conditions):

* **Label Modification Ratio**: share of responses whose 14 binary CheXbert labels change;
* **post-masking F1**: example-based F1 of the masked response's labels against its own unmasked labels (1 when
  both have no positive: nothing was lost).

Choices where the paper is silent (documented, flags where useful): masking removes the tokens' text (the
remaining tokens are decoded as they are); ``k = max(1, round(share * n_tokens))`` tokens, ties broken by position;
labels are binary with positive = CheXbert class 1 (PromptMRG); ``random`` draws uniform scores from a seeded
generator. Input rows: JSON lines with ``generated``, ``reference`` and optionally ``group`` (responses of one
prompt, for TF-IDF; default: rows with the same reference form a group). verl's own rollout dumps
(``trainer.rollout_data_dir``: ``input``, ``output``, ``gts`` per line) read with
``--generated-key output --reference-key gts --group-key input``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from verl_ext.help_format import HelpFormatter

WEIGHTINGS = ("random", "tfidf", "gradient")


def _f1_vs_original(masked: np.ndarray, original: np.ndarray) -> np.ndarray:
    tp = ((masked == 1) & (original == 1)).sum(1)
    fp = ((masked == 1) & (original == 0)).sum(1)
    fn = ((masked == 0) & (original == 1)).sum(1)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)


def top_share(scores: np.ndarray, share: float) -> np.ndarray:
    """Indices of the ``max(1, round(share * n))`` highest scores (earlier position first among equals)."""
    n = len(scores)
    k = min(n, max(1, int(round(share * n))))
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]


def token_weights(name: str, ids: list[list[int]], spans: list[list], texts: list[str], groups: list,
                  ref_labels: np.ndarray, chexbert, rng: np.random.Generator, alpha: float, beta: float) -> list:
    import torch

    from verl_ext.algorithms.ditpo import tfidf_token_weights
    from verl_ext.reward.token_weights import ditpo_gradient_channels

    if name == "random":
        return [rng.random(len(x)) for x in ids]
    if name == "tfidf":
        width = max(len(x) for x in ids)
        padded = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            padded[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
        w = tfidf_token_weights(padded, mask, groups, alpha=alpha)
        return [w[row, : len(x)].numpy() for row, x in enumerate(ids)]
    if name == "gradient":
        channels, _ = ditpo_gradient_channels(chexbert, texts, spans, list(ref_labels), beta=beta)
        return [c.arrays["ditpo_weight"] for c in channels]
    raise ValueError(f"unknown weighting {name!r}; expected one of {WEIGHTINGS}")


def masking_analysis(responses: Sequence[str], references: Sequence[str], groups: Optional[Sequence] = None, *,
                     tokenizer, labeler, share: float = 0.1, seed: int = 0, alpha: float = 4.0, beta: float = 1.0,
                     weightings: Sequence[str] = WEIGHTINGS) -> dict[str, dict[str, float]]:
    """The masking table: weighting -> {label_modification_ratio, post_masking_f1, masked_tokens_mean, n}."""
    from verl_ext.reward.manager import token_spans

    keep = [i for i, r in enumerate(responses) if str(r).strip()]
    if not keep:
        raise ValueError("no non-empty response to analyse")
    texts_in = [responses[i] for i in keep]
    refs = [references[i] for i in keep]
    grp = [groups[i] for i in keep] if groups is not None else refs
    ids = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts_in]
    decoded = [token_spans(tokenizer, x) for x in ids]
    texts = [d[0] for d in decoded]
    spans = [d[1] for d in decoded]
    original = labeler.labels(texts, uncertain="negative")
    ref_labels = labeler.labels(refs, uncertain="negative")
    out = {}
    for name in weightings:
        rng = np.random.default_rng(seed)
        weights = token_weights(name, ids, spans, texts, grp, ref_labels, labeler.m, rng, alpha, beta)
        masked_texts, counts = [], []
        for x, w in zip(ids, weights):
            drop = set(top_share(np.asarray(w), share).tolist())
            counts.append(len(drop))
            masked_texts.append(tokenizer.decode([t for j, t in enumerate(x) if j not in drop],
                                                 skip_special_tokens=True))
        masked = labeler.labels(masked_texts, uncertain="negative")
        changed = (masked != original).any(axis=1)
        out[name] = {"label_modification_ratio": float(changed.mean()),
                     "post_masking_f1": float(_f1_vs_original(masked, original).mean()),
                     "masked_tokens_mean": float(np.mean(counts)), "n": float(len(ids))}
    return out


def markdown(table: dict[str, dict[str, float]]) -> str:
    names = {"random": "Random", "tfidf": "TF-IDF (Rule)", "gradient": "Gradient"}
    lines = ["| Masking strategy | Label Mod. Ratio (higher) | Post-masking F1 (lower) |", "|---|---|---|"]
    for key, row in table.items():
        lines.append(f"| {names.get(key, key)} | {100 * row['label_modification_ratio']:.1f}% | "
                     f"{row['post_masking_f1']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m verl_ext.eval.token_masking", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--input", required=True, help="JSON lines with generated, reference[, group]")
    p.add_argument("--tokenizer", required=True, help="the policy's tokenizer directory")
    p.add_argument("--chexbert-checkpoint", required=True, help="chexbert.pth (StanfordAIMI/RRG_scorers)")
    p.add_argument("--chexbert-bert", required=True, help="bert-base-uncased tokenizer/config directory")
    p.add_argument("--out", required=True, help="output directory (masking.json, masking.md)")
    p.add_argument("--share", type=float, default=0.1, help="share of tokens masked (DEER: top 10 %%)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-masking baseline")
    p.add_argument("--alpha", type=float, default=4.0, help="TF-IDF weight strength (DEER: 4)")
    p.add_argument("--beta", type=float, default=1.0, help="gradient weight strength (DEER: 1)")
    p.add_argument("--device", default="auto", help="CheXbert device: auto, cpu, cuda, cuda:N")
    p.add_argument("--generated-key", default="generated", help="input field with the generated report")
    p.add_argument("--reference-key", default="reference", help="input field with the reference report")
    p.add_argument("--group-key", default="group", help="input field whose value groups rows for TF-IDF (rows without it: grouped by reference)")
    a = p.parse_args(argv)
    if not 0 < a.share <= 1:
        p.error("--share must be in (0, 1]")
    from transformers import AutoTokenizer

    from verl_ext.clinical.chexbert import CheXbertLabeler

    rows = [json.loads(line) for line in Path(a.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    gk, rk = a.generated_key, a.reference_key
    missing = [i for i, r in enumerate(rows) if gk not in r or rk not in r]
    if missing:
        p.error(f"{len(missing)} rows lack {gk!r} or {rk!r} (first: line {missing[0] + 1})")
    table = masking_analysis([r[gk] for r in rows], [r[rk] for r in rows],
                             [str(r.get(a.group_key, r[rk])) for r in rows],
                             tokenizer=AutoTokenizer.from_pretrained(a.tokenizer),
                             labeler=CheXbertLabeler(a.chexbert_checkpoint, a.chexbert_bert, device=a.device),
                             share=a.share, seed=a.seed, alpha=a.alpha, beta=a.beta)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masking.json").write_text(json.dumps(table, indent=2) + "\n")
    (out / "masking.md").write_text(markdown(table))
    print(markdown(table), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
