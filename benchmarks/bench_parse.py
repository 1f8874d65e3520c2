"""Micro-benchmark of the sans-I/O SIP hot path: parse, and the core's forward path.

Times, for a realistic ~1.5 kB INVITE (SIPp uac style, with PAI, Identity and
SDP) and the softswitch's 200 OK: ``parse`` alone, the core forwarding the
INVITE (parse + screen stub returning None + Via/Max-Forwards/Record-Route
rewrite), the core relaying the 200 OK (parse + pop our Via) and relaying the
caller's in-dialog ACK and BYE (parse + remove our Route + add our Via).

Each line gives the median and p99 of the wall-clock µs per operation over
bounded batches, and the median of the thread-CPU µs per operation (less
sensitive to other processes on a shared machine). The first line times an
empty loop of the same batch size, so a noisy run can be judged. With
``--runs N`` the whole set is run N times and the median of the per-run
medians is printed at the end. Not a test: it never gates CI.

With ``--callgrind`` each operation is instead counted in instructions under
Valgrind's callgrind (stable on a noisy machine): the script reruns itself
with ``--case I --iters N`` for two values of N, and the difference divided by
the difference in N is the cost of one operation, setup and interpreter
start-up cancelled out.

    python3 benchmarks/bench_parse.py [--seconds 1] [--runs 3]
    python3 benchmarks/bench_parse.py --callgrind [--iters 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import callgrind_instructions  # noqa: E402

from proxy.sip.core import Answer, CoreConfig, ProxyCore  # noqa: E402
from proxy.sip.message import Request, parse  # noqa: E402

SDP = (
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 10.20.30.40\r\ns=-\r\n"
    b"c=IN IP4 10.20.30.40\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:+12025550123@10.0.0.2:5060;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK-12345-1-0;rport\r\n"
    b'From: "Caller Name" <sip:+13035551111@10.20.30.40:5060;user=phone>;tag=12345SIPpTag001\r\n'
    b"To: <sip:+12025550123@10.0.0.2:5060;user=phone>\r\n"
    b"Call-ID: 1-12345@10.20.30.40\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:+13035551111@10.20.30.40:5060;transport=udp>\r\n"
    b"Max-Forwards: 70\r\n"
    b'P-Asserted-Identity: "Caller Name" <sip:+13035551111@carrier.example.net;user=phone>\r\n'
    b"Privacy: none\r\n"
    b"Identity: eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1Ijoi"
    b"aHR0cHM6Ly9jZXJ0LmV4YW1wbGUuY29tL2NlcnQucGVtIn0.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0b"
    b"iI6WyIxMjAyNTU1MDEyMyJdfSwiaWF0IjoxNzAwMDAwMDAwLCJvcmlnIjp7InRuIjoiMTMwMzU1NTExMTE"
    b"ifSwib3JpZ2lkIjoiMTIzZTQ1NjctZTg5Yi0xMmQzLWE0NTYtNDI2NjE0MTc0MDAwIn0.MEUCIQDdGVzd"
    b"HNpZ25hdHVyZWJ5dGVzZm9yYmVuY2htYXJraW5nb25seQ;info=<https://cert.example.com/cert.pem>"
    b";alg=ES256;ppt=shaken\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n"
    b"Supported: 100rel, timer, replaces\r\n"
    b"Session-Expires: 1800;refresher=uac\r\n"
    b"Min-SE: 90\r\n"
    b"User-Agent: SIPp/3.7.2 benchmark\r\n"
    b"X-Carrier-Trunk: trunk-17;region=us-east\r\n"
    b"Subject: Performance Test\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: %d\r\n\r\n%s"
) % (len(SDP), SDP)

SS = ("10.0.0.2", 5060)
SRC = ("10.20.30.40", 5060)


def _screen(req: Request, src: tuple[str, int], transport: str) -> Answer | None:
    return None


def _bench(
    fn: Callable[[], object], seconds: float, batch: int = 200
) -> tuple[float, float, float]:
    """(wall median, wall p99, CPU median) µs per call, bounded by ``seconds`` and 2,000 batches."""
    for _ in range(batch):  # warm up
        fn()
    wall: list[float] = []
    cpu: list[float] = []
    clock = time.perf_counter_ns
    tclock = time.thread_time_ns
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop and len(wall) < 2000:
        c0 = tclock()
        t0 = clock()
        for _ in range(batch):
            fn()
        t1 = clock()
        c1 = tclock()
        wall.append((t1 - t0) / batch / 1000)
        cpu.append((c1 - c0) / batch / 1000)
    wall.sort()
    p99 = wall[min(len(wall) - 1, int(len(wall) * 0.99))]
    return statistics.median(wall), p99, statistics.median(cpu)


def _empty() -> None:
    return None


def _in_dialog(method: bytes, cseq: int) -> bytes:
    """The caller's in-dialog request after the 200 OK: our Record-Route as Route."""
    return (
        b"%s sip:+12025550123@10.0.0.2:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK-12345-%d-%s;rport\r\n"
        b"Route: <sip:10.0.0.1:5060;lr>\r\n"
        b'From: "Caller Name" <sip:+13035551111@10.20.30.40:5060;user=phone>'
        b";tag=12345SIPpTag001\r\n"
        b"To: <sip:+12025550123@10.0.0.2:5060;user=phone>;tag=ss-4711\r\n"
        b"Call-ID: 1-12345@10.20.30.40\r\n"
        b"CSeq: %d %s\r\n"
        b"Contact: <sip:+13035551111@10.20.30.40:5060;transport=udp>\r\n"
        b"Max-Forwards: 70\r\n"
        b"User-Agent: SIPp/3.7.2 benchmark\r\n"
        b"Content-Length: 0\r\n\r\n"
    ) % (method, cseq, method, cseq, method)


