"""RaTE analyzer: all texts of a step in one batched call vs one text at a time (same analyzer code).

    python bench/bench_analyzers.py [--texts 64] [--device cpu] [--fixtures DIR] [--tiny]

"one at a time" is what an extractor that serves one request per report does (the authors' Flask extractor): NER and
embedding forward passes per report, no cache (all cache budgets 0). "batched" runs
NER once per distinct sentence of all reports (length-sorted batches) and BioLORD once per distinct entity string,
from cold caches. Full-size random models by default (``--tiny`` for a smoke run). Asserts the same entities and
embeddings (to float rounding) both ways, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--texts", type=int, default=64, help="distinct reports (about one step's unique responses + references)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fixtures")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from bench_reward import make_workload

    from verl_ext.clinical.rate import RateAnalyzer
    from verl_ext.testing.scorer_models import build_all

    root = Path(args.fixtures or tempfile.mkdtemp(prefix="bench_scorers_"))
    paths = build_all(root / ("tiny" if args.tiny else "full"), full_size=not args.tiny)
    texts: list[str] = []
    seed = 0
    while len(texts) < args.texts:
        for resp, ref in make_workload(8, 10, seed=seed):
            for t in (resp, ref):
                if t.strip() and t not in texts and len(texts) < args.texts:
                    texts.append(t)
        seed += 1
    print(
        f"{len(texts)} distinct reports, {sum(len(t.split('. ')) for t in texts)} sentences; "
        f"{'tiny' if args.tiny else 'full-size random'} models, device={args.device}, threads={torch.get_num_threads()}"
    )

    batched = RateAnalyzer(str(paths.rate_ner), str(paths.biolord), device=args.device, ner_batch_size=32)
    single = RateAnalyzer(
        str(paths.rate_ner), str(paths.biolord), device=args.device, analysis_cache_mb=0, ner_cache_mb=0,
        embedding_cache_mb=0,
    )
    single.analyze(["Mild cardiomegaly."])  # warm-up (first-call overheads)
    batched.analyze(["Heart size is normal."])
    batched.analyses.clear()
    batched.embeddings.clear()

    t = time.perf_counter()
    one = [single.analyze([x])[0] for x in texts]
    t_single = time.perf_counter() - t
    t = time.perf_counter()
    many = batched.analyze(texts)
    t_batched = time.perf_counter() - t

    worst = 0.0
    for a, b in zip(one, many):
        assert [(e.text, e.type) for e in a.entities] == [(e.text, e.type) for e in b.entities], a.text
        assert [(s.start, s.end) for s in a.sentences] == [(s.start, s.end) for s in b.sentences]
        for x, y in zip(a.entities, b.entities):
            worst = max(worst, float(np.abs(x.embedding - y.embedding).max()))
    n_ent = sum(len(a.entities) for a in many)
    print(f"same analyses both ways ({n_ent} entities; max |embedding difference| {worst:.1e})")
    print(f"one at a time: {t_single:7.2f} s ({t_single / len(texts) * 1000:.0f} ms/report)")
    print(
        f"batched      : {t_batched:7.2f} s ({t_batched / len(texts) * 1000:.0f} ms/report); "
        f"{batched.counters['ner_batches']} NER batches, "
        f"{batched.counters['embedded_entities']} unique entity strings embedded"
    )
    print(f"speed-up: {t_single / t_batched:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
