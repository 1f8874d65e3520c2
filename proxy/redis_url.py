"""Redis clients from the configured URL, plain or through Redis Sentinel.

How this works:

* `[redis] url` / `--redis` is either a plain redis-py URL (`redis://`,
  `rediss://`, `unix://`) or a Sentinel address
  `redis+sentinel://[user:password@]host:port[,host:port...]/mastername[/db]`
  (`rediss+sentinel://` for TLS to the primary). `parse_sentinel_url` checks
  it and raises `ValueError` with a message naming what is wrong (the config
  layer turns it into a `ConfigError` on `redis.url`).
* `async_client(url, **kw)` / `sync_client(url, **kw)` return a
  `redis.asyncio.Redis` / `redis.Redis`: `from_url` for a plain URL, and
  `Sentinel(...).master_for(mastername, ...)` for a Sentinel one. A
  Sentinel-managed pool asks the sentinels for the current primary each time
  it opens a connection, so every reconnect (the store's session loop, the
  record writer's next batch, a CLI run) lands on whichever replica was
  promoted; nothing else in the code needs to know Sentinel is there.
* The asyncio `Sentinel` (its connections to the sentinels) is kept per URL
  and event loop and shared by every client made from it, so a store that
  reconnects a thousand times holds one set of sentinel connections.
* The sentinels themselves are asked with short timeouts (`SENTINEL_TIMEOUT`)
  so a dead sentinel costs at most that before the next is tried.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.asyncio as aioredis

__all__ = [
    "SentinelURL",
    "async_client",
    "is_sentinel",
    "parse_sentinel_url",
    "sentinel_url",
    "sync_client",
]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
SENTINEL_TIMEOUT = 0.5
_ASYNC_SENTINELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    ssl: bool


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def parse_sentinel_url(url: str) -> SentinelURL:
    """Parse `redis+sentinel://[user:pw@]h:p[,h:p...]/master[/db][?sentinel_password=..]`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError(f"not a Sentinel URL (redis+sentinel://...): {url!r}")
    # Split by hand: urlsplit refuses a netloc of several hosts with an IPv6
    # literal among them on some Python 3.11 patch releases ("Invalid IPv6 URL").
    rest, _, query = rest.partition("?")
    rest, _, _frag = rest.partition("#")
    full_netloc, slash, path_part = rest.partition("/")
    userinfo, at, netloc = full_netloc.rpartition("@")
    user, _, pw = userinfo.partition(":") if at else ("", "", "")
    if not netloc:
        raise ValueError(f"no sentinel host:port in {url!r}")
    sentinels: list[tuple[str, int]] = []
    for part in netloc.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon:
            host, port = part.strip(), "26379"
        host = host.strip("[]")
        if not host:
            raise ValueError(f"sentinel {part!r} has no host in {url!r}")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel {part!r}: port must be 1..65535 in {url!r}")
        sentinels.append((host, int(port)))
    path = [p for p in path_part.split("/") if p] if slash else []
    if not path:
        raise ValueError(f"no master name after the sentinels in {url!r} (…/mymaster)")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(f"path must be /mastername or /mastername/<db number> in {url!r}")
    q = parse_qs(query)
    db = int(path[1]) if len(path) == 2 else int(q.get("db", ["0"])[0] or 0)
    sp = q.get("sentinel_password", [None])[0]
    return SentinelURL(
        sentinels=tuple(sentinels),
        master=unquote(path[0]),
        db=db,
        username=unquote(user) if user else None,
        password=unquote(pw) if pw else None,
        sentinel_password=sp,
        ssl=scheme.lower().startswith("rediss"),
    )


def sentinel_url(sentinels: list[str], master: str, db: int = 0) -> str:
    """The URL for config keys `sentinels = ["h:p", ...]` + `master_name`."""
    url = f"redis+sentinel://{','.join(sentinels)}/{master}" + (f"/{db}" if db else "")
    parse_sentinel_url(url)  # validate
    return url


def _conn_kwargs(s: SentinelURL, kw: dict[str, Any]) -> dict[str, Any]:
    out = dict(kw, db=s.db)
    if s.username:
        out["username"] = s.username
    if s.password:
        out["password"] = s.password
    if s.ssl:
        out["ssl"] = True
    return out


def _sentinel_kwargs(s: SentinelURL) -> dict[str, Any]:
    sk: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
    }
    if s.sentinel_password:
        sk["password"] = s.sentinel_password
    return sk


def async_client(url: str, **kw: Any) -> aioredis.Redis:
    """An asyncio client for `url` (plain or Sentinel; module docstring)."""
    if not is_sentinel(url):
        c: aioredis.Redis = aioredis.Redis.from_url(url, **kw)
        return c
    from redis.asyncio.sentinel import Sentinel

    s = parse_sentinel_url(url)
    # One Sentinel (its connections to the sentinels) per URL and event loop,
    # reused by every reconnect instead of leaking three sockets each time.
    try:
        per_loop = _ASYNC_SENTINELS.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # no running loop: nothing to share with
        per_loop = {}
    sen = per_loop.get(url)
    if sen is None:
        sen = per_loop[url] = Sentinel(list(s.sentinels), sentinel_kwargs=_sentinel_kwargs(s))
    m: aioredis.Redis = sen.master_for(s.master, **_conn_kwargs(s, kw))
    return m


def sync_client(url: str, **kw: Any) -> redis.Redis:
    """A blocking client for `url` (plain or Sentinel; module docstring)."""
    if not is_sentinel(url):
        c: redis.Redis = redis.Redis.from_url(url, **kw)
        return c
    from redis.sentinel import Sentinel

    s = parse_sentinel_url(url)
    sen = Sentinel(list(s.sentinels), sentinel_kwargs=_sentinel_kwargs(s))
    m: redis.Redis = sen.master_for(s.master, **_conn_kwargs(s, kw))
    return m
