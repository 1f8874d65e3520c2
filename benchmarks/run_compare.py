#!/usr/bin/env python3
"""sipscreen vs Kamailio vs SIPp direct, side by side, in one command.

How this works: check sipp and kamailio (with --install, apt-get them),
generate the seeded data (benchmarks/gen_data.py: valid NANP numbers, E.164
From users, ~5% blocked), load the blocklist into a throw-away Redis for
sipscreen, then climb the rate ladder. At EACH rate the three systems run in
turn (alternating, so drift of the machine hits all of them alike):
SIPp UAC -> sipscreen -> SIPp UAS, SIPp UAC -> Kamailio -> SIPp UAS, and
SIPp UAC -> SIPp UAS directly (the ceiling of the load generator). A
system's ladder stops after two failing (not clean) steps. Results go to a
Markdown table (benchmarks/RESULTS.md by default) and the line
``sipscreen/kamailio max clean CPS ratio: X.XX`` is printed.

    python3 benchmarks/run_compare.py                 # the full comparison
    python3 benchmarks/run_compare.py --rates 500,1000 --duration 5
    python3 benchmarks/run_compare.py --signed        # STIR/SHAKEN: see benchmarks/signed.py

``--signed``: every INVITE carries a valid, distinct Identity header; sipscreen
(``[shaken]`` on) and Kamailio (``secsipid_check_identity``) verify it, same
run, alternating; the line ``sipscreen/kamailio signed max clean CPS ratio:
X.XX`` is printed and written to its own section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_data  # noqa: E402
import harness  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = harness.ladder_args(
        "sipscreen vs Kamailio vs SIPp direct",
        "500,1000,2000,4000,6000,8000",
        "calls/s",
        "sipscreen,kamailio,direct",
    )
    ap.add_argument(
        "--transport",
        choices=("udp", "tls"),
        default="udp",
        help="the callers' side: udp (SIPp) or tls (benchmarks/tls_uac.py; softswitch over UDP)",
    )
    ap.add_argument(
        "--signed",
        action="store_true",
        help="STIR/SHAKEN: every INVITE signed, verified by sipscreen and Kamailio secsipid",
    )
    ap.add_argument(
        "--secsipid-cert-verify",
        type=int,
        default=21,
        help="--signed: libsecsipid CertVerify bits (21 = dates + chain to the anchor + CRL, "
        "the work sipscreen does; 0 = no certificate check, signature and iat only)",
    )
    return ap.parse_args(argv)


def compare(a: argparse.Namespace) -> tuple[list[harness.StepResult], dict[str, str], str]:
    """Run the ladder; returns results, skipped systems with reasons, the report."""
    rates = [int(x) for x in a.rates.split(",") if x.strip()]
    wanted = [s.strip() for s in a.systems.split(",") if s.strip()]
    tls = getattr(a, "transport", "udp") == "tls"
    if tls:
        wanted = [w for w in wanted if w != "direct"]  # no TLS UAS to call directly
    skipped: dict[str, str] = {}
    problems = harness.ensure_deps(install=a.install)
    harness.require_sipp(problems)
    if "kamailio" in wanted and harness.which_kamailio() is None:
        skipped["kamailio"] = "; ".join(problems)
    elif tls and "kamailio" in wanted:
        why_tls = harness.kamailio_tls(install=a.install)
        if why_tls:
            skipped["kamailio"] = why_tls
    if "sipscreen" in wanted:
        why = harness.sipscreen_available()
        if why:
            skipped["sipscreen"] = why
    systems = [harness.SYSTEMS[n]() for n in wanted if n not in skipped]

    ports = harness.ladder_ports(a.ports)
    work, tmp = harness.ladder_workdir(a.workdir, "sipscreen-bench-")
    data = work / "data"
    calls = max(a.csv_lines, 100)
    counts = gen_data.generate(str(data), a.blocked, calls, a.blocked_pct, a.seed)
    sample = next(iter(gen_data.blocked_numbers(1, a.seed)))
    prefix = f"sipscreen-bench-{uuid.uuid4().hex[:8]}:"
    started = dt.datetime.now(dt.UTC)
    results: list[harness.StepResult] = []
    try:
        with harness.ladder_env(a, work, data, ports, prefix, sample) as env:
            if tls:
                env.transport, env.tls_port = "tls", harness.free_tcp_port()
                env.tls = harness.make_tls(work / "tls")

            def step(s: harness.System, rate: int) -> harness.StepResult:
                print(f"[{rate} calls/s] {s.name} ...", end=" ", flush=True)
                r = harness.run_step(s, env, rate, a.duration, f"{s.name}-{rate}")
                print(step_line(r), flush=True)
                return r

            results = harness.run_ladder(systems, rates, a.max_failing, step)
    finally:
        harness.kill_all()
        if tmp is not None:
            tmp.cleanup()
    if tls:
        report = render_tls_report(a, results, skipped, counts, started)
        write_section(Path(a.out), report, TLS_BEGIN, TLS_END)
    else:
        report = render_report(a, results, skipped, counts, started, ports)
        write_section(Path(a.out), report)
    return results, skipped, report


BEGIN, END = "<!-- run_compare:begin -->", "<!-- run_compare:end -->"
TLS_BEGIN, TLS_END = "<!-- run_compare_tls:begin -->", "<!-- run_compare_tls:end -->"


def write_section(path: Path, report: str, begin: str = BEGIN, end: str = END) -> None:
    """Overwrite this run's section of the report; keep what surrounds it.

    RESULTS.md also holds the micro-benchmarks and the before/after rows of
    the optimisation work: only the part between the markers is replaced
    (a file without them is written whole).
    """
    old = path.read_text() if path.exists() else ""
    i, j = old.find(begin), old.find(end)
    if i < 0 or j < i:
        if begin == BEGIN:
            path.write_text(report)
        else:  # the TLS section: appended to the report, in its markers
            body = f"{begin}\n{report.rstrip()}\n{end}\n"
            path.write_text(old.rstrip("\n") + "\n\n" + body if old else body)
        return
    path.write_text(old[: i + len(begin)] + "\n" + report.rstrip("\n") + "\n" + old[j:])


def ratio_line(results: Sequence[harness.StepResult], what: str = "") -> str:
    s, k = harness.max_clean(results, "sipscreen"), harness.max_clean(results, "kamailio")
    measured = {r.system for r in results}
    ratio = f"{s / k:.2f}" if k and {"sipscreen", "kamailio"} <= measured else "n/a"
    return f"sipscreen/kamailio {what}max clean CPS ratio: {ratio}"


def render_report(
    a: argparse.Namespace,
    results: Sequence[harness.StepResult],
    skipped: dict[str, str],
    counts: dict[str, int],
    started: dt.datetime,
    ports: harness.Ports,
) -> str:
    names = list(dict.fromkeys(r.system for r in results))
    lines = [
        *harness.report_head(
            "## Side by side: sipscreen vs Kamailio vs SIPp direct (run_compare.py)",
            "benchmarks/run_compare.py",
            started,
            "run",
        ),
        "### Machine and versions",
        "",
        *harness.machine_lines(),
        "",
        "### Setup",
        "",
        f"- rates: {a.rates} calls/s, {a.duration:g} s per step, systems alternating per step; "
        f"a ladder stops after {a.max_failing} failing steps",
        f"- workers: sipscreen `--workers {a.workers}`, Kamailio `children={a.workers}`",
        f"- blocklist: {counts['blocked']:,} E.164 numbers; SIPp caller file {counts['calls']:,} "
        f"lines, {counts['blocked_calls']:,} ({100 * counts['blocked_calls'] / counts['calls']:.1f}"
        "%) blocked callers; blocked calls answered 603 Decline by both proxies",
        harness.records_line(a.records_redis),
        f"- ports: proxy udp:127.0.0.1:{ports.proxy}, UAS :{ports.uas}, UAC :{ports.uac}; "
        "SIPp UAC and UAS share the machine's cores with the proxy",
        "",
        "### Results",
        "",
        harness.table(results),
        "Summary (max clean rate = highest step with every call completed, 0 failed, "
        "and ≥ 90% of the rate carried):",
        "",
        *[f"- {n}: {harness.max_clean(results, n)} calls/s" for n in names],
        f"- {ratio_line(results)}",
        "",
    ]
    lines += ["### Not measured in this run", ""]
    lines += [f"- {n}: skipped: {why}" for n, why in skipped.items()]
    if a.blocked < 1_000_000:
        lines.append(
            "- blocklist scaling (1 M and 10 M entries): rerun with `--blocked 1000000` / "
            "`--blocked 10000000`"
        )
    lines += [
        "- latency below SIPp's 1 ms tick (needs a packet capture or the proxy's histogram)",
        "- TCP, and traffic from many source addresses: SIPp sends every call from one "
        "address and port, so a proxy spreading datagrams over workers by source (plain "
        "SO_REUSEPORT) may put them all on one worker; Kamailio's children share one socket",
        "- the machine is shared: see the other CPU s column; steps with a high value are "
        "noise, not the proxy",
        "",
    ]
    lines += [
        "### How to read it",
        "",
        "- INVITE→final is SIPp's RTD 1 (INVITE sent → 603 or 200 received), in whole "
        "milliseconds: SIPp's clock ticks in ms, so `0` means under 1 ms and `<1 ms` is the "
        "share of calls below 1 ms (SIPp's response-time repartition). Sub-millisecond "
        "latency needs a packet capture or the proxy's own histogram.",
        "- proxy CPU s: utime+stime of the proxy process and all its children "
        "(/proc/<pid>/stat) over the step; SIPp's own CPU is not included.",
        "- retrans: SIPp UAC + UAS retransmissions (INVITE/BYE and 200 OK).",
        "- not completed: calls of `-m` neither successful nor failed when SIPp stopped.",
        "- 603: INVITEs answered 603 Decline (blocked callers, ~5% expected); the other "
        "successful calls were put through to the UAS (200, ACK, BYE, 200).",
        "- SIPp CPU s: UAC + UAS; other CPU s: the rest of the machine's busy CPU during the "
        "step (other work on a shared machine: the higher, the less the step can be trusted).",
        "",
    ]
    return "\n".join(lines)


def render_tls_report(
    a: argparse.Namespace,
    results: Sequence[harness.StepResult],
    skipped: dict[str, str],
    counts: dict[str, int],
    started: dt.datetime,
) -> str:
    names = list(dict.fromkeys(r.system for r in results))
    lines = [
        *harness.report_head(
            "## Side by side over TLS: sipscreen vs Kamailio's tls module (run_compare.py "
            "--transport tls)",
            "benchmarks/run_compare.py --transport tls",
            started,
            "TLS run",
        ),
        *harness.machine_lines(),
        f"- rates: {a.rates} calls/s, {a.duration:g} s per step, the two systems alternating "
        f"per step; workers: sipscreen `--workers {a.workers}`, Kamailio `children={a.workers}` "
        f"and `tcp_children={a.workers}`",
        "- callers' side over TLS 1.2 on persistent connections (4 per generator process, "
        "calls round robin, many calls per connection as on a carrier interconnect), the "
        "softswitch side over UDP (SIPp UAS); the same certificate (ECDSA P-256, made for the "
        "run) served by both, the cipher suite fixed by the client (shown per row)",
        "- load generator: `benchmarks/tls_uac.py` (Python, uvloop + ssl; one process per "
        "1,500 calls/s, at most one per CPU), the same for both: the Debian SIPp 3.6.1 has no "
        "TLS transport (`sipp -h`: `-t` u1/un/ui/t1/tn/s1/sn). Each row's note gives its "
        "processes and connections, the rate it really offered, how far behind schedule it "
        "got (lag) and its own CPU: a row whose generator lagged is the generator's limit, "
        "not the proxy's",
        f"- blocklist: {counts['blocked']:,} numbers, "
        f"{100 * counts['blocked_calls'] / max(counts['calls'], 1):.1f}% blocked callers (603)",
        "- INVITE→final in ms as measured by the Python generator (not SIPp's 1 ms tick); "
        "'SIPp CPU s' here is the TLS generator + the SIPp UAS",
        "",
        harness.table(results),
        "Summary (max clean rate = highest step with every call completed, 0 failed, "
        "and ≥ 90% of the rate carried):",
        "",
        *[f"- {n}: {harness.max_clean(results, n)} calls/s" for n in names],
        f"- {ratio_line(results, 'TLS ')}",
        "",
        "Not completed calls over TLS: sipscreen forwards statelessly (RFC 3261 §16.11), so "
        "a datagram lost on the UDP leg or between its workers under overload is never "
        "sent again (a TLS caller does not retransmit, §17.1.1.2), where Kamailio's tm "
        "retransmits on the UDP leg; look at the row's not-completed column with its 503s.",
        "",
        "Both clean at the top step means the ladder did not reach either limit (the ratio "
        "is then 1.00 by construction): compare CPU µs/call. Run briefly on a shared 2-core "
        "machine (the other CPU s column), the load generator on the same cores.",
        "",
    ]
    lines += [f"- {n}: skipped: {why}" for n, why in skipped.items()]
    return "\n".join(lines)


SIGNED_BEGIN, SIGNED_END = "<!-- run_compare_signed:begin -->", "<!-- run_compare_signed:end -->"


def compare_signed(a: argparse.Namespace) -> tuple[list[harness.StepResult], dict[str, str], str]:
    """The signed-traffic ladder (benchmarks/signed.py): sipscreen and Kamailio
    verifying every INVITE's Identity, alternating per step, over UDP."""
    import signed  # noqa: PLC0415

    rates = [int(x) for x in a.rates.split(",") if x.strip()]
    wanted = [s.strip() for s in a.systems.split(",") if s.strip() in ("sipscreen", "kamailio")]
    skipped: dict[str, str] = {}
    problems = harness.ensure_deps(install=a.install)
    harness.require_sipp(problems)
    if "kamailio" in wanted:
        why = "; ".join(problems) if harness.which_kamailio() is None else signed.secsipid_missing()
        if why:
            skipped["kamailio"] = why
    if "sipscreen" in wanted and (why := harness.sipscreen_available()):
        skipped["sipscreen"] = why
    ports = harness.ladder_ports(a.ports)
    work, tmp = harness.ladder_workdir(a.workdir, "sipscreen-bench-signed-")
    data = work / "data"
    counts = gen_data.generate(str(data), a.blocked, max(a.csv_lines, 100), a.blocked_pct, a.seed)
    sample = next(iter(gen_data.blocked_numbers(1, a.seed)))
    # one distinct header per call of the largest step (+5%: SIPp may start a few more)
    n_headers = int(max(rates) * a.duration * 1.05) + 100
    sdata = signed.SignedData(work, data, n_headers)
    sdata.cert_verify = a.secsipid_cert_verify
    sdata.sign()
    systems = signed.signed_systems([w for w in wanted if w not in skipped], sdata)
    prefix = f"sipscreen-bench-{uuid.uuid4().hex[:8]}:"
    started = dt.datetime.now(dt.UTC)
    results: list[harness.StepResult] = []
    try:
        with harness.redis_with_blocklist(work, data, a.redis_url, prefix) as url:
            env = harness.Env(work, sdata.data, ports, a.workers, url, prefix, sample, a.blocked)
            env.uac_xml = "uac_signed.xml"

            def step(s: harness.System, rate: int) -> harness.StepResult:
                sdata.fresh()
                print(f"[{rate} calls/s signed] {s.name} ...", end=" ", flush=True)
                r = harness.run_step(s, env, rate, a.duration, f"signed-{s.name}-{rate}")
                signed.account(r, s)
                print(step_line(r), flush=True)
                return r

            results = harness.run_ladder(systems, rates, a.max_failing, step)
    finally:
        harness.kill_all()
        if tmp is not None:
            tmp.cleanup()
    report = render_signed_report(a, results, skipped, counts, started, n_headers)
    write_section(Path(a.out), report, SIGNED_BEGIN, SIGNED_END)
    return results, skipped, report


