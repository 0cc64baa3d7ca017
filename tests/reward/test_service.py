"""The asyncio micro-batcher: coalescing, order, batch limits, errors."""

import asyncio
import threading


from verl_ext.reward.service import MicroBatcher


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


def test_coalesces_and_keeps_each_result_with_its_request():
    seen = []

    def process(items):
        seen.append(list(items))
        return [x * 10 for x in items]

    b = MicroBatcher(process, max_batch=100, max_wait_s=0.05)

    async def main():
        return await asyncio.gather(*[b.submit(i) for i in range(25)])

    assert run(main()) == [i * 10 for i in range(25)]
    assert seen == [list(range(25))] and b.batch_sizes == [25]


def test_max_batch_and_requests_arriving_during_a_batch():
    gate = threading.Event()
    seen = []

    def process(items):
        seen.append(len(items))
        if len(seen) == 1:
            gate.wait(2)
        return items

    b = MicroBatcher(process, max_batch=4, max_wait_s=0.01)

    async def main():
        first = [asyncio.ensure_future(b.submit(i)) for i in range(6)]
        await asyncio.sleep(0.05)
        late = [asyncio.ensure_future(b.submit(100 + i)) for i in range(3)]
        gate.set()
        return await asyncio.gather(*first, *late)

    out = run(main())
    assert out == list(range(6)) + [100, 101, 102]
    assert seen[0] == 4 and sum(seen) == 9 and max(seen) <= 4


def test_errors_reach_every_waiter_and_the_batcher_recovers():
    calls = {"n": 0}

    def process(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model failed")
        return items

    b = MicroBatcher(process, max_batch=8, max_wait_s=0.01)

    async def main():
        res = await asyncio.gather(*[b.submit(i) for i in range(3)], return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in res)
        return await b.submit(7)

    assert run(main()) == 7


def test_wrong_result_count_is_an_error():
    b = MicroBatcher(lambda items: items[:-1], max_batch=8, max_wait_s=0.0)

    async def main():
        return await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in run(main()))
