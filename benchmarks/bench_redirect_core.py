#!/usr/bin/env python3
"""The redirect core's CPU per answered INVITE, in process (no sockets, no SIPp).

How this works: a real Redis (``--redis-url``, default 127.0.0.1:6379) gets a
caller blocklist under a fresh key prefix; a ``SnapshotStore`` loads it once,
and the worker's own pieces are built as ``proxy/server/worker.py`` builds
them: ``Screener`` (real metrics, a ``RecordWriter`` whose queue is only
appended to), ``make_core`` for ``mode = "redirect"``, worker 0 of 2. Then,
per call, what SIPp's ``uac_screen.xml`` sends: an INVITE (its branch chosen so
worker 0 owns it, as the kernel's steering delivers it), the answer taken
from ``datagrams_to_send``, the ACK naming the answer's To tag, and the
transaction timers run as the clock moves on (1 ms per call, so timer I ends
each transaction 5 s later). ``--blocked-pct`` of the callers are on the
blocklist (603), the rest get the 302.

Prints the median of ``--rounds`` rounds of ``--calls`` calls, in µs of CPU
per call (INVITE + ACK + timers): the part of the per-INVITE cost that is
the worker's Python, without the system calls. Compare runs of two trees
on the same machine, not absolute figures. Not a test: it never gates CI.

    python3 benchmarks/bench_redirect_core.py --calls 20000 --rounds 7

With ``--callgrind`` the same calls are instead counted in instructions under
Valgrind's callgrind, stable on a noisy machine: the script reruns itself with
``--calls N`` and ``2N`` (one round each, the same seeds, PYTHONHASHSEED=0)
and prints the difference per call, start-up and the Redis load cancelled.

    python3 benchmarks/bench_redirect_core.py --callgrind --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from harness import callgrind_instructions  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from proxy.config import load_config  # noqa: E402
from proxy.metrics import Metrics  # noqa: E402
from proxy.records.writer import RecordWriter  # noqa: E402
from proxy.redirect import make_core  # noqa: E402
from proxy.screen import Screener  # noqa: E402
from proxy.server.worker import _make_core_config  # noqa: E402
from proxy.sip.steer import key_owner  # noqa: E402
from proxy.store.snapshot_store import SnapshotStore  # noqa: E402

UAC = ("127.0.0.1", 5090)

INVITE = (
    "INVITE sip:{callee}@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch={branch}\r\n"
    "From: <sip:{caller}@127.0.0.1:5090>;tag={n}SIPpTag00{n}\r\n"
    "To: <sip:{callee}@127.0.0.1:5070>\r\n"
    "Call-ID: {n}-1234@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:{caller}@127.0.0.1:5090>\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: Screening Test\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {blen}\r\n\r\n{body}"
)
BODY = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
ACK = (
    "ACK sip:{callee}@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch={branch}\r\n"
    "From: <sip:{caller}@127.0.0.1:5090>;tag={n}SIPpTag00{n}\r\n"
    "{to}\r\n"
    "Call-ID: {n}-1234@127.0.0.1\r\n"
    "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


def _number(rng: random.Random) -> str:
    return f"+1{rng.randint(201, 989)}{rng.randint(200, 999):03d}{rng.randint(0, 9999):04d}"


def _messages(n: int, blocked: list[str], pct: float, seed: int) -> list[tuple[bytes, str]]:
    """``n`` INVITEs owned by worker 0 of 2, with their ACK's template."""
    rng = random.Random(seed)
    out: list[tuple[bytes, str]] = []
    i = 0
    while len(out) < n:
        i += 1
        branch = f"z9hG4bK-{seed}-{i}-0"
        if key_owner((branch + "|127.0.0.1:5090").encode(), 2) != 0:
            continue
        caller = rng.choice(blocked) if rng.random() * 100 < pct else _number(rng)
        callee = _number(rng)
        f = {"branch": branch, "caller": caller, "callee": callee, "n": i}
        inv = INVITE.format(body=BODY, blen=len(BODY), **f).encode()
        out.append((inv, ACK.format(to="{to}", **f)))
    return out


def _to_header(answer: bytes) -> str:
    for line in answer.split(b"\r\n"):
        if line[:3].lower() == b"to:":
            return line.decode()
    raise SystemExit("no To header in the answer")


