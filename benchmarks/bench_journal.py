"""Keyspace-notification path, managed-Redis style: edit journal vs whole-set re-read.

How this works: starts a private redis-server on a free loopback port with
`notify-keyspace-events Kgs$hzxet` (as a managed Redis's parameter group
would set it) and an ACL user that may run neither MONITOR nor CONFIG, so
`SnapshotStore` follows edits by keyspace notifications. It writes N blocked
callers under a unique prefix (pipelined SADD, 10 k members a command), runs
the store in this process, and then times two kinds of edit, each a new
member SADDed from a separate connection:

* journal: `MULTI; SADD <prefix>block:caller +1...; XADD <prefix>journal ...;
  EXEC` (what `sipscreen block` and the documented redis-cli pattern do);
* reread: a plain `SADD` without a journal entry (what the store had to do
  for every edit before the journal: re-read the whole set, O(N)).

For each edit: wall time from just before the write to the snapshot holding
the member (polled every 0.5 ms), this process's CPU time (store + writer),
and Redis's CPU time (INFO cpu, user+sys of the server). The keys are
deleted and the server stopped at the end, also on error; every wait is
bounded (--timeout).

Run: python3 benchmarks/bench_journal.py --size 1M --journal-edits 50 --reread-edits 3
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import redis.asyncio as aioredis  # noqa: E402

from proxy.store.snapshot_store import SnapshotStore  # noqa: E402


def _size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 1000, "M": 1_000_000}.get(s[-1:], 1)
    return int(float(s.rstrip("KM")) * mult)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _redis_cpu(r: aioredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _until(cond: Any, timeout: float) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the snapshot did not see the edit in time")
        await asyncio.sleep(0.0005)


async def main(args: argparse.Namespace) -> None:
    n = _size(args.size)
    prefix = f"sipscreen-bench-journal-{uuid.uuid4().hex[:8]}:"
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--notify-keyspace-events", "Kgs$hzxet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    admin = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    try:
        for _ in range(200):
            try:
                await admin.ping()
                break
            except Exception:
                await asyncio.sleep(0.05)
        await admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-monitor", "-config"
        )
        key = prefix + "block:caller"
        t0 = time.monotonic()
        step = 10_000
        for i in range(0, n, step):
            await admin.sadd(key, *[f"+1303{j:07d}" for j in range(i, min(n, i + step))])
        print(f"size {n:,}: SADDed in {time.monotonic() - t0:.1f} s", flush=True)

        url = f"redis://app:pw@127.0.0.1:{port}/0"
        store = SnapshotStore(url, prefix, emergency=frozenset({"911"}))
        t0 = time.monotonic()
        task = asyncio.create_task(store.run())
        await store.wait_synced(args.timeout)
        print(f"store: {store.mode} feed, first load {time.monotonic() - t0:.1f} s", flush=True)
        assert store.mode == "keyspace", store.mode
        op = aioredis.Redis.from_url(url, decode_responses=True)
        results: dict[str, list[tuple[float, float, float]]] = {"journal": [], "reread": []}
        seq = 0
        for path, count in (("journal", args.journal_edits), ("reread", args.reread_edits)):
            for _ in range(count):
                seq += 1
                num = f"+1720{seq:07d}"
                await asyncio.sleep(0.1)  # settle: past the journal grace period
                rc0, pc0, w0 = await _redis_cpu(admin), time.process_time(), time.perf_counter()
                if path == "journal":
                    async with op.pipeline(transaction=True) as p:
                        p.sadd(key, num)
                        p.xadd(
                            prefix + "journal",
                            {"op": "sadd", "key": "block:caller", "members": num},
                            maxlen=100_000,
                            approximate=True,
                        )
                        await p.execute()
                else:
                    await op.sadd(key, num)
                await _until(lambda num=num: num in store.snapshot.block_caller, args.timeout)
                wall = time.perf_counter() - w0
                # the re-read's last SSCAN replies may still be in flight on
                # Redis's side: let them finish before reading its CPU
                await asyncio.sleep(0.05)
                cpu = time.process_time() - pc0
                rcpu = await _redis_cpu(admin) - rc0
                results[path].append((wall, cpu, rcpu))
        print(f"rereads by the store: {store.rereads}, journal entries: {store.journal_entries}")
        print()
        print(
            f"| path (N = {n:,}) | edits | edit→snapshot p50 | max"
            " | process CPU / edit | Redis CPU / edit |"
        )
        print("|---|---|---|---|---|---|")
        for path, rows in results.items():
            if not rows:
                continue
            walls = sorted(r[0] for r in rows)
            print(
                f"| {path} | {len(rows)} | {statistics.median(walls) * 1000:.1f} ms"
                f" | {walls[-1] * 1000:.1f} ms"
                f" | {statistics.mean(r[1] for r in rows) * 1000:.1f} ms"
                f" | {statistics.mean(r[2] for r in rows) * 1000:.1f} ms |"
            )
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        await op.aclose()
    finally:
        with_keys = [k async for k in admin.scan_iter(match=prefix + "*", count=1000)]
        if with_keys:
            await admin.unlink(*with_keys)
        await admin.aclose()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="1M", help="members of block:caller (100k, 1M, 10M)")
    ap.add_argument("--journal-edits", type=int, default=50)
    ap.add_argument("--reread-edits", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on every wait, s")
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main(ap.parse_args()))
