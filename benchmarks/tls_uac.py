"""A bounded loopback TLS load generator: full calls over TLS (run_compare.py
``--transport tls``).

The Debian SIPp (3.6.1) has no TLS transport (``sipp -h``: ``-t`` u1/un/ui/
t1/tn/s1/sn only), so this plays SIPp's ``uac_screen.xml`` over TLS, run the
same way against every system of a run: callers from the SIPp injection file
(``caller;callee;``), INVITE at a fixed rate, then 603 (blocked, ACKed by the
proxy's transaction: we send the ACK hop by hop) or 200 → ACK → BYE → 200.

Like a carrier interconnect, each process keeps ``--connections`` persistent
TLS connections open and spreads its calls over them round robin (many calls
per connection). To offer several thousand calls/s without being the
bottleneck it runs ``--procs`` processes (default: one per 1,500 calls/s,
at most the number of CPUs), each with its share of the rate, the calls and
the callers; the parent waits for them (so their CPU is its children's, as the
harness counts it) and adds up their summaries. Each process runs on uvloop
(its TLS is far cheaper than asyncio's pure-Python one) when it is installed,
sends the INVITEs due every 2 ms in one write per connection, and reads only
the status line, Call-ID and CSeq of a response (the whole header only for
the 200 to an INVITE, whose Record-Route, Contact and To tag it needs).

The client fixes the protocol and the cipher suite (TLS 1.2, ``--cipher``),
so both proxies negotiate the same one. Bounded: ``--calls`` calls,
``--timeout`` seconds. Counted honestly: a call is successful only when its
603 or its BYE's 200 arrived; any other final response is a failure; a call
still open at the timeout, or never sent because the generator fell behind
its schedule, is neither (the harness reports it as not completed). The JSON
summary says how far behind schedule the sender got (``send_lag_max_ms``),
the rate it really offered, and the generator's own CPU seconds.

    python3 benchmarks/tls_uac.py --host 127.0.0.1 --port 5071 --ca ca.pem \\
        --callers callers.csv --rate 2000 --calls 10000 --out uac.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import time
from pathlib import Path

CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"
TICK = 0.002  # seconds between two batches of INVITEs
PER_PROC = 1500  # calls/s one generator process is given by default


def _head(data: bytes, name: bytes) -> list[bytes]:
    out = []
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            out.append(v.strip())
    return out


def _field(msg: bytes, key: bytes, compact: bytes) -> bytes:
    """The value of the first header ``key`` (b"\\r\\nName:"), as spelled by SIPp and
    both proxies; else (another spelling) the slow full read."""
    i = msg.find(key)
    if i < 0:
        got = _head(msg, key[2:-1].lower()) or _head(msg, compact)
        return got[0] if got else b""
    s = i + len(key)
    return msg[s : msg.find(b"\r\n", s)].strip()


class Conn(asyncio.Protocol):
    __slots__ = ("gen", "buf", "transport")

    def __init__(self, gen: Gen) -> None:
        self.gen = gen
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos, n = 0, len(buf)
        on_message = self.gen.on_message
        while pos < n:
            he = buf.find(b"\r\n\r\n", pos)
            if he < 0:
                break
            cl = 0
            i = buf.find(b"\r\nContent-Length:", pos, he)
            if i < 0:
                i = buf.find(b"\r\nl:", pos, he)
                j = i + 4
            else:
                j = i + 17
            if i >= 0:
                cl = int(buf[j : buf.find(b"\r\n", j)].strip() or b"0")
            end = he + 4 + cl
            if end > n:
                break
            on_message(self, buf[pos:end])
            pos = end
        self.buf = buf[pos:] if pos < n else b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost += 1


class Call:
    __slots__ = ("caller", "callee", "cid", "t0", "state", "branch")

    def __init__(self, caller: bytes, callee: bytes, cid: bytes, branch: bytes) -> None:
        self.caller, self.callee, self.cid, self.branch = caller, callee, cid, branch
        self.t0 = 0.0
        self.state = 0  # 0: INVITE sent; 1: ACK and BYE sent


class Gen:
    def __init__(self, a: argparse.Namespace, tag: str) -> None:
        self.a = a
        self.tag = tag.encode()  # makes Call-IDs and branches unique across processes
        self.calls: dict[bytes, Call] = {}
        self.ok = self.failed = self.declined = self.answered = self.lost = 0
        self.sent = 0
        self.fail_status: dict[int, int] = {}  # final status of the failed calls
        self.rtd: list[float] = []
        self.n = 0
        self.lag = 0.0
        self.idle: asyncio.Event | None = None
        host = a.host.encode()
        self.target = b"%s:%d" % (host, a.port)
        self.local = b"127.0.0.1:5999"

    def _next(self) -> bytes:
        self.n += 1
        return b"%s%x" % (self.tag, self.n)

    def _req(
        self,
        c: Call,
        method: bytes,
        cseq: int,
        to: bytes,
        extra: bytes = b"",
        branch: bytes = b"",
        target: bytes = b"",
    ) -> bytes:
        ruri = target or b"sip:%s@%s;transport=tls" % (c.callee, self.target)
        return (
            b"%s %s SIP/2.0\r\n"
            b"Via: SIP/2.0/TLS %s;rport;branch=z9hG4bK%s\r\n"
            b"%s"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:%s@%s>;tag=uac%s\r\n"
            b"To: %s\r\n"
            b"Call-ID: %s\r\n"
            b"CSeq: %d %s\r\n"
            b"Contact: <sip:%s@%s;transport=tls>\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (
            method, ruri,
            self.local, branch or self._next(),
            extra,
            c.caller, self.local, c.cid,
            to, c.cid, cseq, method,
            c.caller, self.local,
        )  # fmt: skip

    def on_message(self, conn: Conn, msg: bytes) -> None:
        if msg[:8] != b"SIP/2.0 ":
            return  # no request is expected on the callers' side
        status = int(msg[8:11])
        if status < 200:
            return
        c = self.calls.get(_field(msg, b"\r\nCall-ID:", b"i"))
        if c is None:
            return
        method = _field(msg, b"\r\nCSeq:", b"cseq").split()[-1]
        tr = conn.transport
        assert tr is not None
        if c.state == 0 and method == b"INVITE":
            self.rtd.append((time.monotonic() - c.t0) * 1000.0)
            to = _field(msg, b"\r\nTo:", b"t")
            if status == 200:
                self.answered += 1
                rr = [r for v in _head(msg, b"record-route") for r in v.split(b",")]
                extra = b""
                if rr:
                    extra = b"Route: " + b", ".join(x.strip() for x in reversed(rr)) + b"\r\n"
                # the remote target: the 200's Contact (RFC 3261 §12.1.2)
                contact = _field(msg, b"\r\nContact:", b"m")
                t = contact[contact.find(b"<") + 1 : contact.find(b">")] if b"<" in contact else b""
                tr.write(
                    self._req(c, b"ACK", 1, to, extra, target=t)
                    + self._req(c, b"BYE", 2, to, extra, target=t)
                )
                c.state = 1
            elif status == 603:
                self.declined += 1
                # hop by hop, the INVITE's branch (RFC 3261 §17.1.1.3)
                tr.write(self._req(c, b"ACK", 1, to, branch=c.branch))
                self._end(c, True)
            else:
                self._end(c, False, status)
        elif c.state == 1 and method == b"BYE":
            self._end(c, status == 200, status)

    def _end(self, c: Call, ok: bool, status: int = 0) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
            self.fail_status[status] = self.fail_status.get(status, 0) + 1
        del self.calls[c.cid]
        if not self.calls and self.idle is not None:
            self.idle.set()

    def _rows(self) -> list[tuple[bytes, bytes]]:
        a = self.a
        rows = []
        k = 0
        with open(a.callers, "rb") as fh:
            for line in fh:
                f = line.strip().split(b";")
                if len(f) < 2 or not f[0] or f[0] == b"SEQUENTIAL":
                    continue
                if k % a.nprocs == a.proc:  # this process's share of the callers
                    rows.append((f[0], f[1]))
                    if len(rows) >= a.calls:
                        break
                k += 1
        if not rows:
            raise SystemExit(f"no callers in {a.callers}")
        while len(rows) < a.calls:  # a short file: used again from the start
            rows.extend(rows[: a.calls - len(rows)])
        return rows

    async def run(self) -> dict[str, object]:
        a = self.a
        loop = asyncio.get_running_loop()
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(a.cipher)
        conns: list[Conn] = []
        for _ in range(a.connections):
            _, p = await loop.create_connection(
                lambda: Conn(self), a.host, a.port, ssl=ctx, server_hostname=a.host
            )
            conns.append(p)
        tr0 = conns[0].transport
        cipher = tr0.get_extra_info("cipher") if tr0 is not None else None
        rows = self._rows()
        self.idle = asyncio.Event()
        start = time.monotonic()
        deadline = start + a.timeout
        nconn = len(conns)
        to_fmt = b"<sip:%s@" + self.target + b">"
        i = 0
        while i < a.calls:
            now = time.monotonic()
            if now > deadline:
                break
            due = min(a.calls, int((now - start) * a.rate) + 1)
            if due > i + 1:
                self.lag = max(self.lag, (due - 1 - i) / a.rate)
            batch: list[list[bytes]] = [[] for _ in conns]
            while i < due:
                caller, callee = rows[i]
                branch = self._next()
                c = Call(caller, callee, branch, branch)
                c.t0 = now
                self.calls[c.cid] = c
                batch[i % nconn].append(self._req(c, b"INVITE", 1, to_fmt % callee, branch=branch))
                i += 1
            for conn, msgs in zip(conns, batch, strict=True):
                if msgs and conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.write(b"".join(msgs))
            self.sent = i
            await asyncio.sleep(max(0.0, start + i / a.rate - time.monotonic(), TICK))
        send_time = time.monotonic() - start
        if self.calls:
            self.idle.clear()
            try:
                await asyncio.wait_for(self.idle.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                pass
        elapsed = time.monotonic() - start
        for p in conns:
            if p.transport is not None:
                p.transport.close()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "attempted": a.calls,
            "sent": self.sent,
            "successful": self.ok,
            "failed": self.failed,
            "open_at_end": len(self.calls),
            "elapsed": elapsed,
            "offered_cps": self.sent / send_time if send_time > 0 else 0.0,
            "send_lag_max_ms": round(self.lag * 1000.0, 1),
            "declined": self.declined,
            "answered_200": self.answered,
            "rtd_ms": sorted(self.rtd),
            "cipher": list(cipher) if cipher else None,
            "connections": nconn,
            "connections_lost": self.lost,
            "fail_status": {str(k): v for k, v in sorted(self.fail_status.items())},
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "procs": 1,
        }


def _run_one(a: argparse.Namespace) -> dict[str, object]:
    gen = Gen(a, f"p{a.proc}x{os.getpid():x}")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(gen.run())
    return uvloop.run(gen.run())


def _merge(parts: list[dict[str, object]], calls: int) -> dict[str, object]:
    """One summary of the processes' summaries (sums; the longest elapsed; the
    largest lag; every INVITE→final time, sorted)."""

    def num(p: dict[str, object], k: str) -> float:
        v = p[k]
        return float(v) if isinstance(v, (int, float)) else 0.0

    def tot(k: str) -> float:
        return sum(num(p, k) for p in parts)

    rtd: list[float] = []
    fails: dict[str, int] = {}
    for p in parts:
        rtd.extend(p["rtd_ms"])  # type: ignore[arg-type]
        for k, v in p["fail_status"].items():  # type: ignore[attr-defined]
            fails[k] = fails.get(k, 0) + int(v)
    ints = ("sent", "successful", "failed", "open_at_end", "declined", "answered_200")
    out: dict[str, object] = {k: int(tot(k)) for k in ints}
    out.update(
        attempted=calls,
        elapsed=max(num(p, "elapsed") for p in parts),
        offered_cps=tot("offered_cps"),
        send_lag_max_ms=max(num(p, "send_lag_max_ms") for p in parts),
        rtd_ms=sorted(rtd),
        cipher=next((p["cipher"] for p in parts if p["cipher"]), None),
        connections=int(tot("connections")),
        connections_lost=int(tot("connections_lost")),
        fail_status=fails,
        cpu_s=tot("cpu_s"),
        procs=len(parts),
    )
    return out


def _fan_out(a: argparse.Namespace, argv: list[str]) -> dict[str, object]:
    """Run ``a.procs`` generator processes, each with its share, and merge them."""
    out = Path(a.out)
    procs = []
    for k in range(a.procs):
        share = a.calls // a.procs + (1 if k < a.calls % a.procs else 0)
        part = out.with_name(f"{out.stem}.{k}{out.suffix}")
        cmd = [sys.executable, __file__, *argv]
        cmd += ["--procs", "1", "--calls", str(share), "--rate", str(a.rate / a.procs)]
        cmd += ["--_proc", f"{k}/{a.procs}", "--out", str(part)]
        procs.append((subprocess.Popen(cmd), part))
    parts = []
    for p, part in procs:
        try:
            p.wait(a.timeout + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        try:
            parts.append(json.loads(part.read_text()))
        except (OSError, ValueError):
            continue  # a process that wrote nothing: its calls are not completed
    if not parts:
        raise SystemExit("no generator process wrote a summary")
    merged = _merge(parts, a.calls)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    merged["cpu_s"] = ru.ru_utime + ru.ru_stime
    return merged


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--callers", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--connections", type=int, default=4, help="TLS connections per process")
    ap.add_argument(
        "--procs", type=int, default=0, help=f"processes (0: one per {PER_PROC} calls/s)"
    )
    ap.add_argument("--cipher", default=CIPHER)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--_proc", default="0/1", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.host != "127.0.0.1":
        ap.error("loopback only")
    if a.rate <= 0 or a.calls <= 0 or a.connections <= 0:
        ap.error("--rate, --calls and --connections must be positive")
    if a.procs <= 0:
        a.procs = max(1, min(os.cpu_count() or 1, -(-int(a.rate) // PER_PROC)))
    a.proc, a.nprocs = (int(x) for x in a._proc.split("/"))
    if a.procs > 1 and a.nprocs == 1:
        drop = {"--procs", "--calls", "--rate", "--out", "--_proc"}
        rest: list[str] = []
        skip = False
        for i, x in enumerate(argv):
            if skip:
                skip = False
                continue
            name = x.split("=", 1)[0]
            if name in drop:
                skip = "=" not in x and i + 1 < len(argv)
                continue
            rest.append(x)
        res = _fan_out(a, rest)
    else:
        res = _run_one(a)
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
