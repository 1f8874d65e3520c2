"""Issue 14, live: TLS callers named by their client certificate, and TLS
towards the softswitch.

The proxy runs as a subprocess with a ``tls:`` listener, ``tls_client_ca`` and
``tls_verify_client``; a raw UDP socket plays the softswitch. A caller whose
verified certificate names a trunk (``[[trunk]] tls_subject``, its subject or
a SAN DNS name) is that trunk's provider, before the source-address map; the
provider is found once at the handshake and travels with a message handed to
another worker. With ``required``, a connection without a certificate is
refused (``sipscreen_tcp_refused_total{reason="tls_client_cert"}``), and a
certificate from another CA fails the handshake in both modes.

With ``softswitch = "tls:HOST:PORT"`` a Python TLS server plays the
softswitch: a full call (INVITE/200/ACK, its BYE on the connection the proxy
opened), a ``sips:`` Record-Route entry facing it; its certificate is
verified against ``tls_ca`` (one from another CA: nothing is sent).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import unstamped

from proxy.config import ConfigError, cert_names, load_config
from proxy.sip.message import Request, parse

pytest.importorskip("cryptography")

CALLEE = "+13125557000"
CALLER = "+12127368000"


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(d: Path, name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subj = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subj)
        .issuer_name(subj)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(d: Path, ca: tuple[Any, Any], stem: str, cn: str, dns: list[str]) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca[1], hashes.SHA256())
    )
    (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}.key").write_bytes(_pem_key(key))
    return {"cert": str(d / f"{stem}.pem"), "key": str(d / f"{stem}.key")}


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = _ca(tmp_path, "trunk-ca")
    rogue = _ca(tmp_path, "rogue-ca")
    return {
        "ca": str(tmp_path / "trunk-ca.pem"),
        "server": _leaf(tmp_path, ca, "server", "127.0.0.1", []),
        "carrier_a": _leaf(tmp_path, ca, "carrier-a", "carrier-a.example", []),
        "carrier_b": _leaf(tmp_path, ca, "carrier-b", "edge1", ["sbc.carrier-b.example"]),
        "other": _leaf(tmp_path, ca, "other", "somebody.example", []),
        "rogue": _leaf(tmp_path, rogue, "rogue", "carrier-a.example", []),
    }


def _invite(port: int, call_id: bytes, branch: bytes) -> bytes:
    return (
        b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 127.0.0.1:5999;rport;branch=z9hG4bK-%s\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:%s@127.0.0.1>;tag=caller1\r\n"
        b"To: <sip:%s@127.0.0.1>\r\n"
        b"Call-ID: %s\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@127.0.0.1:5999;transport=tls>\r\n"
        b"Content-Length: 0\r\n\r\n"
    ) % (CALLEE.encode(), port, branch, CALLER.encode(), CALLEE.encode(), call_id)


def _client(pki: dict[str, Any], who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if who is not None:
        ctx.load_cert_chain(pki[who]["cert"], pki[who]["key"])
    return ctx


def _providers(redis_client: Any, key_prefix: str, call_ids: list[str]) -> dict[str, str]:
    got: dict[str, str] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(got) < len(call_ids):
        for _id, rec in redis_client.xrange(key_prefix + "records"):
            if rec.get("call_id") in call_ids:
                got[rec["call_id"]] = rec.get("provider", "")
        time.sleep(0.1)
    return got


def _tls_listening_proxy(
    start_proxy: Any,
    pki: dict[str, Any],
    ss_port: int,
    tls: dict[str, Any],
    *args: Any,
    softswitch_tls: int | None = None,
    **kw: Any,
) -> tuple[Any, int]:
    """The proxy with our server certificate and ``tls`` (more [proxy] keys),
    listening on TLS too (a free port, returned); ``softswitch_tls``: the
    softswitch is reached over TLS on that port. ``args``/``kw`` go to
    start_proxy (redis_url, key_prefix, workers, ...)."""
    from sipscreen_testlib import free_tcp_port

    tport = free_tcp_port()
    sections = kw.pop("sections", {})
    proxy_section = {"tls_cert": pki["server"]["cert"], "tls_key": pki["server"]["key"], **tls}
    proxy = start_proxy(
        1 if softswitch_tls else ss_port,
        *args,
        sections={"proxy": proxy_section, **sections},
        start=False,
        **kw,
    )
    cfg = proxy.config_path
    text = cfg.read_text()
    if softswitch_tls:
        text = text.replace('"udp:127.0.0.1:1"', f'"tls:127.0.0.1:{softswitch_tls}"', 1)
    udp = f'"udp:127.0.0.1:{proxy.port}"'
    cfg.write_text(text.replace(udp, f'{udp}, "tls:127.0.0.1:{tport}"', 1))
    proxy.start()
    return proxy, tport


def _proxy(
    start_proxy: Any,
    pki: dict[str, Any],
    key_prefix: str,
    redis_url: str,
    ss_port: int,
    mode: str,
    workers: int = 1,
) -> tuple[Any, int]:
    return _tls_listening_proxy(
        start_proxy,
        pki,
        ss_port,
        {"tls_client_ca": pki["ca"], "tls_verify_client": mode},
        redis_url,
        key_prefix,
        workers=workers,
        sections={"records": {"sample_allowed": 1.0}},
        trunks=[
            {"tls_subject": "CN=carrier-a.example", "provider": "carrier-a"},
            {"tls_subject": "sbc.carrier-b.example", "provider": "carrier-b"},
            {"cidr": "127.0.0.1/32", "provider": "by-address"},
        ],
    )


def _call(pki: dict[str, Any], who: str | None, tport: int, n: int = 1) -> list[str]:
    """``n`` INVITEs over one TLS connection presenting ``who``'s certificate."""
    ids = []
    raw = socket.create_connection(("127.0.0.1", tport), timeout=5)
    with _client(pki, who).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        for _ in range(n):
            cid = uuid.uuid4().hex
            conn.sendall(_invite(tport, cid.encode(), uuid.uuid4().hex[:12].encode()))
            ids.append(cid)
        time.sleep(0.3)
    return ids


