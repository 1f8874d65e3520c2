"""[shaken] through the running proxy (`python -m proxy run`, loopback only).

The STI PKI and the Identity headers are built in the test; the signer's
certificate is placed in the `certs` directory (the interim certificate
source). With `unsigned = "block"`, an unsigned INVITE is answered with the
deterministic 603 (rule shaken_policy), a verified A-attested one is
forwarded to the softswitch with its Identity header, and both are counted
in sipscreen_shaken_results_total.
"""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Any

from sipscreen_testlib import udp_recorder

from proxy.shaken import cert_file_name
from tests.unit.shaken_pki import PKI, X5U, identity, passport

CALLER = "+13015551234"  # valid NANP, on no list
CALLEE = "+13125557000"


def _invite(lport: int, proxy_port: int, n: int, ident: bytes | None) -> bytes:
    head = (
        f"INVITE sip:{CALLEE}@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{CALLER}@127.0.0.1:{lport}>;tag=s{n}\r\n"
        f"To: <sip:{CALLEE}@127.0.0.1:{proxy_port}>\r\n"
        f"Call-ID: shaken-{n}-{uuid.uuid4().hex}\r\n"
        "CSeq: 1 INVITE\r\n"
    )
    if ident is not None:
        head += "Identity: " + ident.decode() + "\r\n"
    return (head + "Content-Length: 0\r\n\r\n").encode()


def _recv(sock: socket.socket, timeout: float) -> bytes | None:
    sock.settimeout(timeout)
    try:
        return sock.recvfrom(70000)[0]
    except TimeoutError:
        return None


def _final(sock: socket.socket, call_id: bytes, timeout: float = 5.0) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _recv(sock, max(0.05, deadline - time.monotonic()))
        if got is not None and call_id in got and not got.startswith(b"SIP/2.0 1"):
            return got
    return None


def test_unsigned_blocked_signed_forwarded(
    tmp_path: Path, key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    pki = PKI()
    (tmp_path / "sti-ca.pem").write_bytes(pki.anchors)
    certs = tmp_path / "sti-certs"
    certs.mkdir()
    (certs / cert_file_name(X5U)).write_bytes(pki.chain)
    shaken = {
        "enabled": True,
        "trust_anchors": str(tmp_path / "sti-ca.pem"),
        "certs": str(certs),
        "unsigned": "block",
    }
    with udp_recorder() as (ss, ss_port):
        proxy = start_proxy(ss_port, redis_url, key_prefix, sections={"shaken": shaken})
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]
        try:
            unsigned = _invite(lport, proxy.port, 1, None)
            ua.sendto(unsigned, ("127.0.0.1", proxy.port))
            call_id = next(x for x in unsigned.split(b"\r\n") if x.startswith(b"Call-ID:"))
            got = _final(ua, call_id)
            assert got is not None and got.startswith(b"SIP/2.0 603 Decline"), got

            ident = identity(passport(pki.signer_key, orig=CALLER[1:], iat=int(time.time())))
            signed = _invite(lport, proxy.port, 2, ident)
            ua.sendto(signed, ("127.0.0.1", proxy.port))
            fwd = _recv(ss, 5.0)
            assert fwd is not None and fwd.startswith(b"INVITE "), fwd
            assert b"Identity: " + ident in fwd
        finally:
            ua.close()
        assert proxy.metric("sipscreen_shaken_results_total", result="unsigned", attest="") == 1
        assert proxy.metric("sipscreen_shaken_results_total", result="passed", attest="A") == 1
        assert (
            proxy.metric(
                "sipscreen_invites_total",
                verdict="blocked",
                rule="shaken_policy",
                citation="operator policy",
            )
            == 1
        )
        assert proxy.stop() == 0
