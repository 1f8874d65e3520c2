"""Issue 14, live: a caller over TCP, the softswitch over UDP, the proxy as a
subprocess between them (raw sockets on loopback play the two peers).

The caller calls from an ephemeral port but names its listening port in its
Contact (``;transport=tcp``), as PBXes and SBCs do. The proxy must
Record-Route twice (RFC 5658: the UDP entry for the softswitch, a
``transport=tcp`` entry for the caller), and when the callee hangs up, the
softswitch's BYE (Route: both our entries) must reach the caller's listening
port on a connection the proxy opens (RFC 3261 §18.1.1). On the old code the
caller saw one UDP entry and the BYE was dropped (tcp_no_connection).
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from typing import Any

import pytest
from sipscreen_testlib import unstamped

from proxy.sip.message import Request, Response, frame_stream, parse

CALLEE = "+13125557000"
CALLER = "+12127368000"


def tcp_invite(port: int, lport: int, call_id: bytes) -> bytes:
    """An initial INVITE from CALLER to CALLEE, sent over TCP from 127.0.0.1:lport
    to the proxy on ``port`` (rport asked, Contact with transport=tcp)."""
    return (
        b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:%d;rport;branch=z9hG4bK-%s\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:%s@127.0.0.1>;tag=caller1\r\n"
        b"To: <sip:%s@127.0.0.1>\r\n"
        b"Call-ID: %s\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@127.0.0.1:%d;transport=tcp>\r\n"
        b"Content-Length: 0\r\n\r\n"
    ) % (
        CALLEE.encode(),
        port,
        lport,
        call_id[:8],
        CALLER.encode(),
        CALLEE.encode(),
        call_id,
        lport,
    )


def _recv_udp(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data, _ = sock.recvfrom(65535)
    return data


def _recv_tcp(conn: socket.socket, buf: bytearray, timeout: float = 5.0) -> bytes:
    conn.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg, used = frame_stream(bytes(buf))
        if used:
            del buf[:used]
        if msg is not None:
            return msg
        chunk = conn.recv(65535)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    raise TimeoutError("no message")


def _answer(req: Request, status: int, extra: bytes = b"") -> bytes:
    """A response copying the request's Vias and Record-Routes (RFC 3261 §8.2.6, §12.1.1)."""
    raw = req.raw
    vias = b"".join(b"Via: " + raw[v.span[0] : v.span[1]] + b"\r\n" for v in req.vias)
    rrs = b"".join(b"Record-Route: " + v + b"\r\n" for v in req.header(b"record-route"))
    to = req.to.raw + (b"" if req.to.tag else b";tag=callee1")
    return (
        b"SIP/2.0 %d OK\r\n" % status
        + vias
        + rrs
        + b"From: "
        + req.from_.raw
        + b"\r\nTo: "
        + to
        + b"\r\nCall-ID: "
        + req.call_id
        + b"\r\nCSeq: %d %s\r\n" % req.cseq
        + extra
        + b"Content-Length: 0\r\n\r\n"
    )


def test_tcp_caller_gets_double_record_route_and_the_callee_bye(
    key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    caller = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        lport = listener.getsockname()[1]
        proxy = start_proxy(ss.getsockname()[1], redis_url, key_prefix, tcp=True)
        caller.connect(("127.0.0.1", proxy.port))
        call_id = uuid.uuid4().hex.encode()
        caller.sendall(tcp_invite(proxy.port, lport, call_id))

        fwd = parse(_recv_udp(ss))
        assert isinstance(fwd, Request) and fwd.method == b"INVITE"
        rr = fwd.header(b"record-route")
        assert [unstamped(e) for e in rr] == [
            b"<sip:127.0.0.1:%d;lr>" % proxy.port,
            b"<sip:127.0.0.1:%d;transport=tcp;lr>" % proxy.port,
        ], rr
        ss.sendto(_answer(fwd, 200), ("127.0.0.1", proxy.port))
        buf = bytearray()
        ok = parse(_recv_tcp(caller, buf))
        assert isinstance(ok, Response) and ok.status == 200
        # the caller's route set (reversed) starts with the entry it can reach
        assert unstamped(ok.header(b"record-route")[-1]).endswith(b";transport=tcp;lr>")

        # The callee hangs up: the softswitch sends the BYE along its route set
        route = b", ".join(rr)
        bye = (
            b"BYE sip:alice@127.0.0.1:%d;transport=tcp SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ssbye1\r\n"
            b"Route: %s\r\n"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:%s@127.0.0.1>;tag=callee1\r\n"
            b"To: <sip:%s@127.0.0.1>;tag=caller1\r\n"
            b"Call-ID: %s\r\n"
            b"CSeq: 2 BYE\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (lport, ss.getsockname()[1], route, CALLEE.encode(), CALLER.encode(), call_id)
        ss.sendto(bye, ("127.0.0.1", proxy.port))
        listener.settimeout(5.0)
        conn, _ = listener.accept()  # the proxy opened a connection to the Contact
        with conn:
            got = parse(_recv_tcp(conn, bytearray()))
            assert isinstance(got, Request) and got.method == b"BYE"
            assert got.header(b"route") == []
            assert got.vias[0].transport == b"TCP"
            conn.sendall(_answer(got, 200))
            resp = _recv_udp(ss)
            assert re.match(rb"SIP/2.0 200 ", resp) and b"CSeq: 2 BYE" in resp
        assert proxy.metric("sipscreen_dropped_total", reason="tcp_no_connection") == 0
    finally:
        caller.close()
        listener.close()
        ss.close()


def test_tcp_bye_to_a_closed_port_is_counted_and_logged(
    key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """A request whose TCP connection cannot be opened is counted and logged."""
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    try:
        proxy = start_proxy(ss.getsockname()[1], redis_url, key_prefix, tcp=True)
        bye = (
            b"BYE sip:alice@127.0.0.1:%d;transport=tcp SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ssbye2\r\n"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\n"
            b"Call-ID: closed-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ) % (closed.getsockname()[1], ss.getsockname()[1])
        ss.sendto(bye, ("127.0.0.1", proxy.port))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proxy.metric("sipscreen_dropped_total", reason="tcp_connect_failed") >= 1:
                break
            time.sleep(0.2)
        assert proxy.metric("sipscreen_dropped_total", reason="tcp_connect_failed") == 1
        for _ in range(50):
            if "TCP connection to 127.0.0.1" in proxy.stderr() + proxy.stdout():
                break
            time.sleep(0.1)
        assert "TCP connection to 127.0.0.1" in proxy.stderr() + proxy.stdout()
    finally:
        closed.close()
        ss.close()


def test_tls_listen_needs_a_loadable_certificate(tmp_path: Any) -> None:
    from proxy.config import ConfigError, load_config

    cfg = tmp_path / "tls.toml"
    cfg.write_text('[proxy]\nlisten = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]\n')
    with pytest.raises(ConfigError, match="proxy.tls_cert: required"):
        load_config(str(cfg))
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    cfg.write_text(
        '[proxy]\nlisten = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]\n'
        'tls_cert = "bad.pem"\ntls_key = "bad.pem"\n'
    )
    with pytest.raises(ConfigError, match=r"proxy.tls_cert/proxy.tls_key: .*bad.pem"):
        load_config(str(cfg))
