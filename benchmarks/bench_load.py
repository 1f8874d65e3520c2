"""Full snapshot load from Redis and decision latency at 100 k, 1 M and 10 M blocked callers.

How this works: for each size N the parent process writes N blocked callers
(`+1NPANXXXXXX`, a fixed permutation so the numbers look random) to
`<scratch prefix>block:caller` on the Redis at 127.0.0.1:6379 through
`redis-cli --pipe` (SADD, 10 k members a command), then starts a *fresh*
Python process that

* times `SnapshotStore.load_full()` (wall clock, its own CPU time, and the
  server time Redis spent in SSCAN/SCARD, from INFO commandstats),
* reads VmRSS / VmHWM from /proc/self/status before and after the load,
* runs `rules.engine.decide` on 200 k calls (5 % from blocked callers, the
  others valid NANP numbers that go down the whole allow path), timing each
  call with `perf_counter_ns` for p50/p99/p99.9, and once more untimed for
  the throughput,

and prints one JSON line; the parent prints a table. The scratch keys are
deleted after each size, also on error or Ctrl-C. Every step is bounded: the
child is killed after --timeout seconds.

Run: python3 benchmarks/bench_load.py --sizes 100k,1M,10M
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

URL = "redis://127.0.0.1:6379/0"
HOST, PORT = "127.0.0.1", 6379

# Blocked caller i is BASE + (i * STRIDE) % SPAN: +1 200 000 0000 .. +1 999 999 9999.
# STRIDE is prime and shares no factor with SPAN (2^10 * 5^9 * 5^...), so the
# map is a permutation: indexes [0, N) are the blocklist, [N, 2N) are not on it.
BASE = 12_000_000_000
SPAN = 8_000_000_000
STRIDE = 2_654_435_761
CHUNK = 10_000


def number(i: int) -> int:
    return BASE + (i * STRIDE) % SPAN


def parse_size(s: str) -> int:
    s = s.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s.rstrip("km")) * mult)


def resp_chunks(key: bytes, n: int) -> Iterator[bytes]:
    """RESP `SADD key m1 .. m10000` commands for members 0..n-1."""
    head_key = b"$%d\r\n%s\r\n" % (len(key), key)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        members = [b"+%d" % number(i) for i in range(start, stop)]
        parts = [b"*%d\r\n$4\r\nSADD\r\n" % (len(members) + 2), head_key]
        parts.extend(b"$%d\r\n%s\r\n" % (len(m), m) for m in members)
        yield b"".join(parts)


def seed(key: str, n: int, timeout: float) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["redis-cli", "-h", HOST, "-p", str(PORT), "--pipe"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdin is not None
    try:
        for chunk in resp_chunks(key.encode(), n):
            proc.stdin.write(chunk)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"seeding {n} entries took more than {timeout}s")
        out, _ = proc.communicate(timeout=timeout)  # closes stdin: end of input
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or b"errors: 0" not in out:
        raise RuntimeError(f"redis-cli --pipe failed: {out.decode(errors='replace')[-300:]}")
    return time.perf_counter() - t0


def cleanup(prefix: str) -> None:
    import redis

    r = redis.Redis(host=HOST, port=PORT)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        for i in range(0, len(keys), 1000):
            r.unlink(*keys[i : i + 1000])  # UNLINK frees the 10 M set in the background
    finally:
        r.close()


# -- child: one measurement in a fresh process ---------------------------------


def _status() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _redis_usec(r: Any) -> int:
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("sscan", "scard"))


def child(prefix: str, n: int, calls: int, blocked_pct: float) -> dict[str, Any]:
    import asyncio
    import gc
    import logging

    import redis

    import proxy.store.snapshot_store as store_mod
    from rules.engine import decide
    from rules.facts import CallFacts
    from rules.numbers import nanp_invalid_reason
    from rules.verdict import Rule

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="    %(asctime)s %(name)s %(message)s"
    )
    base = _status()
    store = store_mod.SnapshotStore(URL, prefix, emergency=frozenset({"911", "933"}))
    probe = redis.Redis(host=HOST, port=PORT)
    usec0 = _redis_usec(probe)
    t0, c0 = time.perf_counter(), time.process_time()
    snap = asyncio.run(store.load_full())
    load_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    redis_s = (_redis_usec(probe) - usec0) / 1e6
    probe.close()
    gc.collect()
    after = _status()
    if len(snap.block_caller) != n:
        raise SystemExit(f"loaded {len(snap.block_caller)} callers, expected {n}")

    # The calls: blocked_pct % blocked callers, the rest valid NANP numbers
    # not on the list (numbers with index >= n), all to an ordinary callee.
    rnd = random.Random(7)
    facts: list[CallFacts] = []
    expect_blocked = 0
    j = n
    for _ in range(calls):
        if rnd.random() * 100 < blocked_pct:
            caller = f"+{number(rnd.randrange(n))}"
            expect_blocked += 1
        else:
            while True:
                caller = f"+{number(j)}"
                j += 1
                if nanp_invalid_reason(caller) is None:
                    break
        facts.append(CallFacts(caller, "+13035550100", "carrier-a", "192.0.2.10", "c"))
    now = time.time()
    for f in facts[:20_000]:  # warm-up
        decide(snap, f, now)
    clock = time.perf_counter_ns
    lat: list[int] = []
    got_blocked = 0
    for f in facts:
        t = clock()
        v = decide(snap, f, now)
        lat.append(clock() - t)
        if v.rule is Rule.CALLER_BLOCK:
            got_blocked += 1
    if got_blocked != expect_blocked:
        raise SystemExit(
            f"{got_blocked} calls blocked by the caller list, {expect_blocked} expected"
        )
    empty: list[int] = []
    for _ in range(100_000):
        t = clock()
        empty.append(clock() - t)
    t0 = time.perf_counter()
    for f in facts:
        decide(snap, f, now)
    rate = len(facts) / (time.perf_counter() - t0)
    lat.sort()
    empty.sort()

    def pct(xs: list[int], p: float) -> float:
        return xs[min(len(xs) - 1, int(len(xs) * p))] / 1000.0

    return {
        "n": n,
        "load_s": load_s,
        "cpu_s": cpu_s,
        "redis_s": redis_s,
        "rss_base": base["VmRSS"],
        "rss": after["VmRSS"],
        "hwm": after["VmHWM"],
        "table_bytes": snap.block_caller.nbytes(),
        "p50_us": pct(lat, 0.50),
        "p99_us": pct(lat, 0.99),
        "p999_us": pct(lat, 0.999),
        "max_us": lat[-1] / 1000.0,
        "timer_us": pct(empty, 0.50),
        "calls_per_s": rate,
        "blocked": got_blocked,
        "calls": len(facts),
    }


# -- parent ----------------------------------------------------------------------


def run_child(prefix: str, n: int, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", prefix, "--size", str(n)]
    cmd += ["--calls", str(a.calls), "--blocked-pct", str(a.blocked_pct)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, timeout=a.timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child for {n} exited {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def table(rows: list[dict[str, Any]]) -> str:
    mib = 1 << 20
    head = (
        f"{'callers':>10} {'load s':>7} {'cpu s':>6} {'redis s':>7} "
        f"{'RSS MiB':>8} {'HWM MiB':>8} {'+RSS MiB':>8} {'B/entry':>7} "
        f"{'p50 µs':>7} {'p99 µs':>7} {'p99.9':>7} {'calls/s':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        grow = r["rss"] - r["rss_base"]
        lines.append(
            f"{r['n']:>10,} {r['load_s']:>7.2f} {r['cpu_s']:>6.2f} "
            f"{r['redis_s']:>7.2f} {r['rss'] / mib:>8.0f} {r['hwm'] / mib:>8.0f} "
            f"{grow / mib:>8.0f} {grow / r['n']:>7.1f} {r['p50_us']:>7.2f} "
            f"{r['p99_us']:>7.2f} {r['p999_us']:>7.2f} {r['calls_per_s']:>9,.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1M", help="comma separated, e.g. 100k,1M,10M")
    ap.add_argument("--calls", type=int, default=200_000, help="decisions timed per size")
    ap.add_argument("--blocked-pct", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=600.0, help="per child process, seconds")
    ap.add_argument("--child", metavar="PREFIX", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.size, a.calls, a.blocked_pct)), flush=True)
        return

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # so the finally below deletes the keys

    signal.signal(signal.SIGTERM, on_term)
    rows: list[dict[str, Any]] = []
    for n in (parse_size(s) for s in a.sizes.split(",")):
        prefix = f"sipscreen-bench-load-{uuid.uuid4().hex}:"
        try:
            secs = seed(prefix + "block:caller", n, a.timeout)
            print(f"seeded {n:,} blocked callers in {secs:.1f}s", flush=True)
            row = run_child(prefix, n, a)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
        finally:
            cleanup(prefix)
    print()
    print(table(rows))
    print(
        "load s: wall time of load_full; cpu s: its CPU time; redis s: time Redis spent in "
        "SSCAN/SCARD (INFO commandstats, whole server); +RSS: resident growth over the "
        "process before the load; latency includes the perf_counter_ns pair "
        f"(~{rows[0]['timer_us'] if rows else 0:.2f} µs)."
    )


if __name__ == "__main__":
    main()