@pytest.mark.parametrize("workers", [1, 2])
def test_tls_trunk_named_by_certificate(
    workers: int,
    pki: dict[str, Any],
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
) -> None:
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    try:
        proxy, tport = _proxy(
            start_proxy, pki, key_prefix, redis_url, ss.getsockname()[1], "optional", workers
        )
        # several INVITEs per connection: with two workers some are handed over
        a = _call(pki, "carrier_a", tport, 6)
        b = _call(pki, "carrier_b", tport, 2)
        other = _call(pki, "other", tport, 2)
        none = _call(pki, None, tport, 2)  # optional: no certificate is fine
        ss.settimeout(5)
        seen = 0
        while seen < 12:
            try:
                msg = parse(ss.recvfrom(65535)[0])
            except TimeoutError:
                m = "\n".join(
                    x
                    for x in proxy.metrics_text().splitlines()
                    if "_total" in x and not x.endswith(" 0.0")
                )
                raise AssertionError(f"{seen} INVITEs forwarded:\n{m}") from None
            assert isinstance(msg, Request) and msg.method == b"INVITE"
            seen += 1
        got = _providers(redis_client, key_prefix, a + b + other + none)
        assert {got.get(c) for c in a} == {"carrier-a"}, got
        assert {got.get(c) for c in b} == {"carrier-b"}, got  # by a SAN DNS name
        assert {got.get(c) for c in other + none} == {"by-address"}, got

        # a certificate from another CA (same CN) fails the handshake
        raw = socket.create_connection(("127.0.0.1", tport), timeout=5)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with _client(pki, "rogue").wrap_socket(raw, server_hostname="127.0.0.1") as c:
                c.sendall(_invite(tport, b"rogue", b"rogue1"))
                if not c.recv(1):  # TLS 1.3: the alert arrives after the handshake
                    raise ConnectionError("closed")
        raw.close()
    finally:
        ss.close()


