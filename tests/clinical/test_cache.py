from verl_ext.clinical.cache import LRUCache


def test_get_many_computes_each_missing_key_once_in_one_batch():
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [k.upper() for k in keys]

    cache = LRUCache(10)
    cache.put("a", "cached")
    assert cache.get_many(["a", "b", "c", "b"], compute) == ["cached", "B", "C", "B"]
    assert calls == [["b", "c"]]


def test_get_many_recomputes_values_evicted_before_read_back():
    calls = []

    def compute(keys):
        calls.append(list(keys))
        return [k * 2 for k in keys]

    cache = LRUCache(1)
    assert cache.get_many(["x", "y"], compute) == ["xx", "yy"]
    assert calls == [["x", "y"], ["x"]]