async def _build(redis_url: str, prefix: str, n_blocked: int, tmp: Path) -> tuple[object, object]:
    p = tmp / "bench.toml"
    p.write_text(
        '[proxy]\nmode = "redirect"\nworkers = 2\nlog_level = "WARNING"\n'
        'no_snapshot_policy = "closed"\nsample_data = ""\n'
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{prefix}"\nembedded = false\n'
        '[answer.deterministic]\nkind = "603"\n[answer.analytics]\nkind = "603"\n'
    )
    cfg = load_config(str(p), {})
    store = SnapshotStore(redis_url, prefix, emergency=cfg.emergency_numbers)
    await store.load_full()
    metrics = Metrics(CollectorRegistry())
    records = RecordWriter(None, prefix, 1000, 3600)  # type: ignore[arg-type]
    screener = Screener(cfg, store, metrics, records)
    cc = _make_core_config(cfg, "127.0.0.1", 5070, 0, [("127.0.0.1", 1), ("127.0.0.1", 2)], b"k")
    return make_core(cfg, cc, screener, metrics), records


def _round(core, records, msgs, now: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    recv = core.datagram_received
    send = core.datagrams_to_send
    timer = core.get_timer
    fire = core.handle_timer
    t0 = time.process_time()
    for inv, ack in msgs:
        now += 0.001
        recv(inv, UAC, "udp", now)
        ((answer, _dest, _t),) = send()
        recv(ack.format(to=_to_header(answer)).encode(), UAC, "udp", now)
        at = timer()
        if at is not None and at <= now:
            fire(now)
            send()
    t1 = time.process_time()
    q = getattr(records, "_queue", None)
    if q is not None:
        q.clear()
        records.bytes = 0
    return t1 - t0, now


def _instructions(calls: int, blocked: int, pct: float, redis_url: str) -> int:
    """Instructions callgrind counts for one run of this script (one round of ``calls``)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--calls", str(calls), "--rounds", "0"]
    argv += ["--blocked", str(blocked), "--blocked-pct", str(pct), "--redis-url", redis_url]
    return callgrind_instructions(argv, dict(os.environ, PYTHONHASHSEED="0"))


def _callgrind(args: argparse.Namespace) -> int:
    n = args.calls
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.map(
            lambda c: _instructions(c, args.blocked, args.blocked_pct, args.redis_url), (n, 2 * n)
        )
    print(
        f"redirect core, callgrind: {(b - a) / n:.0f} instructions per call "
        f"(INVITE + ACK + timers; {n} vs {2 * n} calls)"
    )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--blocked", type=int, default=10000, help="blocklist size")
    ap.add_argument("--blocked-pct", type=float, default=5.0)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--callgrind", action="store_true", help="count instructions per call")
    args = ap.parse_args()
    if args.callgrind:
        return _callgrind(args)
    prefix = f"sipscreen-bench-core-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(args.redis_url)
    rng = random.Random(7)
    blocked = [_number(rng) for _ in range(args.blocked)]
    try:
        for i in range(0, len(blocked), 5000):
            r.sadd(prefix + "block:caller", *blocked[i : i + 5000])
        with tempfile.TemporaryDirectory() as tmp:
            core, records = asyncio.run(_build(args.redis_url, prefix, args.blocked, Path(tmp)))
        now = 1000.0
        per_call = []
        for k in range(args.rounds + 1):
            msgs = _messages(args.calls, blocked, args.blocked_pct, seed=k)
            cpu, now = _round(core, records, msgs, now)
            if k:  # the first round warms up
                per_call.append(cpu / args.calls * 1e6)
        if not per_call:  # --rounds 0: the one round ran (the callgrind runs)
            return 0
        # the ACK's To line is rebuilt from the answer in the loop: measured apart
        t0 = time.process_time()
        for inv, ack in msgs:
            ack.format(to=_to_header(inv)).encode()
        fmt = (time.process_time() - t0) / len(msgs) * 1e6
        med = statistics.median(per_call)
        print(
            f"redirect core, in process: {med:.2f} µs CPU per call "
            f"(INVITE + ACK + timers; median of {args.rounds} rounds of {args.calls}; "
            f"rounds {min(per_call):.2f}-{max(per_call):.2f}; the loop's own ACK "
            f"building ~{fmt:.2f} µs included); "
            f"{len(core.transactions)} transactions live"
        )
    finally:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
