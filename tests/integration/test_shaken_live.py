"""[shaken] through the running proxy (`python -m proxy run`, loopback only).

The STI PKI and the Identity headers are built in the test; the signer's
certificate is placed in the `certs` directory (the interim certificate
source). With `unsigned = "block"`, an unsigned INVITE is answered with the
deterministic 603 (rule shaken_policy), a verified A-attested one is
forwarded to the softswitch with its Identity header, and both are counted
in sipscreen_shaken_results_total.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sipscreen_testlib import udp_recorder, wait_for

from proxy.certfetch import cert_key
from proxy.shaken import cert_file_name
from tests.unit.shaken_pki import PKI, X5U, identity, passport, tls_files

CALLER = "+13015551234"  # valid NANP, on no list
CALLEE = "+13125557000"


@pytest.fixture
def pki_anchors(tmp_path: Path) -> tuple[PKI, Path]:
    """A fresh STI PKI and its trust anchors written to tmp_path/sti-ca.pem."""
    pki = PKI()
    anchors = tmp_path / "sti-ca.pem"
    anchors.write_bytes(pki.anchors)
    return pki, anchors


@pytest.fixture
def sti(tmp_path: Path, pki_anchors: tuple[PKI, Path]) -> tuple[PKI, dict[str, Any]]:
    """The PKI, its signer's chain placed in the certs directory, and the
    [shaken] section that points at both (tests add their policies)."""
    pki, anchors = pki_anchors
    certs = tmp_path / "sti-certs"
    certs.mkdir()
    (certs / cert_file_name(X5U)).write_bytes(pki.chain)
    return pki, {"enabled": True, "trust_anchors": str(anchors), "certs": str(certs)}


def _invite(lport: int, proxy_port: int, n: int, ident: bytes | None, extra: str = "") -> bytes:
    head = (
        f"INVITE sip:{CALLEE}@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{CALLER}@127.0.0.1:{lport}>;tag=s{n}\r\n"
        f"To: <sip:{CALLEE}@127.0.0.1:{proxy_port}>\r\n"
        f"Call-ID: shaken-{n}-{uuid.uuid4().hex}\r\n"
        "CSeq: 1 INVITE\r\n" + extra
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


def _first(
    sock: socket.socket, match: Callable[[bytes], bool], timeout: float = 5.0
) -> bytes | None:
    """The first datagram on ``sock`` that ``match``es, within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = _recv(sock, max(0.05, deadline - time.monotonic()))
        if got is not None and match(got):
            return got
    return None


def _final(sock: socket.socket, call_id: bytes, timeout: float = 5.0) -> bytes | None:
    """The final response for call_id."""
    return _first(sock, lambda g: call_id in g and not g.startswith(b"SIP/2.0 1"), timeout)


