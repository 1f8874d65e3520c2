"""A bounded loopback TLS load generator: full calls over TLS (run_compare.py
``--transport tls``).

The Debian SIPp (3.6.1) has no TLS transport (``sipp -h``: ``-t`` u1/un/ui/
t1/tn/s1/sn only), so this plays SIPp's ``uac_screen.xml`` over TLS, run the
same way against every system of a run: callers from the SIPp injection file
(``caller;callee;``), INVITE at a fixed rate, then 603 (blocked, ACKed by the
proxy's transaction: we send the ACK hop by hop) or 200 → ACK → BYE → 200,
on ``--connections`` persistent TLS connections (a carrier's interconnect
keeps its connections open), calls spread round robin. The client fixes the
protocol and the cipher suite (TLS 1.2, ``--cipher``), so both proxies
negotiate the same one. Bounded: ``--calls`` calls, ``--timeout`` seconds.
Writes a JSON summary (successful, failed, elapsed, declined, answered_200,
INVITE→final times in ms).

    python3 benchmarks/tls_uac.py --host 127.0.0.1 --port 5071 --ca ca.pem \\
        --callers callers.csv --rate 500 --calls 2500 --out uac.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.sip.message import frame_stream  # noqa: E402

CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"


def _head(data: bytes, name: bytes) -> list[bytes]:
    out = []
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name:
            out.append(v.strip())
    return out


class Conn(asyncio.Protocol):
    def __init__(self, gen: Gen) -> None:
        self.gen = gen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf:
            msg, used = frame_stream(bytes(self.buf))
            if used:
                del self.buf[:used]
            if msg is None:
                return
            self.gen.on_message(self, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.lost += 1


class Call:
    __slots__ = ("caller", "callee", "cid", "conn", "t0", "state", "branch", "routes", "done")

    def __init__(self, caller: str, callee: str, conn: Conn) -> None:
        self.caller, self.callee, self.conn = caller, callee, conn
        self.cid = uuid.uuid4().hex
        self.t0 = time.monotonic()
        self.state = "invite"
        self.branch = uuid.uuid4().hex[:16].encode()  # the INVITE's, and its non-2xx ACK's
        self.routes: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()


class Gen:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.calls: dict[bytes, Call] = {}
        self.ok = self.failed = self.declined = self.answered = self.lost = 0
        self.rtd: list[float] = []
        self.local = ("127.0.0.1", 5999)

    def _req(
        self,
        c: Call,
        method: bytes,
        cseq: int,
        to: bytes,
        extra: bytes = b"",
        same: bool = False,
        target: bytes = b"",
    ) -> bytes:
        a = self.a
        branch = c.branch if same else uuid.uuid4().hex[:16].encode()
        ruri = target or b"sip:%s@%s:%d;transport=tls" % (
            c.callee.encode(),
            a.host.encode(),
            a.port,
        )
        return (
            b"%s %s SIP/2.0\r\n"
            b"Via: SIP/2.0/TLS %s:%d;rport;branch=z9hG4bK%s\r\n"
            b"%s"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:%s@%s:%d>;tag=uac%s\r\n"
            b"To: %s\r\n"
            b"Call-ID: %s\r\n"
            b"CSeq: %d %s\r\n"
            b"Contact: <sip:%s@%s:%d;transport=tls>\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (
            method, ruri,
            self.local[0].encode(), self.local[1], branch,
            extra,
            c.caller.encode(), self.local[0].encode(), self.local[1], c.cid[:8].encode(),
            to, c.cid.encode(), cseq, method,
            c.caller.encode(), self.local[0].encode(), self.local[1],
        )  # fmt: skip

    def on_message(self, conn: Conn, msg: bytes) -> None:
        cid = (_head(msg, b"call-id") or [b""])[0]
        c = self.calls.get(cid)
        if c is None:
            return
        if not msg.startswith(b"SIP/2.0 "):
            return
        status = int(msg[8:11])
        method = (_head(msg, b"cseq") or [b"0 X"])[0].split()[-1]
        tr = conn.transport
        assert tr is not None
        if c.state == "invite" and method == b"INVITE" and status >= 200:
            self.rtd.append((time.monotonic() - c.t0) * 1000.0)
            to = (_head(msg, b"to") or [b""])[0]
            if status == 200:
                self.answered += 1
                rr = [r for v in _head(msg, b"record-route") for r in v.split(b",")]
                route = b"Route: " + b", ".join(x.strip() for x in reversed(rr)) + b"\r\n"
                c.routes = [route] if rr else []
                extra = c.routes[0] if c.routes else b""
                # the remote target: the 200's Contact (RFC 3261 §12.1.2)
                contact = (_head(msg, b"contact") or [b""])[0]
                t = contact[contact.find(b"<") + 1 : contact.find(b">")] if b"<" in contact else b""
                tr.write(
                    self._req(c, b"ACK", 1, to, extra, target=t)
                    + self._req(c, b"BYE", 2, to, extra, target=t)
                )
                c.state = "bye"
            elif status == 603:
                self.declined += 1
                tr.write(self._req(c, b"ACK", 1, to, same=True))  # hop by hop (RFC 3261 §17.1.1.3)
                self._end(c, True)
            else:
                self._end(c, False)
        elif c.state == "bye" and method == b"BYE" and status >= 200:
            self._end(c, status == 200)

    def _end(self, c: Call, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        self.calls.pop(c.cid.encode(), None)
        if not c.done.done():
            c.done.set_result(ok)

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
            conns.append(p)  # type: ignore[arg-type]
        cipher = conns[0].transport.get_extra_info("cipher") if conns[0].transport else None
        rows = []
        with open(a.callers) as fh:
            for line in fh:
                f = line.strip().split(";")
                if len(f) >= 2 and f[0] and f[0] != "SEQUENTIAL":
                    rows.append((f[0], f[1]))
                if len(rows) >= a.calls:
                    break
        start = time.monotonic()
        deadline = start + a.timeout
        futs = []
        for i, (caller, callee) in enumerate(rows[: a.calls]):
            due = start + i / a.rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            if now > deadline:
                break
            conn = conns[i % len(conns)]
            c = Call(caller, callee, conn)
            self.calls[c.cid.encode()] = c
            assert conn.transport is not None
            to = b"<sip:%s@%s:%d>" % (callee.encode(), a.host.encode(), a.port)
            conn.transport.write(self._req(c, b"INVITE", 1, to, same=True))
            futs.append(c.done)
        if futs:
            await asyncio.wait(futs, timeout=max(0.1, deadline - time.monotonic()))
        elapsed = time.monotonic() - start
        for p in conns:
            if p.transport is not None:
                p.transport.close()
        return {
            "attempted": a.calls,
            "successful": self.ok,
            "failed": self.failed,
            "elapsed": elapsed,
            "declined": self.declined,
            "answered_200": self.answered,
            "rtd_ms": sorted(self.rtd),
            "cipher": list(cipher) if cipher else None,
            "connections_lost": self.lost,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--callers", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--cipher", default=CIPHER)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.host != "127.0.0.1":
        ap.error("loopback only")
    res = asyncio.run(Gen(a).run())
    Path(a.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
