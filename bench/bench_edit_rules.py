"""Benchmark the EditGRPO edit engine: rule-engine edits/s on precomputed analyses, and LexiconAnalyzer throughput.

    python bench/bench_edit_rules.py                       # both parts
    python bench/bench_edit_rules.py --skip-lexicon        # rule engine only (no model load)
    python bench/bench_edit_rules.py --json out.json

Rule engine: synthetic report pairs of realistic size (6-10 sentences, 2-4 entities each, 768-d embeddings drawn
around a pool of concept vectors, so that matches, conflicts, false positives and false negatives all occur). Each
prompt's reference is shared by its G/2 responses (as in the rollout; the reference's matrices are cached on it).

Lexicon analyzer: realistic CXR reports composed from a sentence bank; texts/s when analysing the whole batch in one
call vs one text per call, with cold caches (every entity string embedded) and warm caches.

Prints ratios and absolute numbers; never a pass/fail.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verl_ext.editing import EditConfig, Entity, ReportAnalysis, Sentence, edit_report, edit_reports  # noqa: E402

TYPES_PRESENT = ("ABNORMALITY", "DISEASE")
TYPES_ABSENT = ("NON-ABNORMALITY", "NON-DISEASE")


def synthetic_pair(rng: np.random.Generator, concepts: np.ndarray, anatomy: np.ndarray, noise: float):
    """A (reference, [generated...]) family sharing concept draws, so edits of every kind happen."""

    def entity(concept_idx: int, present: bool, is_anatomy: bool) -> Entity:
        base = anatomy[concept_idx] if is_anatomy else concepts[concept_idx]
        vec = base + (noise / np.sqrt(base.shape[0])) * rng.standard_normal(base.shape[0]).astype(np.float32)
        if is_anatomy:
            return Entity(f"anat{concept_idx}", "ANATOMY", vec)
        kind = rng.integers(0, 2)
        return Entity(f"c{concept_idx}", (TYPES_PRESENT if present else TYPES_ABSENT)[kind], vec)

    def report(findings: dict[int, bool]) -> ReportAnalysis:
        n_sent = int(rng.integers(6, 11))
        items = list(findings.items())
        sentences, text, cursor = [], "", 0
        for i in range(n_sent):
            n_ent = int(rng.integers(2, 5))
            ents = []
            for _ in range(n_ent):
                if rng.random() < 0.3:
                    ents.append(entity(int(rng.integers(0, len(anatomy))), True, True))
                else:
                    c, present = items[int(rng.integers(0, len(items)))]
                    ents.append(entity(c, present, False))
            s = f"Sentence {i} about " + " and ".join(e.text for e in ents) + "."
            sentences.append(Sentence(s, cursor, cursor + len(s), tuple(ents)))
            text += s + " "
            cursor += len(s) + 1
        return ReportAnalysis(text.rstrip(), tuple(sentences))

    truth = {int(c): bool(rng.random() < 0.4) for c in rng.choice(len(concepts), size=8, replace=False)}

    def perturbed() -> dict[int, bool]:
        out = {}
        for c, p in truth.items():
            r = rng.random()
            if r < 0.15:
                out[c] = not p  # mislabeled
            elif r < 0.25:
                continue  # missed
            else:
                out[c] = p
        for c in rng.choice(len(concepts), size=2, replace=False):  # hallucinated
            out.setdefault(int(c), bool(rng.random() < 0.5))
        return out or dict(truth)

    return report(truth), perturbed, report


def bench_rules(args) -> dict:
    rng = np.random.default_rng(args.seed)
    dim = args.dim
    concepts = rng.standard_normal((60, dim)).astype(np.float32)
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    anatomy = rng.standard_normal((20, dim)).astype(np.float32)
    anatomy /= np.linalg.norm(anatomy, axis=1, keepdims=True)
    pairs = []
    for _ in range(args.prompts):
        ref, perturbed, report = synthetic_pair(rng, concepts, anatomy, noise=args.noise)
        for _ in range(args.group_half):
            pairs.append((report(perturbed()), ref))
    n_sent = np.mean([len(g.sentences) for g, _ in pairs])
    n_ent = np.mean([len(s.entities) for g, _ in pairs for s in g.sentences])
    out = {"pairs": len(pairs), "dim": dim, "mean_sentences": float(n_sent), "mean_entities_per_sentence": float(n_ent)}
    def drop_caches():
        for g, r in pairs:
            g.__dict__.pop("_edit_cache", None)
            r.__dict__.pop("_edit_cache", None)

    for max_ops in args.max_ops:
        cfg = EditConfig(tau=args.tau, max_ops=max_ops)
        for g, r in pairs[: min(20, len(pairs))]:  # warm-up (imports, allocator)
            edit_report(g, r, cfg, random.Random(0))
        rngs = [random.Random(i) for i in range(len(pairs))]
        row = {}
        # 1) edit_report one pair at a time (reference matrices cached on the reference after its first response)
        drop_caches()
        kinds: Counter = Counter()
        changed = 0
        t0 = time.perf_counter()
        for i, (g, r) in enumerate(pairs):
            res = edit_report(g, r, cfg, random.Random(i))
            changed += res.changed
            kinds.update(op.kind for op in res.ops)
        elapsed = time.perf_counter() - t0
        row["edit_report_edits_per_s"] = len(pairs) / elapsed
        row["edit_report_us_per_edit"] = 1e6 * elapsed / len(pairs)
        # 2) edit_reports: one batch (shared products per reference, single-threaded BLAS)
        for single in (True, False):
            drop_caches()
            rngs = [random.Random(i) for i in range(len(pairs))]
            t0 = time.perf_counter()
            edit_reports([g for g, _ in pairs], [r for _, r in pairs], cfg, rngs, single_thread_blas=single)
            elapsed = time.perf_counter() - t0
            key = "edit_reports" + ("" if single else "_multithread_blas")
            row[f"{key}_edits_per_s"] = len(pairs) / elapsed
            row[f"{key}_us_per_edit"] = 1e6 * elapsed / len(pairs)
        row["changed_fraction"] = changed / len(pairs)
        row["op_counts"] = dict(kinds)
        out[f"max_ops={max_ops}"] = row
    return out


SENTENCE_BANK = [
    "The heart is within normal limits.", "Heart size is normal.", "Moderate cardiomegaly.", "Mild cardiomegaly.",
    "The cardiomediastinal silhouette is normal.", "Widened mediastinum.", "Lungs are clear.",
    "There is a small left pleural effusion.", "No pleural effusion or pneumothorax.", "No pneumothorax.",
    "Small right apical pneumothorax.", "Mild pulmonary edema.", "No focal consolidation.",
    "Patchy opacity in the left lower lobe may represent atelectasis or pneumonia.", "Bibasilar atelectasis.",
    "Pneumonia cannot be excluded.", "Endotracheal tube terminates 4 cm above the carina.",
    "Nasogastric tube courses below the diaphragm.", "Right PICC line terminates in the superior vena cava.",
    "Median sternotomy wires are intact.", "Degenerative changes of the thoracic spine.", "No acute osseous abnormality.",
    "Old healed left rib fractures.", "Calcified granuloma in the right upper lobe.", "Tortuous thoracic aorta.",
    "Hyperinflated lungs consistent with emphysema.", "Pulmonary vascular congestion is noted.",
    "Effusions are not seen.", "Interval resolution of the right pleural effusion.", "Stable 1.5 cm nodule.",
    "No acute cardiopulmonary process.", "Elevated right hemidiaphragm.", "Hiatal hernia.",
    "Costophrenic angles are sharp.", "Possible small left effusion.", "Pacemaker leads in standard position.",
]


def synthetic_texts(n: int, seed: int, unique_tail: bool) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        k = rng.randint(6, 10)
        sents = rng.sample(SENTENCE_BANK, k)
        if unique_tail:  # defeat the sentence cache with a unique (entity-free) sentence
            sents.append(f"Comparison is made to study number {i}.")
        texts.append(rng.choice([" ", "\n"]).join(sents))
    return texts


def bench_lexicon(args) -> dict:
    from verl_ext.clinical.lexicon import LexiconAnalyzer, LexiconAnalyzerConfig

    t0 = time.perf_counter()
    analyzer = LexiconAnalyzer(LexiconAnalyzerConfig(device=args.device, cpu_threads=args.cpu_threads))
    load_s = time.perf_counter() - t0
    texts = synthetic_texts(args.texts, args.seed, unique_tail=True)
    analyzer.analyze(texts[:4])  # warm-up (lazy inits)
    out = {"texts": len(texts), "load_s": load_s, "device": args.device}
    for embed in ("canonical", "mention"):
        analyzer.config.embed = embed
        analyzer.clear_caches()
        t = time.perf_counter()
        analyzer.analyze(texts)
        batched_cold = time.perf_counter() - t
        t = time.perf_counter()
        analyzer.analyze(texts)
        batched_warm = time.perf_counter() - t
        analyzer.clear_caches()
        t = time.perf_counter()
        for text in texts:
            analyzer.analyze([text])
        single_cold = time.perf_counter() - t
        t = time.perf_counter()
        for text in texts:
            analyzer.analyze([text])
        single_warm = time.perf_counter() - t
        out[f"embed={embed}"] = {
            "batched_cold_texts_per_s": len(texts) / batched_cold,
            "one_at_a_time_cold_texts_per_s": len(texts) / single_cold,
            "batched_over_single_cold": single_cold / batched_cold,
            "batched_warm_texts_per_s": len(texts) / batched_warm,
            "one_at_a_time_warm_texts_per_s": len(texts) / single_warm,
        }
    # no sentence-cache help at all: every sentence unique
    analyzer.config.embed = "canonical"
    analyzer.clear_caches()
    uniq = [t.replace(".", f" (n{i}).", 1) for i, t in enumerate(synthetic_texts(args.texts, args.seed + 1, False))]
    t = time.perf_counter()
    analyzer.analyze(uniq)
    out["batched_all_sentences_new_texts_per_s"] = len(uniq) / (time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=200, help="prompts (references) for the rule benchmark")
    p.add_argument("--group-half", type=int, default=5, help="responses edited per reference (G/2)")
    p.add_argument("--dim", type=int, default=768, help="embedding size (BioLORD: 768)")
    p.add_argument("--noise", type=float, default=0.35, help="embedding noise around concept vectors")
    p.add_argument("--tau", type=float, default=0.6)
    p.add_argument("--max-ops", type=int, nargs="+", default=[1, 3])
    p.add_argument("--texts", type=int, default=256, help="reports for the lexicon benchmark")
    p.add_argument("--device", default="cpu", help="embedder device for the lexicon analyzer")
    p.add_argument("--cpu-threads", type=int, default=None, help="torch threads while embedding on CPU")
    p.add_argument("--skip-lexicon", action="store_true", help="only benchmark the rule engine")
    p.add_argument("--skip-rules", action="store_true", help="only benchmark the lexicon analyzer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)

    results = {}
    if not args.skip_rules:
        results["rules"] = bench_rules(args)
        print(json.dumps({"rules": results["rules"]}, indent=2))
    if not args.skip_lexicon:
        results["lexicon"] = bench_lexicon(args)
        print(json.dumps({"lexicon": results["lexicon"]}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
