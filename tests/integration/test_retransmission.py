"""UDP retransmissions through the proxy (RFC 3261 §17), driven by hand
with plain sockets so each datagram is controlled: a retransmitted allowed
INVITE is relayed again with the same branch (the stand-in softswitch
"lost" the first one) and the answer comes back; a retransmitted blocked
INVITE is absorbed by the proxy's server transaction, which answers each
copy with the same final response and never relays it."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

from sipscreen_testlib import recv_datagram, udp_recorder


def _invite(lport: int, proxy_port: int, caller: str, branch: str, call_id: str) -> bytes:
    return (
        f"INVITE sip:+13125557000@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@127.0.0.1:{lport}>;tag=retr1\r\n"
        f"To: <sip:+13125557000@127.0.0.1:{proxy_port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{caller}@127.0.0.1:{lport}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _header(msg: bytes, name: bytes) -> bytes:
    for line in msg.split(b"\r\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line
    return b""


def test_retransmitted_invite_is_relayed_and_answered(
    key_prefix: str, redis_url: str, start_proxy: Any, loop_name: str
) -> None:
    with udp_recorder() as (ss, ss_port):
        proxy = start_proxy(ss_port, redis_url, key_prefix, loop=loop_name)
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex
        inv = _invite(lport, proxy.port, "+12127368000", branch, uuid.uuid4().hex)
        try:
            ua.sendto(inv, ("127.0.0.1", proxy.port))
            first = recv_datagram(ss, 5)
            assert first is not None and first.startswith(b"INVITE ")
            # The softswitch "loses" it; Timer A fires at the caller: resend.
            ua.sendto(inv, ("127.0.0.1", proxy.port))
            second = recv_datagram(ss, 5)
            assert second is not None and second.startswith(b"INVITE ")
            # Same proxy branch both times (RFC 3261 §16.11: stateless proxies
            # compute it deterministically so retransmissions match).
            assert _header(first, b"Via") == _header(second, b"Via")
            assert branch.encode() in second
            # The softswitch answers the copy it got; the answer reaches the caller
            # with the proxy's Via removed (§16.7).
            vias = [ln for ln in second.split(b"\r\n") if ln.lower().startswith(b"via:")]
            rest = second.split(b"\r\n")
            resp = (
                b"SIP/2.0 486 Busy Here\r\n"
                + b"\r\n".join(
                    [*vias]
                    + [
                        ln
                        for ln in rest
                        if ln.lower().startswith((b"from:", b"to:", b"call-id:", b"cseq:"))
                    ]
                )
                + b"\r\nContent-Length: 0\r\n\r\n"
            )
            ss.sendto(resp, ("127.0.0.1", proxy.port))
            got = recv_datagram(ua, 5)
            assert got is not None and got.startswith(b"SIP/2.0 486")
            assert got.count(b"Via:") + got.count(b"via:") == 1
        finally:
            ua.close()


def test_retransmitted_blocked_invite_is_absorbed(
    key_prefix: str, redis_url: str, redis_client: Any, start_proxy: Any
) -> None:
    blocked = "+12127369999"
    redis_client.sadd(key_prefix + "block:caller", blocked)
    with udp_recorder() as (ss, ss_port):
        proxy = start_proxy(ss_port, redis_url, key_prefix)
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]
        inv = _invite(lport, proxy.port, blocked, "z9hG4bK" + uuid.uuid4().hex, uuid.uuid4().hex)
        try:
            answers = []
            for _ in range(3):
                ua.sendto(inv, ("127.0.0.1", proxy.port))
                got = recv_datagram(ua, 5)
                assert got is not None
                answers.append(got)
                time.sleep(0.1)
            assert all(a.startswith(b"SIP/2.0 603 Decline") for a in answers)
            # The same response each time (same To tag): one transaction.
            assert len({_header(a, b"To") for a in answers}) == 1
            # Never relayed to the softswitch.
            assert recv_datagram(ss, 0.5) is None
            assert proxy.metric("sipscreen_invites_total", verdict="blocked") == 1
        finally:
            ua.close()
