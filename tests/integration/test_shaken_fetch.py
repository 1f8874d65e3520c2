"""proxy/certfetch.py: x5u certificates fetched over HTTPS in the background.

A real HTTPS server on 127.0.0.1 (its TLS CA and certificate generated in the
test), a real Redis (unique key prefix), the STI PKI of tests/unit/shaken_pki.
The INVITE path (``CertFetcher.get`` under ``Verifier.verify``) never waits:
a first call is "certificate pending" and starts the fetch, the next verifies.
The clock of the fetcher is the test's, so backoff is checked without sleeping.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from proxy.certfetch import CertFetcher, cert_key
from proxy.config import ShakenSpec
from proxy.metrics import Metrics
from rules.shaken import Verifier
from tests.unit.shaken_pki import NOW, PKI, identity, passport, tls_files

CALLER = "+12127360123"
CALLEE = "+13125557000"


@dataclass
class Server:
    """HTTPS on 127.0.0.1: path -> (status, headers, body, delay s)."""

    routes: dict[str, tuple[int, str, bytes, float]]
    hits: list[str] = field(default_factory=list)
    port: int = 0
    connections: int = 0

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await r.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            self.hits.append(path)
            status, hdrs, body, delay = self.routes.get(path, (404, "", b"", 0.0))
            if delay:
                await asyncio.sleep(delay)
            w.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{hdrs}"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await w.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            w.close()


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[str, str, str]:
    return tls_files(tmp_path)


def _run(
    tls: tuple[str, str, str],
    routes: dict[str, tuple[int, str, bytes, float]],
    body: Callable[[Server], Awaitable[None]],
) -> Server:
    srv = Server(routes)

    async def main() -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls[1], tls[2])
        server = await asyncio.start_server(srv.handle, "127.0.0.1", 0, ssl=ctx)
        srv.port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(body(srv), 30)
        finally:
            server.close()

    asyncio.run(main())
    return srv


class Clock:
    def __init__(self) -> None:
        self.t = float(NOW)

    def __call__(self) -> float:
        return self.t


def _fetcher(
    tls: tuple[str, str, str], redis_url: str | None, prefix: str, clock: Clock, **kw: Any
) -> tuple[CertFetcher, Metrics]:
    # the test's repository is on loopback: named in fetch_hosts, as an operator
    # names a repository of their own network (certfetch.public_address)
    kw.setdefault("fetch_hosts", ("127.0.0.1",))
    spec = replace(ShakenSpec(trust_anchors="-"), fetch=True, fetch_ca=tls[0], **kw)
    m = Metrics()
    f = CertFetcher(
        spec,
        redis_url=redis_url,
        prefix=prefix,
        counters=m.shaken_cert_fetch_children,
        clock=clock,
    )
    return f, m


def _count(m: Metrics, result: str) -> float:
    v: float = m.shaken_cert_fetch_children[result]._value.get()
    return v


def _check(v: Verifier, pki: PKI, x5u: str) -> Any:
    hdr = identity(passport(pki.signer_key, x5u=x5u), x5u=x5u)
    return v.verify([hdr], CALLER, CALLEE, NOW)


def test_pending_then_fetched_then_verified_and_shared_through_redis(
    pki: PKI, tls: tuple[str, str, str], redis_url: str, key_prefix: str
) -> None:
    clock = Clock()
    fa, ma = _fetcher(tls, redis_url, key_prefix, clock, cert_ttl_max_s=600)
    fb, mb = _fetcher(tls, redis_url, key_prefix, clock)
    routes = {"/signer.pem": (200, "Cache-Control: max-age=300\r\n", pki.chain, 0.0)}
    out: dict[str, Any] = {}

    async def body(srv: Server) -> None:
        x5u = f"https://127.0.0.1:{srv.port}/signer.pem"
        out["x5u"] = x5u
        va = Verifier(pki.anchors, fa.get)
        first = _check(va, pki, x5u)
        out["first"] = (first.verstat, first.reason)
        await fa.idle()
        second = _check(va, pki, x5u)
        out["second"] = (second.verstat, second.reason, second.ocn)
        # A second worker (another fetcher, same prefix): Redis, not HTTPS.
        vb = Verifier(pki.anchors, fb.get)
        assert _check(vb, pki, x5u).reason == "cert_pending"
        await fb.idle()
        third = _check(vb, pki, x5u)
        out["third"] = (third.verstat, third.reason)
        await fa.close()
        await fb.close()

    srv = _run(tls, routes, body)
    assert out["first"] == ("No-TN-Validation", "cert_pending")
    assert out["second"] == ("TN-Validation-Passed", "", "1234")
    assert out["third"] == ("TN-Validation-Passed", "")
    assert srv.hits == ["/signer.pem"]  # one fetch for both workers
    assert _count(ma, "fetched") == 1 and _count(mb, "redis") == 1
    assert _count(mb, "fetched") == 0
    r = redis.Redis.from_url(redis_url)
    key = cert_key(key_prefix, out["x5u"])
    assert r.get(key) == pki.chain
    assert 0 < r.ttl(key) <= 300  # the max-age, within the bounds
    r.close()


def test_refresh_after_the_cache_lifetime(
    pki: PKI, tls: tuple[str, str, str], key_prefix: str
) -> None:
    clock = Clock()
    f, m = _fetcher(tls, None, key_prefix, clock, cert_ttl_min_s=60)
    routes = {"/s.pem": (200, "Cache-Control: max-age=5\r\n", pki.chain, 0.0)}

    async def body(srv: Server) -> None:
        x5u = f"https://127.0.0.1:{srv.port}/s.pem"
        assert f.get(x5u) is None
        await f.idle()
        assert f.get(x5u) == pki.chain
        clock.t += 30  # max-age 5 raised to the 60 s minimum: still fresh
        f.get(x5u)
        await f.idle()
        assert len(srv.hits) == 1
        clock.t += 31  # past it: served stale while the refresh runs
        assert f.get(x5u) == pki.chain
        await f.idle()
        await f.close()

    srv = _run(tls, routes, body)
    assert srv.hits == ["/s.pem", "/s.pem"]
    assert _count(m, "fetched") == 2


@pytest.mark.parametrize(
    ("route", "kw", "result"),
    [
        ((200, "", b"", 3.0), {"fetch_timeout_s": 0.3}, "timeout"),
        ((200, "", b"-----BEGIN CERTIFICATE-----\n" + b"A" * 70000, 0.0), {}, "too_large"),
        ((404, "", b"", 0.0), {}, "http_error"),
        ((200, "", b"not a certificate", 0.0), {}, "bad_cert"),
    ],
)
def test_fetch_failures_stay_pending_and_are_counted(
    pki: PKI,
    tls: tuple[str, str, str],
    key_prefix: str,
    route: tuple[int, str, bytes, float],
    kw: dict[str, Any],
    result: str,
) -> None:
    clock = Clock()
    f, m = _fetcher(tls, None, key_prefix, clock, **kw)
    out: list[str] = []

    async def body(srv: Server) -> None:
        x5u = f"https://127.0.0.1:{srv.port}/c.pem"
        v = Verifier(pki.anchors, f.get)
        out.append(_check(v, pki, x5u).reason)
        await f.idle()
        out.append(_check(v, pki, x5u).reason)
        await f.close()

    _run(tls, {"/c.pem": route}, body)
    assert out == ["cert_pending", "cert_pending"]
    assert _count(m, result) == 1
    assert _count(m, "fetched") == 0


def test_oversized_content_length_refused_before_reading(
    tls: tuple[str, str, str], key_prefix: str
) -> None:
    clock = Clock()
    f, m = _fetcher(tls, None, key_prefix, clock, fetch_max_bytes=2048)

    async def body(srv: Server) -> None:
        assert f.get(f"https://127.0.0.1:{srv.port}/big") is None
        await f.idle()
        await f.close()

    _run(tls, {"/big": (200, "", b"x" * 4096, 0.0)}, body)
    assert _count(m, "too_large") == 1


def test_host_not_allowed_is_never_fetched(
    pki: PKI, tls: tuple[str, str, str], key_prefix: str
) -> None:
    clock = Clock()
    f, m = _fetcher(tls, None, key_prefix, clock, fetch_hosts=("certs.example.org",))

    async def body(srv: Server) -> None:
        assert f.get(f"https://127.0.0.1:{srv.port}/signer.pem") is None
        assert f.get("http://certs.example.org/signer.pem") is None  # not https
        await f.idle()
        await f.close()

    srv = _run(tls, {"/signer.pem": (200, "", pki.chain, 0.0)}, body)
    assert srv.hits == []
    assert _count(m, "host_not_allowed") == 2


def test_failures_are_backed_off(pki: PKI, tls: tuple[str, str, str], key_prefix: str) -> None:
    clock = Clock()
    f, m = _fetcher(tls, None, key_prefix, clock, fetch_backoff_s=10.0, fetch_backoff_max_s=15.0)
    routes: dict[str, tuple[int, str, bytes, float]] = {}

    async def body(srv: Server) -> None:
        x5u = f"https://127.0.0.1:{srv.port}/flaky.pem"
        f.get(x5u)
        await f.idle()  # 404: failure 1, next try after 10 s
        f.get(x5u)
        f.get(x5u)
        await f.idle()
        assert len(srv.hits) == 1
        clock.t += 11
        f.get(x5u)
        await f.idle()  # failure 2: 20 s, bounded to 15
        assert len(srv.hits) == 2
        clock.t += 14
        f.get(x5u)
        await f.idle()
        assert len(srv.hits) == 2
        clock.t += 2
        routes["/flaky.pem"] = (200, "", pki.chain, 0.0)
        f.get(x5u)
        await f.idle()
        assert f.get(x5u) == pki.chain
        await f.close()

    srv = _run(tls, routes, body)
    assert len(srv.hits) == 3
    assert _count(m, "http_error") == 2
    assert _count(m, "backoff") == 3
    assert _count(m, "fetched") == 1


def test_untrusted_https_server_is_an_error(
    pki: PKI, tls: tuple[str, str, str], tmp_path: Path, key_prefix: str
) -> None:
    sub = tmp_path / "other"
    sub.mkdir()
    other = tls_files(sub)
    clock = Clock()
    f, m = _fetcher(other, None, key_prefix, clock)  # trusts another CA

    async def body(srv: Server) -> None:
        assert f.get(f"https://127.0.0.1:{srv.port}/signer.pem") is None
        await f.idle()
        await f.close()

    _run(tls, {"/signer.pem": (200, "", pki.chain, 0.0)}, body)
    assert _count(m, "error") == 1 and _count(m, "fetched") == 0


def test_a_reloaded_fetcher_keeps_what_was_fetched(
    pki: PKI, tls: tuple[str, str, str], redis_url: str, key_prefix: str
) -> None:
    """SIGHUP rebuilds the verifier: the new fetcher adopts the old one's cache
    (no call goes back to "certificate pending", no second fetch)."""
    clock = Clock()
    old, _ = _fetcher(tls, redis_url, key_prefix, clock)
    new, m = _fetcher(tls, redis_url, key_prefix, clock)
    routes = {"/signer.pem": (200, "", pki.chain, 0.0)}

    async def body(srv: Server) -> None:
        x5u = f"https://127.0.0.1:{srv.port}/signer.pem"
        assert old.get(x5u) is None
        await old.idle()
        new.adopt(old)
        assert new.get(x5u) == pki.chain
        await new.idle()
        await new.close()

    srv = _run(tls, routes, body)
    assert srv.hits == ["/signer.pem"]
    assert _count(m, "redis") == 0 and _count(m, "fetched") == 0


def test_an_x5u_at_no_public_address_is_never_connected_to(key_prefix: str) -> None:
    """The caller writes the x5u. With fetch_hosts empty (any repository), one
    naming loopback, a private or link-local address (the cloud metadata
    service), or a name that resolves only to such, made every worker open a
    TLS connection there: a way into the carrier's own network for anyone who
    can send an INVITE. Refused now, with no connection made (a TCP listener
    counts them); a host named in fetch_hosts is still connected to wherever
    it is."""
    clock = Clock()
    tls = ("", "", "")
    f, m = _fetcher(tls, None, key_prefix, clock, fetch_hosts=(), fetch_timeout_s=2.0)
    named, mn = _fetcher(tls, None, key_prefix, clock, fetch_hosts=("localhost",))
    accepted: list[int] = []

    async def main() -> None:
        def count(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            accepted.append(1)
            w.close()  # no TLS here: a client that connects gets an error

        server = await asyncio.start_server(count, "127.0.0.1", 0)
        p = server.sockets[0].getsockname()[1]
        try:
            for x5u in (
                f"https://127.0.0.1:{p}/signer.pem",
                f"https://localhost:{p}/signer.pem",
                f"https://[::ffff:127.0.0.1]:{p}/signer.pem",
                f"https://[64:ff9b::7f00:1]:{p}/signer.pem",
                f"https://10.0.0.1:{p}/signer.pem",
                f"https://169.254.169.254:{p}/signer.pem",
            ):
                assert f.get(x5u) is None
            await f.idle()
            await f.close()
            assert accepted == []
            assert named.get(f"https://localhost:{p}/signer.pem") is None
            await named.idle()
            await named.close()
            assert accepted == [1]
        finally:
            server.close()

    asyncio.run(main())
    assert _count(m, "host_not_allowed") == 6
    assert _count(m, "error") == 0
    assert _count(mn, "error") == 1 and _count(mn, "host_not_allowed") == 0


def test_public_address() -> None:
    from proxy.certfetch import public_address

    for ip in ("8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "::ffff:8.8.8.8"):
        assert public_address(ip), ip
    for ip in (
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "not-an-address",
    ):
        assert not public_address(ip), ip
