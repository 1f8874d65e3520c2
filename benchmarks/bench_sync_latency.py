"""How long from a redis-cli-style write to the snapshot reflecting it.

Loads a 1 M-entry `block:caller` set under a unique prefix on the Redis at
127.0.0.1:6379, starts a SnapshotStore following it (MONITOR feed), then does
500 SADDs from a separate plain connection, one at a time, and times each
until the number is in `store.snapshot.block_caller`. Prints p50/p99/max,
the full-load time, and deletes its keys. Run: python3 benchmarks/bench_sync_latency.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

import redis.asyncio as aioredis

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])

from proxy.store.snapshot_store import SnapshotStore  # noqa: E402

URL = "redis://127.0.0.1:6379/0"
ENTRIES = 1_000_000
EDITS = 500


async def main() -> None:
    prefix = f"sipscreen-bench-{uuid.uuid4().hex}:"
    op = aioredis.Redis.from_url(URL, decode_responses=True)
    key = prefix + "block:caller"
    try:
        t0 = time.perf_counter()
        base = 12_000_000_000
        for i in range(0, ENTRIES, 10_000):
            await op.sadd(key, *(f"+{base + j}" for j in range(i, i + 10_000)))
        print(f"seeded {ENTRIES:,} numbers in {time.perf_counter() - t0:.1f}s")
        store = SnapshotStore(URL, prefix, emergency=frozenset({"911"}))
        task = asyncio.create_task(store.run())
        t0 = time.perf_counter()
        await store.wait_synced(120)
        print(
            f"full load of {len(store.snapshot.block_caller):,} entries: "
            f"{time.perf_counter() - t0:.2f}s (mode {store.mode})"
        )
        lat: list[float] = []
        for i in range(EDITS):
            n = f"+1303555{i:04d}"
            t = time.perf_counter()
            await op.sadd(key, n)
            ns = store.snapshot.block_caller
            while n not in ns:
                await asyncio.sleep(0)
                ns = store.snapshot.block_caller
                if time.perf_counter() - t > 2:
                    raise SystemExit(f"edit {n} not seen within 2 s")
            lat.append((time.perf_counter() - t) * 1e3)
        lat.sort()
        p50 = statistics.median(lat)
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(
            f"{EDITS} SADD edits -> snapshot: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
            f"max {lat[-1]:.3f} ms"
        )
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    finally:
        await op.unlink(key)
        await op.aclose()


if __name__ == "__main__":
    asyncio.run(main())