def test_tls_required_refuses_a_caller_without_certificate(
    pki: dict[str, Any], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    try:
        proxy, tport = _proxy(
            start_proxy, pki, key_prefix, redis_url, ss.getsockname()[1], "required"
        )
        raw = socket.create_connection(("127.0.0.1", tport), timeout=5)
        with _client(pki, None).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            try:
                conn.sendall(_invite(tport, b"nocert", b"nocert1"))
                assert conn.recv(1) == b""  # closed
            except (ssl.SSLError, ConnectionError):
                pass
        ss.settimeout(0.5)
        with pytest.raises(TimeoutError):
            ss.recvfrom(65535)  # nothing reached the softswitch
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proxy.metric("sipscreen_tcp_refused_total", reason="tls_client_cert") == 1:
                break
            time.sleep(0.2)
        assert proxy.metric("sipscreen_tcp_refused_total", reason="tls_client_cert") == 1
        assert "no client certificate" in proxy.stderr() + proxy.stdout()
        # with a certificate the call goes through
        _call(pki, "carrier_a", tport)
        ss.settimeout(5)
        msg = parse(ss.recvfrom(65535)[0])
        assert isinstance(msg, Request) and msg.method == b"INVITE"
    finally:
        ss.close()


def test_tls_trunk_config(tmp_path: Path, pki: dict[str, Any]) -> None:
    base = (
        '[proxy]\nlisten = ["udp:127.0.0.1:5060", "tls:127.0.0.1:5061"]\n'
        f'tls_cert = "{pki["server"]["cert"]}"\ntls_key = "{pki["server"]["key"]}"\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        base + f'tls_client_ca = "{pki["ca"]}"\ntls_verify_client = "required"\n'
        '[[trunk]]\ntls_subject = "cn=Carrier-A.example"\nprovider = "a"\n'
        '[[trunk]]\ntls_subject = "SBC.Carrier-B.example."\nprovider = "b"\n'
    )
    c = load_config(str(cfg))
    assert c.tls_trunks == (("CN=Carrier-A.example", "a"), ("sbc.carrier-b.example", "b"))
    cfg.write_text(base + 'tls_verify_client = "sometimes"\n')
    with pytest.raises(ConfigError, match="proxy.tls_verify_client: must be one of"):
        load_config(str(cfg))
    cfg.write_text(base + 'tls_verify_client = "optional"\n')
    with pytest.raises(ConfigError, match="proxy.tls_client_ca: required"):
        load_config(str(cfg))
    cfg.write_text(base + '[[trunk]]\ntls_subject = "CN=x"\nprovider = "x"\n')
    with pytest.raises(ConfigError, match="trunk.tls_subject: needs proxy.tls_verify_client"):
        load_config(str(cfg))
    cfg.write_text(base + '[[trunk]]\nprovider = "x"\n')
    with pytest.raises(ConfigError, match=r"trunk\[0\]: needs 'provider' and 'cidr' or"):
        load_config(str(cfg))
    cfg.write_text(base + '[[trunk]]\ntls_subject = "CN="\nprovider = "x"\n')
    with pytest.raises(ConfigError, match=r"trunk\[0\].tls_subject: not an ATTR=value"):
        load_config(str(cfg))
    cert = {
        "subject": ((("commonName", "edge1"),), (("organizationName", "B"),)),
        "subjectAltName": (("DNS", "SBC.carrier-b.example"), ("IP Address", "127.0.0.1")),
    }
    assert cert_names(cert) == ["CN=edge1,O=B", "CN=edge1", "O=B", "sbc.carrier-b.example"]


# --- TLS towards the softswitch ---------------------------------------------


def _tls_softswitch(pki: dict[str, Any], who: str) -> tuple[ssl.SSLContext, socket.socket]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki[who]["cert"], pki[who]["key"])
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(5)
    return ctx, lsock


def _reply(req: Request, status: int) -> bytes:
    from test_transports import _answer

    return _answer(req, status)


def _recv_tls(conn: ssl.SSLSocket, buf: bytearray) -> Any:
    from test_transports import _recv_tcp

    return parse(_recv_tcp(conn, buf))