def test_unsigned_blocked_signed_forwarded(
    sti: tuple[PKI, dict[str, Any]], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    pki, base = sti
    shaken = {**base, "unsigned": "block"}
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


def _https_server(tls: tuple[str, str, str], body: bytes) -> tuple[Any, list[str]]:
    """A threaded HTTPS server on 127.0.0.1 serving ``body`` at every path."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/pem-certificate-chain")
            self.send_header("Cache-Control", "max-age=600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls[1], tls[2])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, hits


def test_fetched_certificate_then_verstat_on_the_forwarded_invite(
    tmp_path: Path,
    pki_anchors: tuple[PKI, Path],
    key_prefix: str,
    redis_url: str,
    start_proxy: Any,
) -> None:
    """x5u fetched over HTTPS by the running proxy: the first signed call is
    forwarded as No-TN-Validation (certificate pending) while the fetch runs,
    the next is TN-Validation-Passed; verstat is added to the P-Asserted-Identity
    (or the From when there is none) and one sent from upstream is replaced."""
    pki, anchors = pki_anchors
    tls = tls_files(tmp_path)
    srv, hits = _https_server(tls, pki.chain)
    x5u = f"https://127.0.0.1:{srv.server_address[1]}/sti/signer.pem"
    shaken = {
        "enabled": True,
        "trust_anchors": str(anchors),
        "fetch": True,
        "fetch_hosts": ["127.0.0.1"],
        "fetch_ca": tls[0],
        "add_verstat": True,
    }
    pai = (
        f"P-Asserted-Identity: <sip:{CALLER};verstat=TN-Validation-Passed@10.9.9.9;user=phone>\r\n"
    )

    def signed(n: int) -> bytes:
        tok = passport(pki.signer_key, orig=CALLER[1:], iat=int(time.time()), x5u=x5u)
        return _invite(lport, proxy.port, n, identity(tok, x5u=x5u), pai)

    def forwarded(msg: bytes) -> bytes:
        ua.sendto(msg, ("127.0.0.1", proxy.port))
        got = _recv(ss, 5.0)
        assert got is not None and got.startswith(b"INVITE "), got
        return got

    try:
        with udp_recorder() as (ss, ss_port):
            proxy = start_proxy(ss_port, redis_url, key_prefix, sections={"shaken": shaken})
            ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ua.bind(("127.0.0.1", 0))
            lport = ua.getsockname()[1]
            try:
                first = forwarded(signed(1))
                want = f"<sip:{CALLER};verstat=No-TN-Validation@10.9.9.9;user=phone>"
                assert f"P-Asserted-Identity: {want}".encode() in first, first
                assert first.count(b"verstat") == 1
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if proxy.metric("sipscreen_shaken_cert_fetches_total", result="fetched"):
                        break
                    time.sleep(0.05)
                second = forwarded(signed(2))
                want = f"<sip:{CALLER};verstat=TN-Validation-Passed@10.9.9.9;user=phone>"
                assert f"P-Asserted-Identity: {want}".encode() in second, second
                assert second.count(b"verstat") == 1
                # no PAI: the From gets it
                third = forwarded(_invite(lport, proxy.port, 3, None))
                assert (
                    f"From: <sip:{CALLER};verstat=No-TN-Validation@127.0.0.1:{lport}>".encode()
                    in third
                ), third
            finally:
                ua.close()
            assert hits == ["/sti/signer.pem"]
            assert proxy.metric("sipscreen_shaken_results_total", result="cert_pending") == 1
            assert proxy.metric("sipscreen_shaken_results_total", result="passed", attest="A") == 1
            assert proxy.stop() == 0
    finally:
        srv.shutdown()
        srv.server_close()
    r = redis.Redis.from_url(redis_url)
    assert r.get(cert_key(key_prefix, x5u)) == pki.chain
    r.close()


def test_k4_notice_matches_the_signer_through_a_clean_trunk(
    sti: tuple[PKI, dict[str, Any]], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """Provider pz (OCN 1234, the PKI's SPC) has a k4 notice in force; its call
    reaches us through the clean trunk of provider 'clean': the verified
    signature names pz, and the notice blocks the call, recorded as matched by
    signature. The same call unsigned passes."""
    pki, shaken = sti
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.hset(key_prefix + "provider:clean", mapping={"name": "Clean", "rmd_status": "listed"})
    r.hset(
        key_prefix + "provider:pz",
        mapping={"name": "PZ", "rmd_status": "listed", "ocns": pki.spc},
    )
    r.hset(
        key_prefix + "notice:k4-pz",
        mapping={
            "kind": "k4",
            "provider": "pz",
            "issued": "2025-01-02T15:00:00Z",
            "fcc_notified": "2025-01-10T15:00:00Z",
        },
    )
    with udp_recorder() as (ss, ss_port):
        proxy = start_proxy(
            ss_port,
            redis_url,
            key_prefix,
            sections={"shaken": shaken},
            trunks=[{"cidr": "127.0.0.0/8", "provider": "clean"}],
        )
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]
        try:
            ident = identity(passport(pki.signer_key, orig=CALLER[1:], iat=int(time.time())))
            signed = _invite(lport, proxy.port, 1, ident)
            ua.sendto(signed, ("127.0.0.1", proxy.port))
            call_id = next(x for x in signed.split(b"\r\n") if x.startswith(b"Call-ID:"))
            got = _final(ua, call_id)
            assert got is not None and got.startswith(b"SIP/2.0 6"), got
            unsigned = _invite(lport, proxy.port, 2, None)
            ua.sendto(unsigned, ("127.0.0.1", proxy.port))
            fwd = _recv(ss, 5.0)
            assert fwd is not None and fwd.startswith(b"INVITE "), fwd
        finally:
            ua.close()
        assert (
            proxy.metric(
                "sipscreen_invites_total",
                verdict="blocked",
                rule="notice_k4",
                citation="47 CFR 64.1200(k)(4)",
            )
            == 1
        )
        for outcome in ("A", "unsigned"):
            got = proxy.metric(
                "sipscreen_shaken_provider_calls_total", provider="clean", outcome=outcome
            )
            assert got == 1, outcome
        # the per-provider counts reach Redis (flushed every few seconds)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not r.hgetall(key_prefix + "shaken:seen:clean"):
            time.sleep(0.1)
        seen = r.hgetall(key_prefix + "shaken:seen:clean")
        assert (seen.get("A"), seen.get("unsigned")) == ("1", "1"), seen
        assert proxy.stop() == 0
    deadline = time.monotonic() + 5
    recs: list[Any] = []
    while time.monotonic() < deadline and not recs:
        recs = [x[1] for x in r.xrange(key_prefix + "records") if x[1].get("action") == "reject"]
        time.sleep(0.05)
    r.close()
    assert len(recs) == 1, recs
    rec = recs[0]
    assert rec["rule"] == "notice_k4" and rec["matched_by"] == "signature"
    assert rec["provider"] == "clean" and rec["ocn"] == pki.spc
    assert "matched by signature" in rec["reason"] and "provider 'clean'" in rec["reason"]


def _forwarded(ss: socket.socket, call_id: bytes, timeout: float = 5.0) -> bytes | None:
    """The INVITE the proxy forwarded to the softswitch for call_id."""
    return _first(ss, lambda g: g.startswith(b"INVITE ") and call_id in g, timeout)


def test_mark_forwards_with_our_mark_and_strips_forged_ones(
    sti: tuple[PKI, dict[str, Any]], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    pki, base = sti
    shaken = {**base, "unsigned": "mark", "failed": "mark"}
    forged = "X-Sipscreen-Mark: shaken-policy;case=none\r\nx-sipscreen-mark: ok\r\n"
    with udp_recorder() as (ss, ss_port):
        proxy = start_proxy(ss_port, redis_url, key_prefix, sections={"shaken": shaken})
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]

        def send(n: int, ident: bytes | None) -> bytes:
            msg = _invite(lport, proxy.port, n, ident, extra=forged)
            ua.sendto(msg, ("127.0.0.1", proxy.port))
            call_id = next(x for x in msg.split(b"\r\n") if x.startswith(b"Call-ID:"))
            fwd = _forwarded(ss, call_id)
            assert fwd is not None, f"call {n} not forwarded"
            return fwd

        try:
            # unsigned: marked (a forged mark of the caller replaced by ours), not blocked
            fwd = send(1, None)
            assert fwd.lower().count(b"x-sipscreen-mark") == 1
            assert (
                b"X-Sipscreen-Mark: shaken-policy;case=unsigned;verstat=No-TN-Validation\r\n" in fwd
            )
            # verified A: no mark at all (the forged ones stripped)
            good = identity(passport(pki.signer_key, orig=CALLER[1:], iat=int(time.time())))
            fwd = send(2, good)
            assert b"sipscreen-mark" not in fwd.lower() and b"Identity: " + good in fwd
            # failed verification (orig.tn is not the caller): marked with the reason
            bad = identity(passport(pki.signer_key, orig="13015550000", iat=int(time.time())))
            fwd = send(3, bad)
            assert b"X-Sipscreen-Mark: shaken-policy;case=failed;reason=claims_mismatch;" in fwd
        finally:
            ua.close()
        assert proxy.metric("sipscreen_shaken_marked_total", case="unsigned") == 1
        assert proxy.metric("sipscreen_shaken_marked_total", case="failed") == 1
        allowed = {"verdict": "allowed", "rule": "shaken_policy", "citation": "operator policy"}
        # allowed calls are tallied and exported by the worker's periodic flush
        assert wait_for(lambda: proxy.metric("sipscreen_invites_total", **allowed) == 2)
        assert proxy.stop() == 0
