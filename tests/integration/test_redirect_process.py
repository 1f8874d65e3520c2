"""`sipscreen run --mode redirect` as a process, on real UDP sockets: the same
302 (same To tag) for a retransmitted INVITE, the ACK absorbed (no answer,
counted), CANCEL of the answered INVITE 200 and of an unknown one 481,
OPTIONS 200, REGISTER 405 with Allow, a BYE 481, nothing ever sent to the
softswitch (a UDP socket standing in for it receives nothing)."""

from __future__ import annotations

import signal
import socket
from typing import Any

from sipscreen_testlib import recv_datagram, udp_recorder, wait_for

CALLER = "+12127368000"


def _req(method: str, port: int, lp: int, branch: str, extra: str = "", to_tag: str = "") -> bytes:
    cseq = 1 if method in ("INVITE", "ACK", "CANCEL") else 2
    tt = f";tag={to_tag}" if to_tag else ""
    return (
        f"{method} sip:+13125557000@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{branch};rport\r\n"
        f"From: <sip:{CALLER}@127.0.0.1:{lp}>;tag=f1\r\n"
        f"To: <sip:+13125557000@127.0.0.1>{tt}\r\n"
        f"Call-ID: redirect-proc-1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def _status(data: bytes | None) -> int:
    assert data is not None, "no answer"
    return int(data.split(b" ", 2)[1])


def _to_tag(data: bytes) -> str:
    line = next(ln for ln in data.split(b"\r\n") if ln.lower().startswith(b"to:"))
    return line.split(b";tag=", 1)[1].decode()


def test_redirect_process_answers_everything_itself(
    redis_url: str, key_prefix: str, start_proxy: Any
) -> None:
    with udp_recorder() as (softswitch, ss_port):
        proxy = start_proxy(ss_port, redis_url, key_prefix, args=["--mode", "redirect"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            lp, port = s.getsockname()[1], proxy.port
            dst = ("127.0.0.1", port)

            def ask(msg: bytes) -> bytes | None:
                s.sendto(msg, dst)
                return recv_datagram(s, 2.0)

            first = ask(_req("INVITE", port, lp, "inv1"))
            assert _status(first) == 302 and first is not None
            assert f"Contact: <sip:+13125557000@127.0.0.1:{port}>".encode() in first
            again = ask(_req("INVITE", port, lp, "inv1"))  # a retransmission
            assert again is not None and _status(again) == 302
            assert _to_tag(again) == _to_tag(first)
            assert _status(ask(_req("CANCEL", port, lp, "inv1"))) == 200
            s.sendto(_req("ACK", port, lp, "inv1", to_tag=_to_tag(first)), dst)
            assert _status(ask(_req("CANCEL", port, lp, "never"))) == 481
            assert _status(ask(_req("OPTIONS", port, lp, "opt1"))) == 200
            reg = ask(_req("REGISTER", port, lp, "reg1"))
            assert _status(reg) == 405 and reg is not None
            assert b"Allow: INVITE, ACK, CANCEL, OPTIONS" in reg
            assert _status(ask(_req("BYE", port, lp, "bye1", to_tag="x1"))) == 481
            # a ? in the Request-URI's user part (legal there) is escaped in the
            # Contact: a lax SBC would copy what follows into its new INVITE
            # as headers (RFC 3261 §19.1.5), a P-Asserted-Identity of the caller's
            user = "+13125557000?P-Asserted-Identity=%3Ctel%3A+12127369999%3E"
            ans = ask(
                _req("INVITE", port, lp, "inv3").replace(b"+13125557000@", user.encode() + b"@", 1)
            )
            assert _status(ans) == 302 and ans is not None
            contact = next(ln for ln in ans.split(b"\r\n") if ln.startswith(b"Contact:"))
            assert b"?" not in contact and b"%3FP-Asserted-Identity=" in contact, contact
            s.sendto(_req("ACK", port, lp, "inv3", to_tag=_to_tag(ans)), dst)
            # the ACK drew no answer and stopped the 302's retransmissions
            s.settimeout(1.2)
            extra = []
            try:
                while True:
                    extra.append(s.recv(65535))
            except TimeoutError:
                pass
            assert extra == [], extra
        assert wait_for(
            lambda: proxy.metric("sipscreen_dropped_total", reason="ack_absorbed") == 2, 5
        )
        assert proxy.metric("sipscreen_core_events_total", event="forwarded_requests") == 0
        assert recv_datagram(softswitch, 0.2) is None  # nothing reached the softswitch

        # SIGHUP: the [redirect] keys need a restart (logged); the screen is reloaded
        # and the verdict headers follow it
        with open(proxy.config_path, "a") as fh:
            fh.write("\n[redirect]\nallow_status = 380\n")
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "redirect_allow_status changed" in proxy.stderr(), 5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            lp = s.getsockname()[1]
            s.sendto(_req("INVITE", proxy.port, lp, "inv2"), ("127.0.0.1", proxy.port))
            ans = recv_datagram(s, 2.0)
            assert _status(ans) == 302 and ans is not None
            assert b"X-Sipscreen-Verdict: " in ans
