"""Steady-state memory of one edit-step worker: entry-bounded caches (before) vs byte-bounded caches (after).

    python bench/bench_edit_memory.py [--steps 60] [--prompts 32] [--group 10] [--dim 768]

What runs, per configuration, in a fresh subprocess (so RSS is that configuration's alone): the edit step's analysis
and rules as ``EditAgentLoopWorker`` runs them for a stream of training steps. Per step, ``--prompts`` references
drawn from a pool of 3,000 synthetic CXR reports (they repeat across steps, as across epochs) and G/2 new responses
per prompt go through ``RateAnalyzer.analyze`` (its real caches: analyses per text, NER results per medspacy unit,
entity vectors per string; its real sentence units and entity bucketing) and then ``edit_reports`` (which attaches the
normalised embeddings and, to references, the self-similarity matrix to the cached analyses). Only the two models
are stand-ins, so the run fits on a laptop: NER tags finding/anatomy words of the synthetic reports with RaTE's
entity types, and each entity string gets a fixed random ``--dim``-d float32 vector (BioLORD's size by default).

* before: the former defaults, bounded by entries (200,000 analyses, 800,000 NER units, 500,000 vectors);
* after: the byte budgets of ``RateAnalyzer`` (defaults: 256 MiB analyses, 64 MiB NER units, 128 MiB vectors).

Prints RSS after every tenth of the run and the caches' accounted size, then both side by side, with the "before"
RSS extrapolated to its full 200,000-analysis bound from the measured bytes per cached analysis.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

_FINDING = re.compile(
    r"(?:(mild|moderate|small|large|trace|minimal|severe|increased|decreased|stable)\s+)?"
    r"(?:(left|right|bilateral)\s+)?"
    r"(pleural effusion|effusion|atelectasis|opacity|opacities|consolidation|pneumothorax|airspace disease|scarring|"
    r"cardiomegaly|congestion|edema|emphysema|hernia|abnormality|process)",
    re.IGNORECASE,
)
_ANATOMY = re.compile(
    r"(heart|lungs?|mediastinal|hilar|cardiomediastinal silhouette|osseous structures|lung base|lower lobe|upper lobe|"
    r"apex|perihilar region|carina|sternotomy wires)",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(no|without|negative for)\b", re.IGNORECASE)


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 20)


def _stand_in_analyzer(mode: str, dim: int):
    """``RateAnalyzer`` with its real caches and pipeline; the NER and embedding models replaced (see docstring)."""
    import numpy as np

    from verl_ext.clinical.cache import LRUCache
    from verl_ext.clinical.rate import RateAnalyzer, _rate_modules

    class StandIn(RateAnalyzer):
        def __init__(self):
            if mode == "before":
                big = 1 << 60
                self.analyses = LRUCache(big, max_entries=200_000)
                self.units = LRUCache(big, max_entries=800_000)
                self.embeddings = LRUCache(big, max_entries=500_000)
            else:
                self._init_state(256.0, 64.0, 128.0)  # RateAnalyzer's defaults
            import threading

            self._lock = threading.RLock()
            self.counters = {"texts": 0, "ner_sentences": 0, "ner_batches": 0, "embedded_entities": 0}
            _, utils = _rate_modules()
            self._post_process, self._compute = utils.post_process, utils.compute

        def _run_ner_uncached(self, sentences):
            out = []
            for sent in sentences:
                words = [m.span() for m in re.finditer(r"\S+", sent)]
                starts = {a: k for k, (a, _) in enumerate(words)}
                negated = bool(_NEGATION.search(sent))
                ents = []
                for m in _FINDING.finditer(sent):
                    k = starts.get(m.start())
                    if k is not None:
                        ents.append((m.group(0).lower(), "NON-ABNORMALITY" if negated else "ABNORMALITY", (k, k)))
                for m in _ANATOMY.finditer(sent):
                    k = starts.get(m.start())
                    if k is not None:
                        ents.append((m.group(0).lower(), "ANATOMY", (k, k)))
                out.append((words, ents))
            self.counters["ner_sentences"] += len(sentences)
            return out

        def _embed_uncached(self, entity_texts):
            return [
                np.random.default_rng(zlib.crc32(t.encode())).standard_normal(dim).astype(np.float32)
                for t in entity_texts
            ]

    return StandIn()


def _worker_run(mode: str, steps: int, prompts: int, group: int, dim: int) -> dict:
    from bench_reward import NORMAL, _abnormal

    from verl_ext.editing import EditConfig, edit_reports

    rng = random.Random(0)
    pool = []
    for _ in range(3000):
        sents = [_abnormal(rng) for _ in range(rng.randint(1, 3))] + rng.sample(NORMAL, rng.randint(1, 3))
        rng.shuffle(sents)
        pool.append(" ".join(sents))
    analyzer = _stand_in_analyzer(mode, dim)
    cfg = EditConfig()
    rss0 = _rss_mib()
    trace = []
    t0 = time.perf_counter()
    for step in range(steps):
        refs = rng.sample(pool, prompts)
        for ref in refs:
            responses = []
            for _ in range(group // 2):  # G/2 sampled responses per prompt, new every step
                out = [s for s in ref.split(". ") if rng.random() < 0.7] or [ref]
                out.insert(rng.randrange(len(out) + 1), _abnormal(rng).rstrip("."))
                responses.append(". ".join(s.rstrip(".") for s in out) + ".")
            analyses = analyzer.analyze(responses + [ref])
            rngs = [random.Random(k) for k in range(len(responses))]
            edit_reports(analyses[:-1], [analyses[-1]] * len(responses), cfg, rngs)
        if (step + 1) % max(1, steps // 10) == 0 or step + 1 == steps:
            trace.append({
                "step": step + 1,
                "rss_mib": round(_rss_mib(), 1),
                "analyses": len(analyzer.analyses),
                "evictions": analyzer.analyses.evictions,
                "cache_mib": round((analyzer.analyses.nbytes + analyzer.units.nbytes + analyzer.embeddings.nbytes)
                                   / (1 << 20), 1) if mode == "after" else None,
            })
            print(json.dumps({"mode": mode, **trace[-1]}), file=sys.stderr, flush=True)
    seconds = round(time.perf_counter() - t0, 1)
    return {"mode": mode, "rss_start_mib": round(rss0, 1), "trace": trace, "seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="training steps simulated")
    ap.add_argument("--prompts", type=int, default=32, help="prompts per step handled by this worker (paper: 32)")
    ap.add_argument("--group", type=int, default=10, help="G; G/2 sampled responses per prompt are analysed")
    ap.add_argument("--dim", type=int, default=768, help="entity vector size (BioLORD: 768)")
    ap.add_argument("--_child", choices=("before", "after"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(_worker_run(args._child, args.steps, args.prompts, args.group, args.dim)))
        return 0

    results = {}
    for mode in ("before", "after"):
        cmd = [sys.executable, __file__, "--_child", mode, "--steps", str(args.steps), "--prompts", str(args.prompts),
               "--group", str(args.group), "--dim", str(args.dim)]
        proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])

    before, after = results["before"], results["after"]
    print(f"\nedit-step worker memory, {args.steps} steps x {args.prompts} prompts x (G/2={args.group // 2} responses"
          f" + 1 reference), {args.dim}-d entity vectors")
    print(f"{'step':>6} | {'before: RSS MiB':>15} {'analyses':>9} | {'after: RSS MiB':>14} {'analyses':>9}"
          f" {'cache MiB':>9}")
    for b, a in zip(before["trace"], after["trace"]):
        print(f"{b['step']:>6} | {b['rss_mib']:>15.0f} {b['analyses']:>9} | {a['rss_mib']:>14.0f} {a['analyses']:>9}"
              f" {a['cache_mib']:>9.0f}")
    last_b, last_a = before["trace"][-1], after["trace"][-1]
    per_analysis = (last_b["rss_mib"] - before["rss_start_mib"]) / max(1, last_b["analyses"])
    print(f"before: RSS grows {per_analysis * 1024:.0f} KiB per cached analysis with no plateau; at its"
          f" 200,000-analysis bound that is {before['rss_start_mib'] + per_analysis * 200_000:,.0f} MiB")
    full = [t for t in after["trace"] if t["evictions"] > 0]
    if full:
        lo, hi = min(t["rss_mib"] for t in full), max(t["rss_mib"] for t in full)
        print(f"after : steady state from step {full[0]['step']} (analysis cache at its budget, evicting) to step"
              f" {last_a['step']}: RSS {lo:.0f}-{hi:.0f} MiB; caches account {last_a['cache_mib']:.0f} MiB of their"
              f" 448 MiB budget (an upper bound: vectors shared between caches count twice)")
    else:
        print("after : the caches never reached their budget; run more --steps to see the steady state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
