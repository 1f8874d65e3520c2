#!/usr/bin/env python3
"""How fast the decision-record indexes answer evidence queries at 1 M records.

How this works: loads N decision records (default 1,000,000) into a scratch
key prefix on the local Redis, spread evenly over the last 30 days (the
retention), in the layout proxy/records/ writes: the `records` stream with
explicit stream IDs at those times, and each record's stream ID in its index
sorted sets (`records.index_keys`: callee, caller, provider-day), scored by
the ID's ms (the records' own writer cannot back-date IDs). The mix: 20
providers (one, `pz`, sends 5%), 100,000 callers (one robocaller sends 1%),
50,000 callees (one subscriber receives 0.2%), 90% rejected, 5% would-block,
5% sampled allows. It then times, in process (`proxy.records.export`, median
of `--runs`) and through the CLI (`sipscreen records export`, one run,
Python start-up included):

* every blocked call to the subscriber in the last 28 days (`--callee
  --action reject --since`),
* every decision for the robocaller, and for an ordinary caller (`--caller`),
* everything from `pz` on one day (`--provider --day`), and the same by a
  scan of that day's stream range (`--scan`), as the export did before.

It also times the real `RecordWriter` writing `--write` records (XADDs,
then the index ZADD/ZREMRANGEBYSCORE/PEXPIRE), and reports Redis memory per record. Every key
of the prefix is deleted at the end (also on error).

    python3 benchmarks/bench_records_index.py --records 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hiredis
import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from proxy.records import FIELDS, RecordWriter, export, index_keys, iso_ms  # noqa: E402

DAY_MS = 86_400_000
SUBSCRIBER = "+12135550100"
ROBOCALLER = "+13105550042"
ORDINARY = "+14152000007"


def record(i: int, rng: random.Random, ts: float) -> dict[str, str]:
    u = rng.random()
    action = "reject" if u < 0.90 else "would_block" if u < 0.95 else "allow"
    provider = "pz" if rng.random() < 0.05 else f"prov{rng.randrange(19):02d}"
    caller = ROBOCALLER if rng.random() < 0.01 else f"+1415{rng.randrange(2_000_000, 2_100_000)}"
    callee = SUBSCRIBER if rng.random() < 0.002 else f"+1213{rng.randrange(3_000_000, 3_050_000)}"
    return {
        "ts": iso_ms(ts),
        "call_id": f"{uuid.UUID(int=rng.getrandbits(128))}@198.51.100.7",
        "source": "198.51.100.7:5060",
        "transport": "udp",
        "provider": provider,
        "ocn": "",
        "caller": caller,
        "callee": callee,
        "caller_raw": caller,
        "callee_raw": callee[2:],
        "caller_private": "0",
        "pai": f"<sip:{caller}@198.51.100.7;user=phone>",
        "from": f"<sip:{caller}@198.51.100.7>;tag={i:x}",
        "identity": "",
        "rule": "caller_block" if action != "allow" else "default",
        "citation": "operator policy",
        "reason": "caller is on the operator's caller blocklist",
        "detail": "",
        "action": action,
        "monitor": "0",
        "status": "603" if action == "reject" else "",
        "snapshot_version": "1796550000-1",
    }


def load(host: str, port: int, prefix: str, n: int, now_ms: int) -> float:
    """Write the records and their index entries as raw commands (packed by
    hiredis, CLIENT REPLY OFF, one PING per 5,000 records to keep in step)."""
    rng = random.Random(7)
    key = prefix + "records"
    start = now_ms - 30 * DAY_MS
    step = 30 * DAY_MS / n
    t = time.perf_counter()
    reader = hiredis.Reader()
    with socket.create_connection((host, port)) as sock:
        out = [hiredis.pack_command(("CLIENT", "REPLY", "OFF"))]
        for i in range(n):
            ms = int(start + i * step)
            rec = record(i, rng, ms / 1000)
            sid = f"{ms}-{i}"
            args: list[str | int] = ["XADD", key, sid]
            for k in FIELDS:
                args += (k, rec[k])
            out.append(hiredis.pack_command(tuple(args)))
            day = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")
            for k in index_keys(prefix, rec, day):
                out.append(hiredis.pack_command(("ZADD", k, ms, sid)))
            if i % 5_000 == 4_999 or i == n - 1:
                out.append(hiredis.pack_command(("CLIENT", "REPLY", "ON")))
                out.append(hiredis.pack_command(("PING",)))
                sock.sendall(b"".join(out))
                got: list[object] = []
                while len(got) < 2:
                    reply = reader.gets()
                    if reply is False:
                        reader.feed(sock.recv(65536))
                    else:
                        got.append(reply)
                if any(isinstance(x, Exception) for x in got):
                    raise RuntimeError(f"load failed: {got}")
                out = [hiredis.pack_command(("CLIENT", "REPLY", "OFF"))]
    return time.perf_counter() - t


async def timed(prefix: str, runs: int, **kw: object) -> tuple[float, int]:
    times = []
    lines = 0
    for _ in range(runs):
        r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
        t = time.perf_counter()
        lines = 0
        async for _line in export(r, prefix, **kw):  # type: ignore[arg-type]
            lines += 1
        times.append(time.perf_counter() - t)
        await r.aclose()
    return statistics.median(times), lines


def cli(redis_url: str, prefix: str, args: list[str]) -> tuple[float, int]:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--redis", redis_url, "--key-prefix", prefix]
        + ["records", "export", *args],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - t, out.stdout.count(b"\n")


async def write_path(prefix: str, n: int) -> tuple[float, float]:
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    w = RecordWriter(r, prefix, 0, 30 * 86400, queue_max=n + 1, queue_max_bytes=1 << 40)
    rng = random.Random(9)
    for i in range(n):
        w.append(record(i, rng, time.time()))
    t = time.perf_counter()
    c = time.process_time()
    await w.flush()
    cpu = time.process_time() - c
    dt_s = time.perf_counter() - t
    await r.aclose()
    return dt_s, cpu


def delete_prefix(r: redis.Redis, prefix: str) -> None:
    batch = []
    for k in r.scan_iter(match=prefix + "*", count=5000):
        batch.append(k)
        if len(batch) >= 5000:
            r.unlink(*batch)
            batch = []
    if batch:
        r.unlink(*batch)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", type=int, default=50_000, help="records through RecordWriter")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    a = ap.parse_args()
    r = redis.Redis.from_url(a.redis)
    prefix = f"sipscreen-bench-records-{uuid.uuid4().hex[:8]}:"
    now_ms = int(time.time() * 1000)
    try:
        mem0 = int(r.info("memory")["used_memory"])
        conn = r.connection_pool.connection_kwargs
        took = load(
            conn.get("host", "127.0.0.1"), conn.get("port", 6379), prefix, a.records, now_ms
        )
        mem1 = int(r.info("memory")["used_memory"])
        nkeys = sum(1 for _ in r.scan_iter(match=prefix + "records:ix:*", count=10_000))
        print(
            f"loaded {a.records:,} records in {took:.1f} s; Redis memory "
            f"+{(mem1 - mem0) / 2**20:.0f} MiB ({(mem1 - mem0) / a.records:.0f} B/record, "
            f"stream + {nkeys:,} index keys)"
        )
        day_ms = now_ms - 10 * DAY_MS
        day = dt.datetime.fromtimestamp(day_ms / 1000, dt.UTC).strftime("%Y-%m-%d")
        d0 = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()
        since28 = now_ms / 1000 - 28 * 86400
        since28_s = dt.datetime.fromtimestamp(since28, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        queries: list[tuple[str, dict[str, object], list[str]]] = [
            (
                "callee, blocked, 28 days",
                {"callee": SUBSCRIBER, "actions": ["reject"], "since": since28},
                ["--callee", SUBSCRIBER, "--action", "reject", "--since", since28_s],
            ),
            ("caller (robocaller)", {"caller": ROBOCALLER}, ["--caller", ROBOCALLER]),
            ("caller (ordinary)", {"caller": ORDINARY}, ["--caller", ORDINARY]),
            (
                "provider, one day",
                {"provider": "pz", "since": d0, "until": d0 + 86399.999},
                ["--provider", "pz", "--day", day],
            ),
            (
                "provider, one day, scan",
                {"provider": "pz", "since": d0, "until": d0 + 86399.999, "scan": True},
                ["--provider", "pz", "--day", day, "--scan"],
            ),
        ]
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'query':<26} {'rows':>7} {'in process':>11} {'CLI':>8}")
        for name, kw, args in queries:
            for fmt in ("csv", "json"):
                t_in, lines = asyncio.run(timed(prefix, a.runs, fmt=fmt, **kw))
                t_cli, _ = cli(a.redis, prefix, [*args, "--format", fmt])
                rows = lines - (1 if fmt == "csv" else 0)
                print(f"{name + ', ' + fmt:<26} {rows:>7,} {t_in:>9.3f} s {t_cli:>6.2f} s")
        if a.write:
            w, cpu = asyncio.run(write_path(prefix + "w:", a.write))
            print(
                f"RecordWriter: {a.write:,} records in {w:.2f} s "
                f"({a.write / w:,.0f} records/s, batches of 1,000; "
                f"writer CPU {cpu / a.write * 1e6:.0f} us/record)"
            )
        return 0
    finally:
        delete_prefix(r, prefix)


if __name__ == "__main__":
    sys.exit(main())
