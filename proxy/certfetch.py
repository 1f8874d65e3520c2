"""Background HTTPS fetch of STIR/SHAKEN certificates named by ``x5u`` (issue 11).

How this works: with ``[shaken] fetch = true`` the verifier's certificate
source is :meth:`CertFetcher.get`, one dict lookup on the INVITE path. It never
waits and never does I/O:

- a certificate in memory is returned (also once its cache lifetime is over:
  the refresh is started and the old copy serves until it lands);
- an ``x5u`` not in memory returns None (the verifier answers
  ``No-TN-Validation`` / ``cert_pending``) and a fetch task is started on the
  running loop; the next call from that signer verifies.

A fetch task first reads Redis ``<prefix>shaken:cert:<sha256 hex of the URL>``
(so every worker and every host shares one fetch; the key's remaining TTL is
the memory lifetime), else GETs the URL over HTTPS (stdlib
``asyncio.open_connection`` with TLS, HTTP/1.1, ``Connection: close``):
``fetch_timeout_s`` for the whole exchange, the body at most
``fetch_max_bytes``, status 200 only, a body that holds no certificate is
refused. The lifetime is ``Cache-Control: max-age`` (``no-store``/``no-cache``
= the minimum; absent = one hour), bounded by ``cert_ttl_min_s`` ..
``cert_ttl_max_s``; the certificate goes to memory and to Redis with that TTL.

Only ``https`` URLs whose host is in ``fetch_hosts`` (when not empty) are
fetched. The ``x5u`` is the caller's to write, so a host not named in
``fetch_hosts`` is reached only at a public address (``public_address``): one
that resolves only to loopback, private, link-local (169.254.169.254, the
cloud metadata service), shared, reserved or multicast addresses is refused
(``host_not_allowed``) and never connected to, and the connection goes to
the address that was checked, not to a second lookup (DNS rebinding).
Otherwise any caller could make every worker open connections into the
carrier's own network, at up to ``MAX_INFLIGHT`` at once, one per URL.

A failed fetch is backed off per URL: ``fetch_backoff_s`` doubled at
each failure up to ``fetch_backoff_max_s``; a refused host waits the maximum.
At most ``MAX_INFLIGHT`` fetches run at once. Every outcome is counted in
``sipscreen_shaken_cert_fetches_total{result}`` (:data:`RESULTS`). Redis
errors are logged and the HTTPS fetch goes ahead. On SIGHUP the new
fetcher adopts the previous one's cache, backoff and Redis client
(``adopt``, by proxy/shaken.py), so a reload sends no signer back to
"certificate pending".
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from proxy.config import ShakenSpec
from rules.shaken import load_certificates

__all__ = ["MAX_INFLIGHT", "RESULTS", "CertFetcher", "FetchError", "cert_key", "public_address"]

log = logging.getLogger("sipscreen.shaken")

MAX_INFLIGHT = 64
DEFAULT_TTL_S = 3600

# sipscreen_shaken_cert_fetches_total{result}: a closed set.
RESULTS = (
    "fetched",  # fetched over HTTPS, cached in memory and Redis
    "redis",  # found in Redis (another worker or host fetched it)
    "timeout",
    "too_large",
    "http_error",  # a status other than 200, or an unreadable response
    "bad_cert",  # the body holds no certificate
    "error",  # connect / TLS / I/O failure
    "host_not_allowed",  # not https, or the host is not in fetch_hosts
    "backoff",  # skipped: the URL failed recently
)

_MAX_AGE = re.compile(rb"(?:^|[,\s])max-age\s*=\s*\"?(\d+)", re.I)


class FetchError(Exception):
    def __init__(self, result: str, detail: str) -> None:
        super().__init__(detail)
        self.result = result


# RFC 6052: IPv6 addresses a NAT64 gateway turns into the IPv4 address in their
# last 32 bits
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def public_address(ip: str) -> bool:
    """``ip`` is an address a certificate repository on the Internet can have:
    global (not loopback, private, link-local, shared 100.64/10, reserved or
    documentation: ``ipaddress``'s ``is_global``) and not multicast; an IPv6
    address that stands for an IPv4 one (IPv4-mapped, NAT64) is judged by it."""
    try:
        a = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address):
        v4 = a.ipv4_mapped
        if v4 is None and a in _NAT64:
            v4 = ipaddress.IPv4Address(int(a) & 0xFFFFFFFF)
        if v4 is not None:
            a = v4
    return a.is_global and not a.is_multicast


def cert_key(prefix: str, x5u: str) -> str:
    """The Redis key of ``x5u``'s certificate."""
    return f"{prefix}shaken:cert:{hashlib.sha256(x5u.encode()).hexdigest()}"


def _lifetime(cache_control: bytes | None, lo: int, hi: int) -> int:
    if cache_control is None:
        ttl = DEFAULT_TTL_S
    elif re.search(rb"no-store|no-cache", cache_control, re.I):
        ttl = lo
    else:
        m = _MAX_AGE.search(cache_control)
        ttl = int(m.group(1)) if m else DEFAULT_TTL_S
    return max(lo, min(hi, ttl))


class CertFetcher:
    """x5u -> certificate bytes, fetched in the background (see module doc)."""

    def __init__(
        self,
        spec: ShakenSpec,
        *,
        redis_url: str | None = None,
        prefix: str = "",
        counters: Mapping[str, Any] | None = None,
        preload: Mapping[str, bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.prefix = prefix
        self._redis_url = redis_url
        self._redis: Any = None
        self._counters = counters or {}
        self._clock = clock
        self._max_entries = max(16, spec.cache_size)
        # x5u -> (certificate, expires); preloaded ones (the certs directory) never expire.
        self._mem: dict[str, tuple[bytes, float]] = {
            u: (d, float("inf")) for u, d in (preload or {}).items()
        }
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # x5u -> (consecutive failures, not before)
        self._backoff: dict[str, tuple[int, float]] = {}
        self._hosts = frozenset(spec.fetch_hosts)
        self._ssl: ssl.SSLContext | None = None

    def adopt(self, previous: CertFetcher) -> None:
        """Take over ``previous``'s cache, backoff and Redis client (a SIGHUP
        rebuilds the verifier: the certificates already held stay held, and
        ``previous``'s running fetches fill the same cache)."""
        if (previous.redis_url, previous.prefix) != (self.redis_url, self.prefix):
            return
        mem = previous._mem
        mem.update(self._mem)  # this configuration's preloaded certificates
        self._mem = mem
        self._backoff = previous._backoff
        self._redis = previous._redis

    @property
    def redis_url(self) -> str | None:
        return self._redis_url

    # -- the INVITE path (no I/O) ---------------------------------------------

    def get(self, x5u: str) -> bytes | None:
        ent = self._mem.get(x5u)
        if ent is not None:
            if ent[1] < self._clock():
                self._want(x5u)
            return ent[0]
        self._want(x5u)
        return None

    __call__ = get

    def _count(self, result: str) -> None:
        c = self._counters.get(result)
        if c is not None:
            c.inc()

    def _want(self, x5u: str) -> None:
        if x5u in self._inflight:
            return
        now = self._clock()
        b = self._backoff.get(x5u)
        if b is not None and b[1] > now:
            self._count("backoff")
            return
        if not self._allowed(x5u):
            self._count("host_not_allowed")
            self._fail(x5u, now, self.spec.fetch_backoff_max_s)
            return
        if len(self._inflight) >= MAX_INFLIGHT:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._inflight.add(x5u)
        task = loop.create_task(self._fetch(x5u))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _allowed(self, x5u: str) -> bool:
        try:
            u = urlsplit(x5u)
            host = u.hostname
        except ValueError:
            return False
        if u.scheme != "https" or not host:
            return False
        return not self._hosts or host.lower() in self._hosts

    def _fail(self, x5u: str, now: float, delay: float | None = None) -> None:
        n = self._backoff.get(x5u, (0, 0.0))[0] + 1
        if delay is None:
            delay = min(self.spec.fetch_backoff_s * 2 ** (n - 1), self.spec.fetch_backoff_max_s)
        self._backoff[x5u] = (n, now + delay)
        if len(self._backoff) > self._max_entries:
            del self._backoff[next(iter(self._backoff))]

    def _keep(self, x5u: str, data: bytes, ttl: float) -> None:
        self._mem.pop(x5u, None)
        self._mem[x5u] = (data, self._clock() + ttl)
        if len(self._mem) > self._max_entries:
            del self._mem[next(iter(self._mem))]
        self._backoff.pop(x5u, None)

    # -- the background side ------------------------------------------------------

    async def idle(self) -> None:
        """Wait until no fetch is running (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await self.idle()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _client(self) -> Any:
        if self._redis is None and self._redis_url:
            import redis.asyncio as aioredis

            t = self.spec.fetch_timeout_s
            self._redis = aioredis.Redis.from_url(
                self._redis_url, socket_timeout=t, socket_connect_timeout=t
            )
        return self._redis

    async def _fetch(self, x5u: str) -> None:
        try:
            r = self._client()
            key = cert_key(self.prefix, x5u)
            if r is not None:
                try:
                    async with r.pipeline(transaction=False) as p:
                        data, pttl = await p.get(key).pttl(key).execute()
                    if data and load_certificates(data):
                        self._keep(x5u, data, max(pttl, 1000) / 1000.0)
                        self._count("redis")
                        return
                except Exception as exc:  # Redis down or a bad value: fetch it
                    log.warning("shaken: Redis read of %s failed: %s", key, exc)
            try:
                async with asyncio.timeout(self.spec.fetch_timeout_s):  # not wait_for (writer.py)
                    data, ttl = await self._https(x5u)
            except TimeoutError:
                raise FetchError("timeout", "timed out") from None
            try:
                load_certificates(data)
            except ValueError:
                raise FetchError("bad_cert", "no certificate in the body") from None
            self._keep(x5u, data, ttl)
            self._count("fetched")
            if r is not None:
                try:
                    await r.set(key, data, ex=ttl)
                except Exception as exc:
                    log.warning("shaken: Redis write of %s failed: %s", key, exc)
        except FetchError as exc:
            log.warning("shaken: fetch of %s failed: %s (%s)", x5u, exc.result, exc)
            self._count(exc.result)
            self._fail(x5u, self._clock())
        except Exception as exc:  # never let a task die silently
            log.warning("shaken: fetch of %s failed: %s", x5u, exc)
            self._count("error")
            self._fail(x5u, self._clock())
        finally:
            self._inflight.discard(x5u)

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.spec.fetch_ca)
        return self._ssl

    async def _https(self, x5u: str) -> tuple[bytes, int]:
        """GET ``x5u`` -> (body, lifetime s); FetchError otherwise."""
        u = urlsplit(x5u)
        host = u.hostname or ""
        port = u.port or 443
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        limit = self.spec.fetch_max_bytes
        reader, writer = await self._connect(host, port, limit + 8192)
        try:
            hosthdr = host if port == 443 else f"{host}:{port}"
            writer.write(
                f"GET {target} HTTP/1.1\r\nHost: {hosthdr}\r\n"
                "Accept: application/pem-certificate-chain, application/pkix-cert\r\n"
                "User-Agent: sipscreen\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise FetchError("too_large", "response head over the limit") from None
            except asyncio.IncompleteReadError:
                raise FetchError("http_error", "connection closed before the head") from None
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)
            if len(status) < 2 or not status[0].startswith(b"HTTP/1."):
                raise FetchError("http_error", "not an HTTP/1.x response")
            if status[1] != b"200":
                raise FetchError("http_error", f"status {status[1].decode(errors='replace')}")
            hdrs: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if sep:
                    hdrs[name.strip().lower()] = value.strip()
            body = await self._body(reader, hdrs, limit)
            ttl = _lifetime(
                hdrs.get(b"cache-control"), self.spec.cert_ttl_min_s, self.spec.cert_ttl_max_s
            )
            return body, ttl
        except (OSError, ssl.SSLError) as exc:
            raise FetchError("error", f"read: {exc}") from None
        finally:
            writer.close()

    async def _connect(
        self, host: str, port: int, limit: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to ``host`` (verified as ``host``) at the first of
        ``_addresses`` that answers."""
        failed: BaseException | None = None
        for addr in await self._addresses(host, port):
            try:
                return await asyncio.open_connection(
                    addr, port, ssl=self._context(), server_hostname=host, limit=limit
                )
            except (OSError, ssl.SSLError) as exc:
                failed = exc
        raise FetchError("error", f"connect: {failed}")

    async def _addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` may be reached at (module docstring): every one
        it resolves to when ``fetch_hosts`` names it, else its public ones;
        FetchError when there is none."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise FetchError("error", f"resolve: {exc}") from None
        addrs = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if host.lower() not in self._hosts:
            addrs = [a for a in addrs if public_address(a)]
            if not addrs:
                raise FetchError("host_not_allowed", f"{host} has no public address")
        if not addrs:
            raise FetchError("error", f"resolve: no address for {host}")
        return addrs

    @staticmethod
    async def _body(reader: asyncio.StreamReader, hdrs: Mapping[bytes, bytes], limit: int) -> bytes:
        too_large = FetchError("too_large", f"certificate over {limit} bytes")
        try:
            if b"chunked" in hdrs.get(b"transfer-encoding", b"").lower():
                out = bytearray()
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
                    if size == 0:
                        return bytes(out)
                    if len(out) + size > limit:
                        raise too_large
                    out += await reader.readexactly(size)
                    await reader.readexactly(2)
            cl = hdrs.get(b"content-length")
            if cl is not None:
                n = int(cl)
                if n > limit:
                    raise too_large
                return await reader.readexactly(n)
            out = bytearray()
            while chunk := await reader.read(65536):
                out += chunk
                if len(out) > limit:
                    raise too_large
            return bytes(out)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise FetchError("http_error", "unreadable body") from None