def _cases(
    core: ProxyCore, full: ProxyCore, ok: bytes, ack: bytes, bye: bytes
) -> list[tuple[str, Callable[[], object]]]:
    def relay(data: bytes, src: tuple[str, int], c: ProxyCore = core) -> Callable[[], None]:
        def run() -> None:
            c.datagram_received(data, src, "udp", 0.0)
            c._out.clear()

        return run

    return [
        ("empty loop (baseline)", _empty),
        ("parse INVITE", lambda: parse(INVITE)),
        (
            "parse INVITE + From/PAI/Identity",
            lambda: (lambda m: (m.from_.user, m.pai, m.identity))(parse(INVITE)),
        ),
        ("parse 200 OK", lambda: parse(ok)),
        ("parse ACK (in-dialog)", lambda: parse(ack)),
        ("parse BYE (in-dialog)", lambda: parse(bye)),
        ("core: forward INVITE", relay(INVITE, SRC)),
        ("core: relay 200 OK", relay(ok, SS)),
        ("core: relay ACK (in-dialog)", relay(ack, SRC)),
        ("core: relay BYE (in-dialog)", relay(bye, SRC)),
        # the same three with the lean relay off (proxy/sip/relay.py): full parse
        ("core, full parse: relay 200 OK", relay(ok, SS, full)),
        ("core, full parse: relay ACK", relay(ack, SRC, full)),
        ("core, full parse: relay BYE", relay(bye, SRC, full)),
    ]


def _instructions(case: int, iters: int) -> int:
    """Instructions callgrind counts for one run of this script with ``iters`` operations."""
    script = str(Path(__file__).resolve())
    return callgrind_instructions(
        [sys.executable, script, "--case", str(case), "--iters", str(iters)]
    )


