from verl_ext.clinical.cache import LRUCache


def test_get_many_computes_each_missing_key_once_in_one_batch():
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [k.upper() for k in keys]

    cache = LRUCache(max_bytes=1 << 20, max_entries=10)
    cache.put("a", "cached")
    assert cache.get_many(["a", "b", "c", "b"], compute) == ["cached", "B", "C", "B"]
    assert calls == [["b", "c"]]


def test_get_many_recomputes_values_evicted_before_read_back():
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [k * 2 for k in keys]

    cache = LRUCache(max_bytes=1 << 20, max_entries=1)
    assert cache.get_many(["x", "y"], compute) == ["xx", "yy"]
    assert calls == [["x", "y"]]  # the batch's own results are used, not recomputed


def test_bounded_by_bytes_not_entries():
    import numpy as np

    from verl_ext.clinical.cache import approx_nbytes

    vec = np.zeros(768, dtype=np.float32)  # one BioLORD vector: 3 KiB
    cache = LRUCache(max_bytes=100 * 1024)
    for i in range(1000):
        cache.put(f"entity {i}", vec.copy())
    assert cache.nbytes <= 100 * 1024 and 25 <= len(cache) <= 33  # ~3.1 KiB per entry
    assert "entity 999" in cache and "entity 0" not in cache  # least recently used evicted first
    assert cache.nbytes == sum(approx_nbytes(k) + approx_nbytes(v) for k, v in cache.items())
    too_big = np.zeros(100 * 1024, dtype=np.uint8)
    cache.put("huge", too_big)  # larger than the whole budget: not cached, nothing else evicted for it
    assert "huge" not in cache and len(cache) >= 25
    assert LRUCache(max_bytes=0).put("a", 1) is None and len(LRUCache(max_bytes=0)) == 0


def test_analysis_size_counts_the_edit_engines_derived_matrices():
    import random

    import numpy as np

    from verl_ext.clinical.cache import approx_nbytes
    from verl_ext.editing import EditConfig, Entity, ReportAnalysis, Sentence, edit_report

    rng = np.random.default_rng(0)
    ents = tuple(Entity(f"e{i}", "ABNORMALITY", rng.normal(size=768).astype(np.float32)) for i in range(10))
    text = "Sentence one. Sentence two."
    an = ReportAnalysis(text, (Sentence("Sentence one.", 0, 13, ents[:5]), Sentence("Sentence two.", 14, 27, ents[5:])))
    estimate = approx_nbytes(an)
    raw = 10 * 768 * 4
    assert estimate >= 2 * raw + 10 * 10 * 4  # embeddings + their normalised copy + the self-similarity matrix
    edit_report(an, an, EditConfig(), random.Random(0))  # as a reference: the engine attaches its matrices
    derived = sum(v.emb.nbytes for k, v in an.__dict__["_edit_cache"].items() if isinstance(k, str))
    derived += sum(v.nbytes for k, v in an.__dict__["_edit_cache"].items() if isinstance(k, tuple))
    assert estimate >= raw + derived  # the estimate made at put time already covers them
    assert estimate < 3 * raw  # and is no gross over-estimate
