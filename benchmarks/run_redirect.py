#!/usr/bin/env python3
"""Redirect (query) mode, side by side: sipscreen --mode redirect vs Kamailio
answering the same 302/603 itself, and sipscreen's own inline full calls.

How this works: the same data, Redis blocklist, ports and step machinery as
run_compare.py (benchmarks/harness.py: gen_data, `redis_with_blocklist`,
`run_step`), three systems alternating at every rate of the ladder:

- ``sipscreen-redirect``: `python -m proxy run` with the benchmark TOML plus
  ``[proxy] mode = "redirect"``; SIPp UAC (benchmarks/sipp/uac_redirect.xml)
  INVITE -> 302 or 603 -> ACK; nothing is forwarded;
- ``kamailio-redirect``: Kamailio with benchmarks/kamailio/kamailio-redirect.cfg
  (the same htable blocklist lookup as the inline comparison, the same 302
  with Contact = Request-URI and verdict headers, or 603, from a tm server
  transaction), the same UAC scenario;
- ``sipscreen``: the inline proxy of run_compare.py, full calls
  (INVITE/200/ACK/BYE/200 through it to the SIPp UAS, 603 for the blocked).

A step is clean when every INVITE of ``-m`` got its answer and its ACK
(SIPp: all calls successful, none failed) at >= 90% of the rate. The UAC
scenario of the two redirect systems is swapped in through ``harness.SIPP_DIR``
(a per-run directory holding it as ``uac_screen.xml`` next to the usual UAS),
so the step, its statistics and its CPU accounting are run_compare's own.
Results go to benchmarks/RESULTS.md between the run_redirect markers, and the
line ``sipscreen redirect/kamailio max clean INVITE/s ratio: X.XX`` is printed.

    python3 benchmarks/run_redirect.py --rates 2000,4000,6000,8000,10000 --duration 15
    python3 benchmarks/run_redirect.py --rates 500 --duration 5 --ports auto   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_data  # noqa: E402
import harness  # noqa: E402
import run_compare  # noqa: E402

KAMAILIO_REDIRECT_CFG = harness.HERE / "kamailio" / "kamailio-redirect.cfg"
UAC_REDIRECT = harness.SIPP_DIR / "uac_redirect.xml"
BEGIN, END = "<!-- run_redirect:begin -->", "<!-- run_redirect:end -->"
REDIRECT = ("sipscreen-redirect", "kamailio-redirect")


class SipscreenRedirect(harness.Sipscreen):
    """sipscreen with ``[proxy] mode = "redirect"`` (its TOML otherwise the same)."""

    name = "sipscreen-redirect"

    def render(self, env: harness.Env) -> Path:
        cfg = super().render(env)
        text = cfg.read_text().replace("[proxy]\n", '[proxy]\nmode = "redirect"\n', 1)
        cfg.write_text(text)
        return cfg


class KamailioRedirect(harness.Kamailio):
    """Kamailio answering 302/603 itself (kamailio/kamailio-redirect.cfg)."""

    name = "kamailio-redirect"

    def render(self, env: harness.Env) -> Path:
        saved = harness.KAMAILIO_CFG
        harness.KAMAILIO_CFG = KAMAILIO_REDIRECT_CFG
        try:
            return super().render(env)
        finally:
            harness.KAMAILIO_CFG = saved


SYSTEMS: dict[str, type[harness.System]] = {
    "sipscreen-redirect": SipscreenRedirect,
    "kamailio-redirect": KamailioRedirect,
    "sipscreen": harness.Sipscreen,
}


@contextlib.contextmanager
def redirect_scenario(work: Path) -> Iterator[None]:
    """harness.run_step runs ``SIPP_DIR/uac_screen.xml``: point SIPP_DIR at a
    directory where that name is the redirect caller (the UAS unchanged)."""
    d = work / "sipp-redirect"
    d.mkdir(exist_ok=True)
    shutil.copy(UAC_REDIRECT, d / "uac_screen.xml")
    shutil.copy(harness.SIPP_DIR / "uas_rr.xml", d / "uas_rr.xml")
    saved = harness.SIPP_DIR
    harness.SIPP_DIR = d
    try:
        yield
    finally:
        harness.SIPP_DIR = saved


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = harness.ladder_args(
        "redirect mode: sipscreen vs Kamailio vs inline",
        "2000,4000,6000,8000,10000",
        "INVITE/s",
        "sipscreen-redirect,kamailio-redirect,sipscreen",
    )
    return ap.parse_args(argv)


def run_redirect_ladder(
    a: argparse.Namespace,
) -> tuple[list[harness.StepResult], dict[str, str], dict[str, int], dict[tuple[str, int], int]]:
    """The ladder: results, skipped systems, data counts, 302s per (system, rate)."""
    rates = [int(x) for x in a.rates.split(",") if x.strip()]
    wanted = [s.strip() for s in a.systems.split(",") if s.strip()]
    skipped: dict[str, str] = {}
    problems = harness.ensure_deps(install=a.install)
    harness.require_sipp(problems)
    if "kamailio-redirect" in wanted and harness.which_kamailio() is None:
        skipped["kamailio-redirect"] = "; ".join(problems)
    why = harness.sipscreen_available()
    for n in ("sipscreen-redirect", "sipscreen"):
        if why and n in wanted:
            skipped[n] = why
    systems = [SYSTEMS[n]() for n in wanted if n not in skipped]
    ports = harness.ladder_ports(a.ports)
    work, tmp = harness.ladder_workdir(a.workdir, "sipscreen-redirect-bench-")
    data = work / "data"
    counts = gen_data.generate(str(data), a.blocked, max(a.csv_lines, 100), a.blocked_pct, a.seed)
    sample = next(iter(gen_data.blocked_numbers(1, a.seed)))
    prefix = f"sipscreen-bench-{uuid.uuid4().hex[:8]}:"
    results: list[harness.StepResult] = []
    moved: dict[tuple[str, int], int] = {}
    try:
        with harness.ladder_env(a, work, data, ports, prefix, sample) as env:

            def step(s: harness.System, rate: int) -> harness.StepResult:
                print(f"[{rate}/s] {s.name} ...", end=" ", flush=True)
                tag = f"{s.name}-{rate}"
                if s.name in REDIRECT:
                    with redirect_scenario(work):
                        r = harness.run_step(s, env, rate, a.duration, tag)
                    moved[(s.name, rate)] = harness.read_answers(work / tag / "uac.log").get(302, 0)
                else:
                    r = harness.run_step(s, env, rate, a.duration, tag)
                n302 = moved.get((s.name, rate), "-")
                print(
                    f"achieved {r.achieved:.0f}/s ok={r.successful}/{r.attempted} "
                    f"failed={r.failed} retrans={r.retrans} 302={n302} "
                    f"603={r.declined} p50/p99={r.p50_ms}/{r.p99_ms} ms cpu={r.cpu_s} "
                    f"{'CLEAN' if r.clean else 'NOT CLEAN'} {r.note}",
                    flush=True,
                )
                return r

            results = harness.run_ladder(systems, rates, a.max_failing, step)
    finally:
        harness.kill_all()
        if tmp is not None:
            tmp.cleanup()
    return results, skipped, counts, moved


def redirect_ratio_line(results: Sequence[harness.StepResult]) -> str:
    s = harness.max_clean(results, "sipscreen-redirect")
    k = harness.max_clean(results, "kamailio-redirect")
    measured = {r.system for r in results}
    ok = k and {"sipscreen-redirect", "kamailio-redirect"} <= measured
    return (
        f"sipscreen redirect/kamailio max clean INVITE/s ratio: {f'{s / k:.2f}' if ok else 'n/a'}"
    )


def inline_ratio_line(results: Sequence[harness.StepResult]) -> str:
    s, i = harness.max_clean(results, "sipscreen-redirect"), harness.max_clean(results, "sipscreen")
    ratio = f"{s / i:.2f}" if i else "n/a"
    return f"sipscreen redirect INVITE/s / inline calls/s (max clean): {ratio}"


def render_redirect_report(
    a: argparse.Namespace,
    results: Sequence[harness.StepResult],
    skipped: dict[str, str],
    counts: dict[str, int],
    moved: dict[tuple[str, int], int],
    started: dt.datetime,
) -> str:
    names = list(dict.fromkeys(r.system for r in results))
    lines = [
        *harness.report_head(
            "## Redirect (query) mode: sipscreen vs Kamailio answering 302/603 (run_redirect.py)",
            "benchmarks/run_redirect.py",
            started,
            "run",
        ),
        *harness.machine_lines(),
        f"- rates: {a.rates} INVITE/s, {a.duration:g} s per step, systems alternating per "
        f"step; sipscreen `--workers {a.workers}`, Kamailio `children={a.workers}`",
        f"- blocklist: {counts['blocked']:,} numbers, "
        f"{100 * counts['blocked_calls'] / max(counts['calls'], 1):.1f}% blocked callers",
        harness.records_line(a.records_redis),
        "- redirect systems: INVITE -> 302 (Contact = Request-URI, X-Sipscreen-* verdict "
        "headers) or 603 -> ACK, nothing forwarded; a call counts once answered and ACKed. "
        "sipscreen: full inline calls through it to the SIPp UAS (INVITE/200/ACK/BYE/200).",
        "",
        harness.table(results),
        "302 answers per step: "
        + ", ".join(f"{n} {r}/s: {c}" for (n, r), c in sorted(moved.items())),
        "",
        "Summary (max clean rate = highest step with every INVITE answered and ACKed, 0 "
        "failed, and ≥ 90% of the rate carried):",
        "",
        *[f"- {n}: {harness.max_clean(results, n)}/s" for n in names],
        f"- {redirect_ratio_line(results)}",
        f"- {inline_ratio_line(results)}",
        "",
    ]
    lines += [f"- {n}: skipped: {why}" for n, why in skipped.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    harness.install_signal_handlers()
    a = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    results, skipped, counts, moved = run_redirect_ladder(a)
    report = render_redirect_report(a, results, skipped, counts, moved, started)
    run_compare.write_section(Path(a.out), report, BEGIN, END)
    for n, why in skipped.items():
        print(f"skipped {n}: {why}")
    print(f"wrote {a.out}")
    print(inline_ratio_line(results))
    print(redirect_ratio_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