def _ss_proxy(
    start_proxy: Any,
    pki: dict[str, Any],
    key_prefix: str,
    redis_url: str,
    ss_port: int,
    workers: int = 1,
) -> Any:
    return _tls_listening_proxy(
        start_proxy,
        pki,
        ss_port,
        {"tls_ca": pki["ca"]},
        redis_url,
        key_prefix,
        workers=workers,
        softswitch_tls=ss_port,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_full_call_to_a_tls_softswitch(
    workers: int, pki: dict[str, Any], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """A UDP caller, the softswitch over TLS: INVITE/200/ACK, then the callee's BYE
    on the connection the proxy opened; double Record-Route, sips: facing the
    softswitch (RFC 3261 §16.6 step 4, RFC 5630 §4.3)."""
    ctx, lsock = _tls_softswitch(pki, "server")
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    caller.settimeout(5)
    try:
        proxy, tport = _ss_proxy(
            start_proxy, pki, key_prefix, redis_url, lsock.getsockname()[1], workers
        )
        assert "forwarding to softswitch tls:" in proxy.stdout() + proxy.stderr()
        cport = caller.getsockname()[1]
        call_id = uuid.uuid4().hex.encode()
        invite = (
            b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-%s\r\n"
            b"Max-Forwards: 70\r\n"
            b"From: <sip:%s@127.0.0.1>;tag=caller1\r\n"
            b"To: <sip:%s@127.0.0.1>\r\n"
            b"Call-ID: %s\r\n"
            b"CSeq: 1 INVITE\r\n"
            b"Contact: <sip:alice@127.0.0.1:%d>\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (
            CALLEE.encode(),
            proxy.port,
            cport,
            call_id[:8],
            CALLER.encode(),
            CALLEE.encode(),
            call_id,
            cport,
        )
        caller.sendto(invite, ("127.0.0.1", proxy.port))
        raw, _ = lsock.accept()
        with ctx.wrap_socket(raw, server_side=True) as conn:
            buf = bytearray()
            fwd = _recv_tls(conn, buf)
            assert isinstance(fwd, Request) and fwd.method == b"INVITE"
            assert fwd.vias[0].transport == b"TLS"
            rr = fwd.header(b"record-route")
            assert [unstamped(e) for e in rr] == [
                b"<sips:127.0.0.1:%d;lr>" % tport,
                b"<sip:127.0.0.1:%d;lr>" % proxy.port,
            ], rr
            conn.sendall(_reply(fwd, 200))
            while True:
                ok = parse(caller.recvfrom(65535)[0])
                if not (hasattr(ok, "status") and ok.status < 200):
                    break
            assert ok.status == 200  # type: ignore[union-attr]
            ack = (
                b"ACK sip:bob@127.0.0.1 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-ack%s\r\n"
                b"Route: %s\r\n"
                b"Max-Forwards: 70\r\n"
                b"From: <sip:%s@127.0.0.1>;tag=caller1\r\n"
                b"To: <sip:%s@127.0.0.1>;tag=callee1\r\n"
                b"Call-ID: %s\r\n"
                b"CSeq: 1 ACK\r\n"
                b"Content-Length: 0\r\n\r\n"
            ) % (
                cport,
                call_id[:6],
                b", ".join(reversed(rr)),
                CALLER.encode(),
                CALLEE.encode(),
                call_id,
            )
            caller.sendto(ack, ("127.0.0.1", proxy.port))
            got = _recv_tls(conn, buf)
            assert isinstance(got, Request) and got.method == b"ACK"
            assert got.header(b"route") == []  # both our entries, sip: and sips:, removed
            # the callee hangs up: the softswitch's BYE on the same connection
            bye = (
                b"BYE sip:alice@127.0.0.1:%d SIP/2.0\r\n"
                b"Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-ssbye1\r\n"
                b"Route: %s\r\n"
                b"Max-Forwards: 70\r\n"
                b"From: <sip:%s@127.0.0.1>;tag=callee1\r\n"
                b"To: <sip:%s@127.0.0.1>;tag=caller1\r\n"
                b"Call-ID: %s\r\n"
                b"CSeq: 2 BYE\r\n"
                b"Content-Length: 0\r\n\r\n"
            ) % (
                cport,
                lsock.getsockname()[1],
                b", ".join(rr),
                CALLEE.encode(),
                CALLER.encode(),
                call_id,
            )
            conn.sendall(bye)
            got = parse(caller.recvfrom(65535)[0])
            assert isinstance(got, Request) and got.method == b"BYE"
            assert got.header(b"route") == []
            caller.sendto(_reply(got, 200), ("127.0.0.1", proxy.port))
            resp = _recv_tls(conn, buf)
            assert resp.status == 200 and resp.cseq == (2, b"BYE")
    finally:
        caller.close()
        lsock.close()


def test_a_udp_invite_without_content_length_is_framed_for_a_tls_softswitch(
    pki: dict[str, Any], key_prefix: str, redis_url: str, redis_client: Any, start_proxy: Any
) -> None:
    """RFC 3261 §18.3: over UDP a request may leave Content-Length out (its body is
    the rest of the datagram); on a stream it must carry it (§20.14). A caller's
    INVITE with none, whose body is a second INVITE from a blocked number, went
    to the TLS softswitch as it came: a stream reader ends that message at its
    headers and reads the body as a second request the screen never saw (this
    test's reader refused the stream outright). The forward carries the
    body's length now: the softswitch reads one INVITE, the other its body."""
    redis_client.sadd(key_prefix + "block:caller", "+12127369999")
    ctx, lsock = _tls_softswitch(pki, "server")
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    try:
        proxy, _tport = _ss_proxy(start_proxy, pki, key_prefix, redis_url, lsock.getsockname()[1])
        cport = caller.getsockname()[1]
        smuggled = (
            b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/TLS 127.0.0.1:%d;branch=z9hG4bK-smuggled\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:+12127369999@127.0.0.1>;tag=s1\r\n"
            b"To: <sip:%s@127.0.0.1>\r\nCall-ID: smuggled\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (CALLEE.encode(), proxy.port, cport, CALLEE.encode())
        invite = (
            b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-clean\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:%s@127.0.0.1>;tag=c1\r\n"
            b"To: <sip:%s@127.0.0.1>\r\nCall-ID: clean-no-length\r\nCSeq: 1 INVITE\r\n"
            b"Contact: <sip:alice@127.0.0.1:%d>\r\nContent-Type: message/sip\r\n\r\n"
        ) % (CALLEE.encode(), proxy.port, cport, CALLER.encode(), CALLEE.encode(), cport)
        caller.sendto(invite + smuggled, ("127.0.0.1", proxy.port))
        raw, _ = lsock.accept()
        with ctx.wrap_socket(raw, server_side=True) as conn:
            buf = bytearray()
            fwd = _recv_tls(conn, buf)
            assert isinstance(fwd, Request) and fwd.call_id == b"clean-no-length"
            assert fwd.content_length == len(smuggled) and fwd.body == smuggled
            conn.settimeout(0.5)
            with pytest.raises(TimeoutError):  # nothing after it on the stream
                conn.recv(65535)
            assert buf == b""
        assert proxy.metric("sipscreen_invites_total", verdict="allowed", rule="default") == 1
    finally:
        caller.close()
        lsock.close()


def test_tls_softswitch_with_an_unknown_certificate_is_not_sent_to(
    pki: dict[str, Any], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """The softswitch's certificate is verified against tls_ca: one from another CA
    fails the connection, counted (tcp_connect_failed) and logged; no INVITE leaves."""
    ctx, lsock = _tls_softswitch(pki, "rogue")
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    try:
        proxy, _ = _ss_proxy(start_proxy, pki, key_prefix, redis_url, lsock.getsockname()[1])
        cport = caller.getsockname()[1]
        invite = (
            b"INVITE sip:%s@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK-rogue1\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:%s@127.0.0.1>;tag=c1\r\n"
            b"To: <sip:%s@127.0.0.1>\r\nCall-ID: rogue-ss\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        ) % (CALLEE.encode(), cport, CALLER.encode(), CALLEE.encode())
        caller.sendto(invite, ("127.0.0.1", proxy.port))
        raw, _ = lsock.accept()
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(5)
                if not conn.recv(1):
                    raise ConnectionError("closed")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proxy.metric("sipscreen_dropped_total", reason="tcp_connect_failed") >= 1:
                break
            time.sleep(0.2)
        assert proxy.metric("sipscreen_dropped_total", reason="tcp_connect_failed") >= 1
        assert "certificate_verify_failed" in proxy.stderr() + proxy.stdout()
    finally:
        caller.close()
        lsock.close()


def test_softswitch_tls_config(tmp_path: Path, pki: dict[str, Any]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[proxy]\nlisten = ["udp:127.0.0.1:5060"]\nsoftswitch = "tls:127.0.0.1:5061"\n')
    with pytest.raises(ConfigError, match="proxy.softswitch: tls needs a tls: listen"):
        load_config(str(cfg))
    cfg.write_text('[proxy]\nsoftswitch = "tcp:127.0.0.1:5061"\n')
    with pytest.raises(ConfigError, match="proxy.softswitch: must be 'udp:HOST:PORT' or"):
        load_config(str(cfg))


# --- RFC 5923 connection reuse (;alias) ---------------------------------------


def _alias_proxy(
    start_proxy: Any,
    pki: dict[str, Any],
    key_prefix: str,
    redis_url: str,
    ss_port: int,
    workers: int,
) -> tuple[Any, int]:
    return _tls_listening_proxy(
        start_proxy,
        pki,
        ss_port,
        {
            "tls_client_ca": pki["ca"],
            "tls_verify_client": "optional",
            "tls_ca": pki["ca"],  # our own connections to a caller's address
        },
        redis_url,
        key_prefix,
        workers=workers,
        tcp=True,
    )


def _aliased_invite(kind: bytes, listen: int, port: int, call_id: bytes) -> bytes:
    return (
        b"INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"
        b"Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s;alias\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:%s@127.0.0.1>;tag=caller1\r\n"
        b"To: <sip:%s@127.0.0.1>\r\n"
        b"Call-ID: %s\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@127.0.0.1:%d;transport=%s>\r\n"
        b"Content-Length: 0\r\n\r\n"
    ) % (
        CALLEE.encode(),
        port,
        kind,
        listen,
        call_id[:10],
        CALLER.encode(),
        CALLEE.encode(),
        call_id,
        listen,
        kind.lower(),
    )


def _ss_bye(ss_port: int, listen: int, kind: bytes, call_id: bytes) -> bytes:
    """The softswitch's request to the caller's listening address (its Contact)."""
    return (
        b"BYE sip:alice@127.0.0.1:%d;transport=%s SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ssbye-%s\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:%s@127.0.0.1>;tag=callee1\r\n"
        b"To: <sip:%s@127.0.0.1>;tag=caller1\r\n"
        b"Call-ID: %s\r\n"
        b"CSeq: 2 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    ) % (listen, kind.lower(), ss_port, call_id[-10:], CALLEE.encode(), CALLER.encode(), call_id)


@pytest.mark.parametrize(
    ("case", "workers"),
    [("tls_mutual", 1), ("tls_mutual", 2), ("tls_no_client_cert", 1), ("tcp", 1)],
)
def test_alias_reuses_only_a_mutually_authenticated_tls_connection(
    case: str, workers: int, pki: dict[str, Any], key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """RFC 5923: a caller's ``;alias`` on a TLS connection whose client certificate
    was verified (tls_verify_client) registers that connection under its Via
    sent-by: the softswitch's BYE to that address comes back on it, nothing
    connects to the caller's listening port. Over plain TCP, or TLS without a
    client certificate, the alias is ignored (RFC 5923 §9): the proxy opens a
    connection to the listening port and sends the BYE there."""
    kind = b"TCP" if case == "tcp" else b"TLS"
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    ss.settimeout(5)
    ss_port = ss.getsockname()[1]
    lctx, lsock = _tls_softswitch(pki, "server")  # the caller's listening socket
    listen = lsock.getsockname()[1]
    try:
        proxy, tport = _alias_proxy(start_proxy, pki, key_prefix, redis_url, ss_port, workers)
        raw = socket.create_connection(
            ("127.0.0.1", tport if kind == b"TLS" else proxy.port), timeout=5
        )
        if kind == b"TLS":
            who = "server" if case == "tls_mutual" else None  # its SAN: IP 127.0.0.1
            conn: Any = _client(pki, who).wrap_socket(raw, server_hostname="127.0.0.1")
        else:
            conn = raw
        with conn:
            call_id = uuid.uuid4().hex.encode()
            conn.sendall(_aliased_invite(kind, listen, tport, call_id))
            fwd = parse(ss.recvfrom(65535)[0])
            assert isinstance(fwd, Request) and fwd.method == b"INVITE"
            assert b";alias" in fwd.raw  # the caller's Via goes on untouched
            if workers > 1:
                time.sleep(0.3)  # the other worker learns of the alias
            buf = bytearray()
            if case == "tls_mutual":
                # several requests (each lands on a worker at random: with two, some
                # on the one without the connection, relayed to the one holding it)
                for k in range(6 if workers > 1 else 1):
                    cid = call_id + b"-%d" % k
                    ss.sendto(_ss_bye(ss_port, listen, kind, cid), ("127.0.0.1", proxy.port))
                    got = parse(_recv_tcp_msg(conn, buf))
                    assert isinstance(got, Request) and got.method == b"BYE"
                    assert got.call_id == cid
                lsock.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    lsock.accept()  # no new connection to the caller's port
                return
            # the alias ignored: a new connection to the listening port carries it
            ss.sendto(_ss_bye(ss_port, listen, kind, call_id), ("127.0.0.1", proxy.port))
            new, _ = lsock.accept()
            sock = lctx.wrap_socket(new, server_side=True) if kind == b"TLS" else new
            with sock:
                got = parse(_recv_tcp_msg(sock, bytearray()))
                assert isinstance(got, Request) and got.method == b"BYE"
                assert got.call_id == call_id
            conn.settimeout(0.3)
            with pytest.raises((TimeoutError, ssl.SSLError)):
                if not conn.recv(1):
                    raise TimeoutError
    finally:
        ss.close()
        lsock.close()


def _recv_tcp_msg(conn: Any, buf: bytearray) -> bytes:
    from test_transports import _recv_tcp

    return _recv_tcp(conn, buf)  # type: ignore[no-any-return]
