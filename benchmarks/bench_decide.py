"""Benchmark rules.engine.decide on a carrier-sized snapshot.

How this works: builds a Snapshot with N blocked callers (1 M by default),
100 k blocked prefixes, a 10,000-provider table (2% removed from the RMD),
k4 and n2 notices and NANPA data, then times ``decide()`` call by call with
``time.perf_counter_ns`` over a mix of 95% allowed, ~4% blocked and 1%
emergency calls. It prints the snapshot build time, median/p99 µs per
decision, resident memory, and, as the named peer measured in the same run,
the cost of one membership test in a plain ``set`` of E.164 strings (what a
naive in-memory blocklist costs). Runtime is bounded by --seconds.

    python3 benchmarks/bench_decide.py [--blocked 10000000] [--decisions N]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules.engine import decide  # noqa: E402
from rules.facts import CallFacts  # noqa: E402
from rules.numbers import nanp_invalid_reason  # noqa: E402
from rules.snapshot import Notice, NumberSet, PrefixSet, Provider, Snapshot  # noqa: E402

DAY = 86400.0


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def valid_nanp(rng: random.Random) -> int:
    while True:
        n = rng.randrange(12_000_000_000, 19_999_999_999)
        if nanp_invalid_reason(f"+{n}") is None:
            return n


def build(args: argparse.Namespace, rng: random.Random, now: float) -> tuple[Snapshot, list[int]]:
    blocked = [valid_nanp(rng) for _ in range(min(args.blocked, 200_000))]
    # The bulk of a large set is drawn without the validity loop (faster).
    blocked += [
        rng.randrange(12_000_000_000, 19_999_999_999) for _ in range(args.blocked - len(blocked))
    ]
    snap = Snapshot.empty()
    snap.block_caller = NumberSet.from_iterable(blocked)
    prefixes = PrefixSet()
    while len(prefixes) < args.prefixes:
        # Thousand blocks (+1 NPA NXX X) and a few whole exchanges (+1 NPA NXX).
        n = rng.randrange(2_000_000, 9_999_999)
        p = f"+1{n}" if rng.random() < 0.9 else f"+1{n // 10}"
        if p[2] in "01":
            continue
        prefixes.add(p)
    snap.block_prefix = prefixes
    for i in range(args.providers):
        status = "removed" if i % 50 == 0 else "listed"
        snap.set_provider(Provider(f"p{i}", f"Provider {i}", rmd_status=status, ocn=f"{i:04d}"))
    for i in range(1, 101):
        pid = f"p{i * 7}"
        snap.set_notice(
            Notice(f"k4-{i}", pid, "k4", now - 20 * DAY, now - 18 * DAY, now - 6 * DAY,
                   fcc_notified=now - 5 * DAY if i % 2 else None)
        )  # fmt: skip
        snap.set_notice(
            Notice(f"n2-{i}", f"p{i * 11}", "n2", now - DAY, now, now, campaigns=("+1346555",))
        )
    snap.allow_caller = NumberSet.from_iterable(blocked[:1000])
    snap.set_nanpa(
        {f"{n}" for n in range(201, 990) if nanp_invalid_reason(f"+1{n}5551234") is None}, None
    )
    return snap, blocked


def workload(
    args: argparse.Namespace, rng: random.Random, snap: Snapshot, blocked: list[int]
) -> list[CallFacts]:
    listed = [
        p for p, v in snap.providers.items() if v.rmd_status == "listed" and p not in snap.notices
    ]
    removed = [p for p, v in snap.providers.items() if v.rmd_status == "removed"]
    prefixes = list(snap.block_prefix)
    calls: list[CallFacts] = []
    for _ in range(args.decisions):
        r = rng.random()
        callee = f"+{valid_nanp(rng)}"
        provider = rng.choice(listed)
        if r < 0.95:
            caller = f"+{valid_nanp(rng)}"
        elif r < 0.965:
            caller = f"+{rng.choice(blocked)}"
        elif r < 0.98:
            p = rng.choice(prefixes)
            caller = (p + "0123456789")[:12]
        elif r < 0.99:
            caller, provider = f"+{valid_nanp(rng)}", rng.choice(removed)
        else:
            caller, callee = f"+{rng.choice(blocked)}", rng.choice(("911", "933"))
        calls.append(CallFacts(caller, callee, provider))
    return calls


def percentile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--blocked", type=int, default=1_000_000, help="blocked callers (default 1 M)")
    ap.add_argument(
        "--prefixes", type=int, default=100_000, help="blocked prefixes (default 100 k)"
    )
    ap.add_argument("--providers", type=int, default=10_000, help="provider table size")
    ap.add_argument("--decisions", type=int, default=200_000, help="timed decisions per pass")
    ap.add_argument("--passes", type=int, default=3, help="passes; the best one is reported")
    ap.add_argument("--seconds", type=float, default=50.0, help="stop timing after this long")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    now = 1_700_000_000.0
    deadline = time.monotonic() + args.seconds

    rss0 = rss_mib()
    t0 = time.perf_counter()
    snap, blocked = build(args, rng, now)
    build_s = time.perf_counter() - t0
    rss1 = rss_mib()
    calls = workload(args, rng, snap, blocked)

    clock = time.perf_counter_ns
    overhead = min(-clock() + clock() for _ in range(10_000))
    best: list[float] = []
    verdicts: dict[str, int] = {}
    for _ in range(args.passes):
        if time.monotonic() > deadline:
            break
        lat: list[float] = []
        for f in calls:
            t = clock()
            decide(snap, f, now)
            lat.append((clock() - t - overhead) / 1000)
        lat.sort()
        if not best or statistics.median(lat) < statistics.median(best):
            best = lat
    for f in calls:
        v = decide(snap, f, now)
        key = v.rule.label + ("" if not v.would_block else f"(would:{v.would_block.label})")
        verdicts[key] = verdicts.get(key, 0) + 1

    # Peer in the same run: membership in a plain set of E.164 strings.
    peer = {f"+{n}" for n in blocked[: min(len(blocked), 1_000_000)]}
    callers = [f.caller or "" for f in calls]
    peer_lat: list[float] = []
    for c in callers:
        t = clock()
        _ = c in peer
        peer_lat.append((clock() - t - overhead) / 1000)
    peer_lat.sort()

    ncallers = max(1, len(snap.block_caller))
    table = snap.block_caller.nbytes()
    med, p90, p99 = statistics.median(best), percentile(best, 0.9), percentile(best, 0.99)
    pm = statistics.median(peer_lat)
    notices = sum(map(len, snap.notices.values()))
    lines = [
        f"snapshot: {args.blocked:,} blocked callers, {len(snap.block_prefix):,} prefixes, "
        f"{len(snap.providers):,} providers, {notices} notices; {snap.entries():,} entries",
        f"build: {build_s:.1f} s; block_caller {table / 2**20:.1f} MiB "
        f"({table / ncallers:.1f} B/entry); RSS {rss0:.0f} -> {rss1:.0f} MiB "
        f"(max RSS now {rss_mib():.0f} MiB)",
        f"decide(): {len(best):,} decisions, median {med:.2f} µs, p90 {p90:.2f} µs, "
        f"p99 {p99:.2f} µs (timer overhead {overhead} ns subtracted)",
        "verdicts: " + ", ".join(f"{k}={v}" for k, v in sorted(verdicts.items())),
        f"peer: `str in set` of E.164 strings, median {pm:.2f} µs; "
        f"decide()/peer = {med / max(pm, 1e-3):.1f}x",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