def step_line(r: harness.StepResult) -> str:
    """One ladder step as the console shows it (the UDP, TLS and signed ladders)."""
    return (
        f"achieved {r.achieved:.0f}/s ok={r.successful} failed={r.failed} "
        f"retrans={r.retrans} p50/p99={r.p50_ms}/{r.p99_ms} ms "
        f"cpu={r.cpu_s} {'CLEAN' if r.clean else 'NOT CLEAN'} {r.note}"
    )


def render_signed_report(
    a: argparse.Namespace,
    results: Sequence[harness.StepResult],
    skipped: dict[str, str],
    counts: dict[str, int],
    started: dt.datetime,
    n_headers: int,
) -> str:
    import signed  # noqa: PLC0415

    names = list(dict.fromkeys(r.system for r in results))
    lines = [
        *harness.report_head(
            "## Signed traffic: sipscreen vs Kamailio secsipid (run_compare.py --signed)",
            "benchmarks/run_compare.py --signed",
            started,
            "signed run",
        ),
        *harness.machine_lines(),
        f"- rates: {a.rates} calls/s, {a.duration:g} s per step, the two systems alternating "
        f"per step; workers: sipscreen `--workers {a.workers}`, Kamailio `children={a.workers}`",
        f"- {n_headers:,} distinct Identity headers; blocklist {counts['blocked']:,} numbers, "
        f"{100 * counts['blocked_calls'] / max(counts['calls'], 1):.1f}% blocked callers (603)",
        *signed.report_lines(cert_verify=a.secsipid_cert_verify),
        "",
        harness.table(results),
        "Summary (max clean rate = highest step with every call completed and verified, "
        "0 failed, and ≥ 90% of the rate carried):",
        "",
        *[f"- {n}: {harness.max_clean(results, n)} calls/s" for n in names],
        f"- {ratio_line(results, 'signed ')}",
        "",
    ]
    lines += [f"- {n}: skipped: {why}" for n, why in skipped.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    harness.install_signal_handlers()
    a = parse_args(argv)
    if a.signed:
        results, skipped, _ = compare_signed(a)
        for n, why in skipped.items():
            print(f"skipped {n}: {why}")
        print(f"wrote {a.out}")
        print(ratio_line(results, "signed "))
        return 0
    results, skipped, _ = compare(a)
    for n, why in skipped.items():
        print(f"skipped {n}: {why}")
    print(f"wrote {a.out}")
    print(ratio_line(results, "TLS " if a.transport == "tls" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