def _callgrind(cases: list[tuple[str, Callable[[], object]]], iters: int) -> None:
    """Instructions per operation: (count at 2N - count at N) / N, start-up cancelled."""
    print(f"callgrind: instructions per operation ({iters} vs {2 * iters} operations)")
    jobs = [(i, n) for i in range(len(cases)) for n in (iters, 2 * iters)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        counts = dict(zip(jobs, pool.map(lambda j: _instructions(*j), jobs), strict=True))
    for i, (name, _) in enumerate(cases):
        per = (counts[i, 2 * iters] - counts[i, iters]) / iters
        print(f"{name:<34} {per:10.0f} instructions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=1.0, help="per line (bounded)")
    ap.add_argument("--runs", type=int, default=1, help="repeat the set, report medians")
    ap.add_argument("--callgrind", action="store_true", help="count instructions per operation")
    ap.add_argument("--iters", type=int, default=2000, help="operations per callgrind run")
    ap.add_argument("--case", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    runs = max(1, min(args.runs, 20))
    iters = max(1, min(args.iters, 100_000))

    core = ProxyCore(CoreConfig("10.0.0.1", 5060, SS), _screen)
    full = ProxyCore(CoreConfig("10.0.0.1", 5060, SS, lean_relay=False), _screen)
    core.datagram_received(INVITE, SRC, "udp", 0.0)
    [(fwd, _, _)] = core.datagrams_to_send()
    req = parse(fwd)
    assert isinstance(req, Request)
    vias = b"".join(b"Via: " + fwd[v.span[0] : v.span[1]] + b"\r\n" for v in req.vias)
    ok = (
        b"SIP/2.0 200 OK\r\n"
        + vias
        + b"From: "
        + req.from_.raw
        + b"\r\nTo: "
        + req.to.raw
        + b";tag=ss-4711\r\nCall-ID: "
        + req.call_id
        + b"\r\nCSeq: 1 INVITE\r\n"
        + b"Contact: <sip:+12025550123@10.0.0.2:5060>\r\n"
        + b"Record-Route: <sip:10.0.0.1:5060;lr>\r\n"
        + b"Content-Type: application/sdp\r\n"
        + b"Content-Length: %d\r\n\r\n%s" % (len(SDP), SDP)
    )
    ack = _in_dialog(b"ACK", 1)
    bye = _in_dialog(b"BYE", 2)
    # sanity: every scenario produces exactly one datagram
    for data, src in ((ok, SS), (ack, SRC), (bye, SRC)):
        core.datagram_received(data, src, "udp", 0.0)
        full.datagram_received(data, src, "udp", 0.0)
        assert core.datagrams_to_send() == full.datagrams_to_send(), data[:20]
    if args.case >= 0:
        # one callgrind measurement: run case ``args.case`` ``iters`` times, print nothing
        fn = _cases(core, full, ok, ack, bye)[args.case][1]
        for _ in range(iters):
            fn()
        return
    print(
        f"INVITE {len(INVITE)} bytes, 200 OK {len(ok)} bytes, ACK {len(ack)} bytes, "
        f"BYE {len(bye)} bytes, Python {sys.version.split()[0]}"
    )

    cases = _cases(core, full, ok, ack, bye)
    if args.callgrind:
        _callgrind(cases, iters)
        return
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in cases}
    for r in range(runs):
        if runs > 1:
            print(f"-- run {r + 1}/{runs}")
        for name, fn in cases:
            med, p99, cpu = _bench(fn, args.seconds)
            results[name].append((med, p99, cpu))
            print(f"{name:<34} median {med:7.2f} µs   p99 {p99:7.2f} µs   cpu {cpu:7.2f} µs")
    if runs > 1:
        print(f"-- median of {runs} runs")
        for name, _ in cases:
            rs = results[name]
            med = statistics.median(x[0] for x in rs)
            p99 = statistics.median(x[1] for x in rs)
            cpu = statistics.median(x[2] for x in rs)
            print(f"{name:<34} median {med:7.2f} µs   p99 {p99:7.2f} µs   cpu {cpu:7.2f} µs")


if __name__ == "__main__":
    main()
