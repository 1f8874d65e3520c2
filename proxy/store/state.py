"""What a `SnapshotStore` holds: the snapshot in force, the connection state,
the buffers of the live feed; and the small Redis helpers every part uses.

`StoreState` is the base the store's parts build on (loader.py, edits.py,
feed.py, session.py, writers.py); `snapshot_store.SnapshotStore` puts them
together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from proxy.redis_url import async_client, is_sentinel, parse_sentinel_url
from proxy.store.monitor_line import _repr_bytes
from rules.shaken import AttestationPolicy
from rules.snapshot import Snapshot

log = logging.getLogger("sipscreen.store")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
# Behind Sentinel a failover is the usual outage and the sentinels answer
# cheaply: retry at least once a second so the promoted replica is found soon.
BACKOFF_MAX_SENTINEL = 1.0
PING_INTERVAL = 1.0
PING_TIMEOUT = 2.0

# Used when COMMAND is refused: the write commands that may touch our keys.
_STATIC_WRITE_COMMANDS = frozenset(
    """sadd srem smove spop sinterstore sunionstore sdiffstore del unlink rename renamenx
    hset hmset hsetnx hdel hincrby hincrbyfloat hexpire hpexpire hgetdel hsetex hgetex
    zadd zrem zincrby zpopmin zpopmax bzpopmin bzpopmax zmpop bzmpop zremrangebyscore
    zremrangebyrank zremrangebylex zunionstore zinterstore zdiffstore zrangestore set setex
    psetex setnx getset getdel getex append incr decr incrby decrby incrbyfloat setrange
    mset msetnx copy move restore sort sort_ro flushdb flushall swapdb xadd xtrim xdel""".split()
)


@dataclass(slots=True)
class _Part:
    """One key's content read aside, ready to be installed in a snapshot."""

    rel: str
    value: Any


class StoreState:
    """The attributes the store's parts share, and the snapshot helpers."""

    def __init__(
        self,
        redis_url: str,
        prefix: str,
        *,
        emergency: frozenset[str],
        emergency_callers: frozenset[str] = frozenset(),
        unmapped_provider_policy: str = "monitor",
        shaken_policy: Mapping[str, AttestationPolicy] | None = None,
        on_change: Callable[[Snapshot], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.emergency = emergency
        # Configured emergency callers as ints (the engine's number key).
        self.emergency_callers = frozenset(int(n[1:]) for n in emergency_callers)
        self.unmapped_provider_policy = unmapped_provider_policy
        self.shaken_policy: Mapping[str, AttestationPolicy] = shaken_policy or {}
        self.on_change = on_change
        self.on_state = on_state
        self.clock = clock
        self.snapshot: Snapshot = self._empty()
        self.loaded = False
        self.connected = False
        self.mode = "none"  # "monitor" | "keyspace" | "poll"
        self.rereads = 0
        self._db = _db_of(redis_url)
        self._backoff_max = BACKOFF_MAX_SENTINEL if is_sentinel(redis_url) else BACKOFF_MAX
        self._pfx_b = prefix.encode()
        self._pfx_q = b'"' + _repr_bytes(self._pfx_b)
        self._load_epoch = 0
        self._counter = 0
        self._rmd_version = ""
        self._replay: list[list[str]] | None = None
        self._reread_buf: dict[str, list[list[str]]] = {}
        self._reread_dirty: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_commands: frozenset[str] = _STATIC_WRITE_COMMANDS
        self._data: aioredis.Redis | None = None
        self._ever_connected = False
        self._down_logged = False
        self._warned: set[tuple[str, str]] = set()
        self.synced = asyncio.Event()
        # The generation stamp of the data loaded (None: no load yet), and whether
        # Redis came back without it (the snapshot is then kept, not reloaded)
        self.generation: str | None = None
        self.data_lost = False
        # Failover/outage timing: when the connection was lost (monotonic), and
        # the last outage measured from then to the first full load after it.
        self._down_at: float | None = None
        self.last_outage_s: float | None = None
        # The edit journal: last entry id read, the keys of entries read whose
        # XADD notification has not arrived yet, entries applied.
        self._journal_id = "0-0"
        self._journal_ahead: deque[str] = deque()
        self.journal_entries = 0

    # -- snapshot helpers --------------------------------------------------

    def _empty(self) -> Snapshot:
        snap = Snapshot.empty()
        snap.emergency = self.emergency
        snap.emergency_caller_config = self.emergency_callers
        snap.unmapped_provider_policy = self.unmapped_provider_policy
        snap.shaken_policy = self.shaken_policy
        return snap

    def _warn(self, key: str, value: object, why: str) -> None:
        # One WARNING per (key, value): a 10 M set with many bad entries must
        # not flood the log on every reload.
        tag = (key, repr(value)[:200])
        if tag in self._warned:
            return
        if len(self._warned) < 100_000:
            self._warned.add(tag)
        log.warning("skipping invalid value in %s: %r (%s)", key, value, why)

    def _bump(self) -> None:
        self._counter += 1
        v = f"{self._load_epoch}-{self._counter}"
        if self._rmd_version:
            v += f"+rmd:{self._rmd_version}"
        self.snapshot.version = v

    def key(self, rel: str) -> str:
        return self.prefix + rel


def _client(url: str, *, decode: bool = True, timeout: float | None = 10.0) -> aioredis.Redis:
    c: aioredis.Redis = async_client(
        url,
        decode_responses=decode,
        encoding_errors="replace",
        socket_connect_timeout=2.0,
        socket_timeout=timeout,
        socket_keepalive=True,
    )
    return c


def _db_of(url: str) -> int:
    from urllib.parse import parse_qs, urlparse

    if is_sentinel(url):
        return parse_sentinel_url(url).db
    u = urlparse(url)
    q = parse_qs(u.query).get("db")
    if q:
        return int(q[0])
    path = (u.path or "").strip("/")
    return int(path) if u.scheme != "unix" and path.isdigit() else 0


def _safe_url(url: str) -> str:
    from urllib.parse import urlparse

    u = urlparse(url)
    if u.password:
        return url.replace(u.password, "***")
    return url


def _exc_text(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_exc_text(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _drop_notice(snap: Snapshot, nid: str) -> None:
    for prov, lst in list(snap.notices.items()):
        kept = [n for n in lst if n.id != nid]
        if len(kept) != len(lst):
            if kept:
                snap.notices[prov] = kept
            else:
                del snap.notices[prov]
