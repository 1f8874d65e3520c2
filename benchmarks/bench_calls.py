#!/usr/bin/env python3
"""sipscreen alone: rising call rate with 1 and 2 workers.

How this works: the same steps as run_compare.py (benchmarks/harness.py:
SIPp UAC -> ``python -m proxy run`` -> SIPp UAS on 127.0.0.1, ~5% of callers
on a 100 k blocklist answered 603, the proxy restarted for every step), for
each worker count in turn, rates rising until two steps in a row are not
clean. Prints the table and, per worker count, the highest clean rate and
its INVITE -> final response p50/p99 (SIPp ms ticks).

    python3 benchmarks/bench_calls.py --rates 500,1000,2000,4000 --duration 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_data  # noqa: E402
import harness  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    harness.install_signal_handlers()
    ap = argparse.ArgumentParser(description="sipscreen rising-rate run, 1 and 2 workers")
    ap.add_argument("--rates", default="500,1000,2000,4000,6000,8000,12000")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--workers", default="1,2", help="worker counts to measure")
    ap.add_argument("--blocked", type=int, default=100_000)
    ap.add_argument("--blocked-pct", type=float, default=5.0)
    ap.add_argument("--max-failing", type=int, default=2)
    ap.add_argument("--redis-url", default=None)
    ap.add_argument("--ports", default="auto", help="proxy,uas,uac or 'auto'")
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    ap.add_argument("--seed", type=int, default=20240601)
    harness.add_install_flag(ap)
    a = ap.parse_args(argv)

    why = harness.sipscreen_available()
    if why:
        print(f"sipscreen not runnable: {why}")
        return 2
    harness.require_sipp(harness.ensure_deps(install=a.install))
    rates = [int(x) for x in a.rates.split(",")]
    ports = (
        harness.Ports.ephemeral()
        if a.ports == "auto"
        else harness.Ports(*[int(p) for p in a.ports.split(",")])
    )
    ports.check_free()
    results: list[harness.StepResult] = []
    with tempfile.TemporaryDirectory(prefix="sipscreen-bench-calls-") as tmp:
        work = Path(tmp)
        data = work / "data"
        gen_data.generate(
            str(data), a.blocked, max(200_000, int(max(rates) * a.duration)), a.blocked_pct, a.seed
        )
        sample = next(iter(gen_data.blocked_numbers(1, a.seed)))
        prefix = f"sipscreen-bench-{uuid.uuid4().hex[:8]}:"
        with harness.redis_with_blocklist(work, data, a.redis_url, prefix) as url:
            for workers in [int(w) for w in a.workers.split(",")]:
                env = harness.Env(work, data, ports, workers, url, prefix, sample, a.blocked)
                system = harness.Sipscreen()
                failing = 0
                for rate in rates:
                    r = harness.run_step(system, env, rate, a.duration, f"w{workers}-{rate}")
                    r.system = f"sipscreen ×{workers}"
                    results.append(r)
                    print(harness.table([r]).splitlines()[-1], flush=True)
                    failing = 0 if r.clean else failing + 1
                    if failing >= a.max_failing:
                        break
    text = harness.table(results)
    print(text)
    for name in dict.fromkeys(r.system for r in results):
        best = harness.max_clean(results, name)
        top = next((x for x in results if x.system == name and x.rate == best), None)
        lat = ""
        if top is not None and top.p50_ms is not None and top.p99_ms is not None:
            lat = f"p50 {top.p50_ms:g} ms / p99 {top.p99_ms:g} ms"
        print(f"{name}: highest clean rate {best} calls/s {lat}")
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
