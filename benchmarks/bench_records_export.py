#!/usr/bin/env python3
"""How fast `sipscreen records export` answers a traceback request.

How this works: writes N decision records (default 1,000,000, about a day
of a busy carrier's blocks plus sampled allows) into the stream of a
scratch key prefix on the local Redis, spread over 24 hours, 5% of them
from one provider, then times the CLI for three queries: everything as CSV,
one provider as JSON, one caller as CSV. The records are written without
the indexes, so the filtered queries use `--scan` (the stream scan); the
indexed queries are bench_records_index.py. Keys are deleted at the end.

    python3 benchmarks/bench_records_export.py --records 1000000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()
    r = redis.Redis.from_url(a.redis)
    prefix = f"sipscreen-bench-records-{uuid.uuid4().hex[:8]}:"
    key = prefix + "records"
    n = a.records
    step_ms = max(1, 86_400_000 // n)
    base_ms = int(time.time() * 1000) - 86_400_000
    try:
        t = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            blocked = i % 20 == 0
            pipe.xadd(
                key,
                {
                    "ts": "2026-11-28T12:00:00.000Z",
                    "call_id": f"c{i}@127.0.0.2",
                    "source": "127.0.0.2",
                    "provider": "pz-illum" if blocked else "acme",
                    "ocn": "",
                    "caller": f"+1310555{i % 10_000:04d}",
                    "callee": "+12135550100",
                    "rule": "notice_k4" if blocked else "default",
                    "citation": "47 CFR 64.1200(k)(4)" if blocked else "operator policy",
                    "reason": "",
                    "action": "blocked" if blocked else "allowed",
                    "monitor": "0",
                    "snapshot_version": "v1",
                },
                id=f"{base_ms + i * step_ms}-{i}",
            )
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        print(f"wrote {n:,} records in {time.perf_counter() - t:.1f} s")
        queries = (
            ("everything, CSV", ["--format", "csv"]),
            ("one provider, JSON", ["--provider", "pz-illum", "--format", "json", "--scan"]),
            ("one caller, CSV", ["--caller", "+13105550042", "--format", "csv", "--scan"]),
        )
        for name, args in queries:
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "proxy", "--redis", a.redis, "--key-prefix", prefix]
                + ["records", "export", *args],
                cwd=ROOT,
                capture_output=True,
                check=True,
            )
            lines = out.stdout.count(b"\n")
            print(f"  {name:<20} {lines:>9,} lines in {time.perf_counter() - t:6.2f} s")
        return 0
    finally:
        r.delete(key)


if __name__ == "__main__":
    sys.exit(main())
