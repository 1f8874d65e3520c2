"""Redis is the source of truth; this module keeps `rules.Snapshot` in step.

How this works:

* `SnapshotStore.snapshot` is the in-memory `rules.snapshot.Snapshot` that
  the screening glue reads on every INVITE without an `await`. Until a first
  full load succeeds it is `Snapshot.empty()` and `loaded` is False (the glue
  then applies `no_snapshot_policy`).
* `load_full()` reads every key of the schema (docs/DESIGN.md, docs/REDIS.md)
  with SSCAN/HSCAN/ZSCAN in batches, validates each value (a bad one is
  skipped with one WARNING naming the key and the value, never raised; past
  WARN_PER_KEY per key and load, one summary count), builds a *new*
  Snapshot aside and swaps `self.snapshot` in one assignment.
* The caller sets (10 M entries) take a bulk path: SSCAN replies stay bytes,
  the next SSCAN is in flight while a batch is converted, a whole batch of
  canonical `+<digits>` members is validated with a few C-level bytes
  operations and turned into ints at once (`map(int, batch)`), kept in one
  `array('q')` (8 bytes an entry, no Python object per member), and the
  NumberSet hash table is laid out from that array (`NumberSet.from_ints`). Progress is logged every
  PROGRESS_EVERY entries. benchmarks/bench_load.py measures it: at 10 M the
  time is mostly Redis's own SSCAN work (~1-3 µs a member on a busy host).
* `run()` is the long-running task. Per connection ("session") it: enables
  keyspace notifications (adding flags, never removing any), opens a MONITOR
  connection, does a full load, then follows every write live:
  - MONITOR (primary feed) shows each executed command with its arguments,
    including those inside MULTI/EXEC and Lua scripts, so an operator's
    `SADD sipscreen:block:caller +12025550123` is applied as exactly that one
    member in O(1)/O(log n) between two INVITEs. Commands on our keys that we
    do not model member by member (SMOVE, SINTERSTORE, RENAME, SPOP, HSET on
    a provider hash, ...) make the store re-read just that key aside and swap
    that one attribute in; edits that arrive while a re-read (or a full
    reload) is in flight are buffered and replayed on the fresh copy, which
    is correct because set/zset/hash member edits are last-writer-wins per
    member and MONITOR delivers them in execution order.
  - Keyspace notifications (`__keyspace@<db>__:<prefix>*`, all but the
    decision records' keys `records*`, which no snapshot reads): with MONITOR
    they are only used for `expired`/`evicted`, which no command shows. When
    MONITOR is refused (ACL, managed Redis) they are the feed, and the edit
    journal makes a set edit cost O(edit): the writers (`_journal`) XADD
    `<prefix>journal` {op, key, members} after each SADD/SREM/ZADD/ZREM in
    the same MULTI/EXEC. A set/zset event waits (JOURNAL_GRACE) for the
    journal's `xadd` event; each `xadd` event is matched, in order, to the
    next entry (`_journal_step`: XREAD from the last id, entries applied as
    edits, idempotent); an event on a key that no entry settles (no entry
    in time, or more events than entries) re-reads that whole key, O(size).
    If CONFIG GET is refused the store cannot see the flags: it subscribes,
    writes `<prefix>meta:notify-probe` and follows notifications if that
    one arrives (`_probe_notifications`), else reloads every 30 s.
* The URL may be a Sentinel address (`redis+sentinel://...`,
  proxy/redis_url.py): every connection asks the sentinels for the current
  primary, so a failover is a reconnect like any other (below). The
  promoted replica carries `meta:generation`, so it is not "data lost".
  `_log_outage` logs the time from the connection loss to the first full
  load after it (the failover time seen by this proxy), `last_outage_s`.
* Redis down at any moment: screening keeps the last snapshot; the session
  ends, `connected` turns False (one WARNING line, `on_state(False)`), and
  `run()` reconnects with jittered exponential backoff (0.1 s doubling to
  5 s; to 1 s behind Sentinel). Back up: one INFO line, `on_state(True)`, and a full reload built
  aside, because edits made meanwhile were not seen.
* Redis back EMPTY (restarted without persistence, issue 10.10): the store
  stamps `<prefix>meta:generation` (SET NX) at its first load and checks it at
  every reconnect, before loading. Missing, or changed to a value that is not
  an operator's confirmation (`confirmed-...`), means the data under the
  prefix is not what was loaded (so is the same stamp with every list of the
  schema gone while the snapshot had entries): the last snapshot stays in force,
  `data_lost` turns True (metric `sipscreen_redis_data_lost` 1, one ERROR
  line) and nothing is loaded until an operator confirms the state
  (`sipscreen redis confirm-empty`, or `SET <prefix>meta:generation
  confirmed-<anything>` after re-seeding); the store checks once a second.
  A new process has nothing to compare with: its first load takes what it
  finds.
* Writer helpers (`block_caller`, `allow_caller`, `set_provider`, ...) are
  what the CLI and tests use: they validate, normalise, write the key and its
  optional `meta:<key>` companion (who/why/when) in one MULTI/EXEC.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from proxy.redis_url import async_client, is_sentinel, parse_sentinel_url
from rules.notices import notice_from_record
from rules.numbers import normalise
from rules.orders import order_from_record
from rules.shaken import AttestationPolicy
from rules.snapshot import RMD_STATUSES as SNAP_RMD_STATUSES
from rules.snapshot import (
    Notice,
    NumberSet,
    Order,
    PrefixSet,
    Provider,
    Snapshot,
    parse_campaigns,
)

__all__ = [
    "KEY_KINDS",
    "RMD_STATUSES",
    "SnapshotStore",
    "StoreError",
    "needed_notify_flags",
    "parse_date",
    "parse_monitor_line",
    "valid_prefix",
]

log = logging.getLogger("sipscreen.store")

# ---------------------------------------------------------------------------
# Key schema (relative to the prefix; docs/DESIGN.md "Redis key schema")
# ---------------------------------------------------------------------------

K_BLOCK_CALLER = "block:caller"
K_ALLOW_CALLER = "allow:caller"
K_ALLOW_EXPIRY = "allow:caller:expiry"
K_BLOCK_PREFIX = "block:prefix"
K_BLOCK_PROVIDER = "block:provider"
K_DNO_CALLER = "dno:caller"
K_EMERGENCY_CALLER = "emergency:caller"  # 47 CFR 64.1200(k)(6): PSAPs, gov. emergency lines
K_NANPA_NPA = "nanpa:npa"
K_NANPA_NXX = "nanpa:nxx"
K_RMD_CURRENT = "rmd:current"
P_PROVIDER = "provider:"
P_NOTICE = "notice:"
P_ORDER = "order:"  # Final Determination Orders (47 CFR 64.1200(n)(3)), rules/orders.py
# Hashes one per id (`<prefix><id>`, no further ":"), re-read whole on an edit.
_HASH_PREFIXES = (P_PROVIDER, P_NOTICE, P_ORDER)
P_META = "meta:"
# The store's generation stamp (see the module docstring); a value an operator
# sets to accept what Redis now holds starts with CONFIRMED.
K_GENERATION = "meta:generation"
CONFIRMED = "confirmed-"
GENERATION_POLL = 1.0
# The edit journal (module docstring): a stream of the member edits the
# writers make, so the keyspace path learns an edit in O(edit).
K_JOURNAL = "journal"
JOURNAL_MAXLEN = 100_000
# How long a set edit seen by keyspace notification waits for its journal
# entry (published right after it, same MULTI/EXEC) before the key is re-read.
JOURNAL_GRACE = 0.05
_JOURNAL_OPS = frozenset({"sadd", "srem", "zadd", "zrem"})

# Members edited in place, by SADD/SREM: relative key -> kind.
NUMBER_SETS = {
    K_BLOCK_CALLER: "block_caller",
    K_ALLOW_CALLER: "allow_caller",
    K_DNO_CALLER: "dno_caller",
    K_EMERGENCY_CALLER: "emergency_caller",
}
KEY_KINDS: dict[str, str] = {
    **{k: "numbers" for k in NUMBER_SETS},
    K_ALLOW_EXPIRY: "expiry",
    K_BLOCK_PREFIX: "prefix",
    K_BLOCK_PROVIDER: "provider_set",
    K_NANPA_NPA: "npa",
    K_NANPA_NXX: "nxx",
    K_RMD_CURRENT: "rmd_current",
}

# 47 CFR 64.6305(g): listed passes; removed (by an order), absent (from the
# export in force) and not_listed (never filed) fail; unknown is not judged.
RMD_STATUSES = frozenset(SNAP_RMD_STATUSES)
NOTICE_KINDS = frozenset({"k4", "n2"})  # 47 CFR 64.1200(k)(4), (n)(2)

SCAN_COUNT = 20_000
PROGRESS_EVERY = 1_000_000
WARN_PER_KEY = 20  # invalid members logged one by one per key and load
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
# Behind Sentinel a failover is the usual outage and the sentinels answer
# cheaply: retry at least once a second so the promoted replica is found soon.
BACKOFF_MAX_SENTINEL = 1.0
PING_INTERVAL = 1.0
PING_TIMEOUT = 2.0

# Flags the store needs in notify-keyspace-events: K keyspace channel, g
# generic (del, rename, expire), s set, h hash, z zset, $ string, x expired,
# e evicted, t stream (the edit journal's XADD). "A" is the alias of "g$lshzxet".
_NEEDED_FLAGS = "Kgs$hzxet"
_ALIAS_A = "g$lshzxet"

# Commands that change no member of an existing key (expiry arrives later as
# an `expired` keyspace event).
_NO_CONTENT_CHANGE = frozenset(
    {"expire", "pexpire", "expireat", "pexpireat", "persist", "touch", "object", "watch"}
)
# Used when COMMAND is refused: the write commands that may touch our keys.
_STATIC_WRITE_COMMANDS = frozenset(
    """sadd srem smove spop sinterstore sunionstore sdiffstore del unlink rename renamenx
    hset hmset hsetnx hdel hincrby hincrbyfloat hexpire hpexpire hgetdel hsetex hgetex
    zadd zrem zincrby zpopmin zpopmax bzpopmin bzpopmax zmpop bzmpop zremrangebyscore
    zremrangebyrank zremrangebylex zunionstore zinterstore zdiffstore zrangestore set setex
    psetex setnx getset getdel getex append incr decr incrby decrby incrbyfloat setrange
    mset msetnx copy move restore sort sort_ro flushdb flushall swapdb xadd xtrim xdel""".split()
)


class StoreError(ValueError):
    """A value given to a writer helper is invalid; the message names it."""


# ---------------------------------------------------------------------------
# Validation (pure)
# ---------------------------------------------------------------------------


def _number(raw: str) -> str | None:
    """E.164 (or short code) form of a stored member, None if malformed."""
    # Fast path: the canonical form every writer of ours stores.
    # NumberSet holds E.164 numbers only (no short codes, no leading 0).
    if raw[:1] == "+" and 2 <= len(raw) <= 16 and raw[1:].isdigit() and raw.isascii():
        return raw if raw[1] != "0" else None
    n = normalise(raw) if raw else None
    return n if n is not None and n[:1] == "+" and n[1:2] != "0" else None


def valid_prefix(raw: str) -> str | None:
    """A blocked E.164 prefix (`+1202555`), None if malformed."""
    s = raw.strip()
    body = s[1:]
    if s[:1] == "+" and 1 <= len(body) <= 15 and body.isdigit() and body.isascii():
        return s
    return None


# Bytes that may appear in a batch of canonical members joined by b"\n".
_CANONICAL_BYTES = b"+0123456789\n"


def _canonical_joined(batch: list[bytes]) -> bytes | None:
    """`batch` joined by b"\n" when every member is b"+" then 1-15 ASCII digits,
    not starting with 0; None otherwise.

    The common case (every writer of ours stores that form) is checked on
    the batch joined by b"\n", with a handful of C-level calls instead of a
    Python call per member: only `+`, digits and the separators remain
    after deleting those bytes; the separator count proves no member holds
    a b"\n"; one b"+" per member, each right after a separator (or at the
    start), proves every member starts with b"+" and has no other; no
    b"+0", b"+\n" or trailing b"+" rules out a leading 0 and an empty
    body; the longest member is at most 16 bytes (15 digits, ITU-T E.164
    §6.1). A batch that fails is converted member by member.
    """
    if not batch:
        return b""
    j = b"\n".join(batch)
    seps = len(batch) - 1
    ok = (
        not j.translate(None, _CANONICAL_BYTES)
        and j.count(b"\n") == seps
        and j.count(b"+") == seps + 1
        and j.count(b"\n+") == seps
        and j[:1] == b"+"
        and j[-1:] != b"+"
        and b"+0" not in j
        and b"+\n" not in j
        and max(map(len, batch)) <= 16
    )
    return j if ok else None


class _BadCount:
    """One WARNING per invalid member for the first WARN_PER_KEY, then a count."""

    __slots__ = ("store", "key", "why", "count")

    def __init__(self, store: SnapshotStore, key: str, why: str) -> None:
        self.store, self.key, self.why, self.count = store, key, why, 0

    def __call__(self, value: str) -> None:
        self.count += 1
        if self.count <= WARN_PER_KEY:
            self.store._warn(self.key, value, self.why)

    def summary(self) -> None:
        if self.count > WARN_PER_KEY:
            log.warning(
                "%s: %d invalid members skipped (%s); the first %d were logged",
                self.key,
                self.count,
                self.why,
                WARN_PER_KEY,
            )


async def _command(conn: Any, *args: object) -> Any:
    """One command on a connection taken from the pool (raw reply)."""
    await conn.send_command(*args)
    return await conn.read_response(disable_decoding=True)


def parse_date(raw: str) -> float | None:
    """Epoch seconds from an epoch number, an ISO date or an ISO datetime.

    A date alone is midnight UTC; a naive datetime is taken as UTC.
    """
    s = raw.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        return v if v == v and 0 <= v < 4e10 else None
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def needed_notify_flags(current: str) -> str:
    """`current` notify-keyspace-events plus what the store needs (never less)."""
    have = set(current)
    if "A" in have:
        have |= set(_ALIAS_A)
    missing = "".join(c for c in _NEEDED_FLAGS if c not in have)
    return current + missing


# ---------------------------------------------------------------------------
# MONITOR line parsing
# ---------------------------------------------------------------------------

_ESCAPES = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("a"): b"\a",
    ord("b"): b"\b",
    ord("\\"): b"\\",
    ord('"'): b'"',
}


def _unrepr(tok: bytes) -> bytes:
    """Undo Redis's sdscatrepr escaping of one MONITOR argument."""
    out = bytearray()
    i, n = 0, len(tok)
    while i < n:
        c = tok[i]
        if c == 0x5C and i + 1 < n:  # backslash
            nxt = tok[i + 1]
            if nxt == ord("x") and i + 3 < n:
                out.append(int(tok[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, bytes((nxt,)))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _split_args(body: bytes) -> list[bytes]:
    """`"a" "b\\"c"` -> [b"a", b'b"c'] (MONITOR argument list)."""
    if b"\\" not in body:
        # No escape means no quote inside any argument: split exactly.
        inner = body.strip()
        if len(inner) < 2:
            return []
        return inner[1:-1].split(b'" "')
    args: list[bytes] = []
    i, n = 0, len(body)
    while i < n:
        if body[i] != 0x22:  # '"'
            i += 1
            continue
        j = i + 1
        while j < n and body[j] != 0x22:
            j += 2 if body[j] == 0x5C else 1
        args.append(_unrepr(body[i + 1 : j]))
        i = j + 1
    return args


# The commands proxy/records.py sends with a `records*` key first.
_RECORD_WRITES = frozenset((b"xadd", b"xtrim", b"zadd", b"zremrangebyscore", b"pexpire", b"expire"))


def parse_monitor_line(line: bytes) -> tuple[int, list[bytes]] | None:
    """`1339518083.107412 [0 127.0.0.1:60866] "sadd" "k" "m"` -> (0, argv)."""
    lb = line.find(b" [")
    rb = line.find(b"] ", lb)
    if lb < 0 or rb < 0:
        return None
    sp = line.find(b" ", lb + 2)
    try:
        db = int(line[lb + 2 : sp])
    except ValueError:
        return None
    argv = _split_args(line[rb + 2 :])
    return (db, argv) if argv else None


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    """One key's content read aside, ready to be installed in a snapshot."""

    rel: str
    value: Any


class SnapshotStore:
    """Keeps `self.snapshot` equal to what Redis holds under `prefix`."""

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
        self.edits_applied = 0
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

    # -- reading keys aside ------------------------------------------------

    async def _scan_raw(
        self, r: aioredis.Redis, key: str, on_batch: Callable[[list[bytes]], None]
    ) -> int:
        """SSCAN `key` to the end, handing each batch (raw bytes) to `on_batch`.

        The next SSCAN is sent as soon as the previous reply names its cursor,
        before `on_batch` converts that reply, so Redis computes batch k+1
        while Python converts batch k (the cursor chain forbids a deeper
        pipeline). Replies are not decoded (hiredis hands out bytes). Logs
        progress every PROGRESS_EVERY entries; returns the entries read.
        """
        pool = r.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        clean = False
        total = 0
        try:
            expected = int(await _command(conn, "SCARD", key))
            t0 = time.perf_counter()
            nxt = PROGRESS_EVERY
            await conn.send_command("SSCAN", key, 0, "COUNT", SCAN_COUNT)
            while True:
                resp = await conn.read_response(disable_decoding=True)
                cursor = int(resp[0])
                if cursor:
                    await conn.send_command("SSCAN", key, cursor, "COUNT", SCAN_COUNT)
                batch: list[bytes] = resp[1]
                total += len(batch)
                on_batch(batch)
                if total >= nxt:
                    log.info(
                        "loading %s: %d of ~%d entries read (%.1fs)",
                        key,
                        total,
                        expected,
                        time.perf_counter() - t0,
                    )
                    nxt = (total // PROGRESS_EVERY + 1) * PROGRESS_EVERY
                if not cursor:
                    clean = True
                    return total
        finally:
            if not clean:
                # A reply may still be in flight: never hand that socket back.
                await conn.disconnect()
            await pool.release(conn)

    async def _scan_set(self, r: aioredis.Redis, key: str) -> list[str]:
        out: list[str] = []

        def take(batch: list[bytes]) -> None:
            out.extend(m.decode("utf-8", "replace") for m in batch)

        await self._scan_raw(r, key, take)
        return out

    async def _read_numbers(self, r: aioredis.Redis, key: str) -> NumberSet:
        vals: array[int] = array("q")
        extend = vals.extend
        bad = _BadCount(self, key, "not a phone number")

        def take(batch: list[bytes]) -> None:
            if _canonical_joined(batch) is not None:
                # int() reads b"+12025550123" itself: no slicing, no decode.
                extend(map(int, batch))
                return
            for m in batch:
                n = _number(m.decode("utf-8", "replace"))
                if n is None:
                    bad(m.decode("utf-8", "replace"))
                else:
                    vals.append(int(n[1:]))

        await self._scan_raw(r, key, take)
        bad.summary()
        return NumberSet.from_ints(vals)

    async def _read_prefixes(self, r: aioredis.Redis, key: str) -> PrefixSet:
        good: list[str] = []
        bad = _BadCount(self, key, "not an E.164 prefix such as +1202555")
        for m in await self._scan_set(r, key):
            p = valid_prefix(m)
            if p is None:
                bad(m)
            else:
                good.append(p)
        bad.summary()
        return PrefixSet(good)

    async def _read_plain_set(self, r: aioredis.Redis, key: str, what: str) -> set[str]:
        out: set[str] = set()
        bad = _BadCount(self, key, f"not a valid {what}")
        for m in await self._scan_set(r, key):
            if _valid_plain(what, m):
                out.add(m)
            else:
                bad(m)
        bad.summary()
        return out

    async def _read_expiry(self, r: aioredis.Redis, key: str) -> dict[str, float]:
        out: dict[str, float] = {}
        cursor = 0
        while True:
            cursor, batch = await r.zscan(key, cursor, count=SCAN_COUNT)
            for member, score in batch:
                n = _number(str(member))
                if n is None:
                    self._warn(key, member, "not a phone number")
                else:
                    out[n] = float(score)
            if cursor == 0:
                return out

    def _provider_from(self, key: str, pid: str, h: Mapping[str, str]) -> Provider | None:
        status = h.get("rmd_status", "unknown") or "unknown"
        if status not in RMD_STATUSES:
            self._warn(key, status, f"rmd_status must be one of {', '.join(SNAP_RMD_STATUSES)}")
            return None
        mo = h.get("monitor_only", "0") or "0"
        if mo not in ("0", "1"):
            self._warn(key, mo, "monitor_only must be 0 or 1")
            return None
        return Provider(
            id=pid,
            name=h.get("name", ""),
            rmd_status=status,
            frn=h.get("frn", ""),
            rmd_number=h.get("rmd_number", ""),
            ocn=h.get("ocn", ""),
            monitor_only=mo == "1",
            rmd_order=h.get("rmd_order", ""),
            rmd_since=h.get("rmd_since", ""),
            ocns=h.get("ocns", ""),
            rmd_ocn=h.get("rmd_ocn", ""),
            implementation=h.get("implementation", ""),
        )

    def _notice_from(self, key: str, nid: str, h: Mapping[str, str]) -> Notice | None:
        # Deadlines missing from the hash are computed by rules.notices
        # (47 CFR 64.1200(k)(4): 48 hours to mitigate, 14 days to report,
        # counted per 47 CFR 1.4).
        if not h.get("provider", "").strip():
            self._warn(key, dict(h), "notice without provider")
            return None
        try:
            f = notice_from_record(h, nid)
            campaigns = parse_campaigns(",".join(f.campaigns))
        except ValueError as exc:
            self._warn(key, dict(h), str(exc))
            return None
        f.id, f.campaigns = nid, campaigns
        return f

    def _order_from(self, key: str, oid: str, h: Mapping[str, str]) -> Order | None:
        # Removed orders (status "removed") are kept in Redis for the record
        # but are not in force: None.
        try:
            return order_from_record(h, oid)
        except ValueError as exc:
            self._warn(key, dict(h), str(exc))
            return None

    async def _scan_keys(self, r: aioredis.Redis, match: str) -> list[str]:
        out: list[str] = []
        async for k in r.scan_iter(match=_glob_escape(match) + "*", count=1000):
            out.append(k)
        return out

    async def _hgetall_many(
        self, r: aioredis.Redis, keys: list[str]
    ) -> list[tuple[str, dict[str, str], str]]:
        out: list[tuple[str, dict[str, str], str]] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            async with r.pipeline(transaction=False) as p:
                for k in chunk:
                    p.type(k)
                    p.hgetall(k)
                res = await p.execute(raise_on_error=False)
            for j, k in enumerate(chunk):
                typ, h = res[2 * j], res[2 * j + 1]
                out.append((k, h if isinstance(h, dict) else {}, str(typ)))
        return out

    async def _read_part(self, r: aioredis.Redis, rel: str) -> _Part | None:
        """Read one key of the schema aside (None: not one of ours)."""
        key = self.key(rel)
        kind = KEY_KINDS.get(rel)
        if kind is not None:
            typ = await r.type(key)
            want = {"expiry": "zset", "rmd_current": "string"}.get(kind, "set")
            if typ not in ("none", want):
                self._warn(key, typ, f"wrong type, expected a {want}")
                typ = "none"
            exists = typ != "none"
            if kind == "numbers":
                return _Part(rel, await self._read_numbers(r, key) if exists else NumberSet())
            if kind == "prefix":
                return _Part(rel, await self._read_prefixes(r, key) if exists else PrefixSet())
            if kind == "provider_set":
                return _Part(
                    rel, await self._read_plain_set(r, key, "provider id") if exists else set()
                )
            if kind in ("npa", "nxx"):
                s = await self._read_plain_set(r, key, kind) if exists else set()
                return _Part(rel, s or None)
            if kind == "expiry":
                return _Part(rel, await self._read_expiry(r, key) if exists else {})
            if kind == "rmd_current":
                return _Part(rel, (await r.get(key) or "") if exists else "")
        if rel.startswith(P_PROVIDER) and rel.count(":") == 1:
            pid = rel[len(P_PROVIDER) :]
            h = await self._hgetall_typed(r, key)
            return _Part(rel, self._provider_from(key, pid, h) if h else None)
        if rel.startswith(P_NOTICE) and rel.count(":") == 1:
            nid = rel[len(P_NOTICE) :]
            h = await self._hgetall_typed(r, key)
            return _Part(rel, self._notice_from(key, nid, h) if h else None)
        if rel.startswith(P_ORDER) and rel.count(":") == 1:
            oid = rel[len(P_ORDER) :]
            h = await self._hgetall_typed(r, key)
            return _Part(rel, self._order_from(key, oid, h) if h else None)
        return None

    async def _hgetall_typed(self, r: aioredis.Redis, key: str) -> dict[str, str]:
        typ = await r.type(key)
        if typ == "none":
            return {}
        if typ != "hash":
            self._warn(key, typ, "wrong type, expected a hash")
            return {}
        h = cast(dict[str, str], await r.hgetall(key))
        return h

    def _install(self, snap: Snapshot, part: _Part) -> None:
        """Swap one key's content into `snap` (one assignment per attribute)."""
        rel, v = part.rel, part.value
        kind = KEY_KINDS.get(rel)
        if kind == "numbers":
            setattr(snap, NUMBER_SETS[rel], v)
        elif kind == "prefix":
            snap.block_prefix = v
        elif kind == "provider_set":
            snap.block_provider = v
        elif kind == "npa":
            snap.set_nanpa(v, snap.nanpa_nxx)
        elif kind == "nxx":
            snap.set_nanpa(snap.nanpa_npa, v)
        elif kind == "expiry":
            snap.allow_expiry = v
        elif kind == "rmd_current":
            self._rmd_version = v
        elif rel.startswith(P_PROVIDER):
            pid = rel[len(P_PROVIDER) :]
            old = snap.providers.pop(pid, None)
            if v is not None:
                snap.providers[pid] = v
            snap.index_provider(old, v)
        elif rel.startswith(P_NOTICE):
            nid = rel[len(P_NOTICE) :]
            _drop_notice(snap, nid)
            if v is not None:
                snap.notices.setdefault(v.provider, []).append(v)
        elif rel.startswith(P_ORDER):
            snap.remove_order(rel[len(P_ORDER) :])
            if v is not None:
                snap.set_order(v)

    async def load_full(self) -> Snapshot:
        """Read every key of the schema, build a Snapshot aside, swap it in."""
        own = self._data is None
        r = self._data or _client(self.redis_url)
        try:
            return await self._load_with(r)
        finally:
            if own:
                await r.aclose()

    async def _load_with(self, r: aioredis.Redis) -> Snapshot:
        t0 = time.perf_counter()
        snap = self._empty()
        for rel in KEY_KINDS:
            part = await self._read_part(r, rel)
            if part is not None:
                self._install(snap, part)
        nprov = 0
        for key, h, typ in await self._hgetall_many(
            r, await self._scan_keys(r, self.key(P_PROVIDER))
        ):
            pid = key[len(self.prefix) + len(P_PROVIDER) :]
            if ":" in pid:
                continue  # provider:<id>:<something> is not a provider hash
            if typ != "hash":
                self._warn(key, typ, "wrong type, expected a hash")
                continue
            p = self._provider_from(key, pid, h)
            if p is not None:
                snap.providers[pid] = p
                snap.index_provider(None, p)
                nprov += 1
        nnot = 0
        for key, h, typ in await self._hgetall_many(
            r, await self._scan_keys(r, self.key(P_NOTICE))
        ):
            nid = key[len(self.prefix) + len(P_NOTICE) :]
            if ":" in nid:
                continue
            if typ != "hash":
                self._warn(key, typ, "wrong type, expected a hash")
                continue
            n = self._notice_from(key, nid, h)
            if n is not None:
                snap.notices.setdefault(n.provider, []).append(n)
                nnot += 1
        nord = 0
        for key, h, typ in await self._hgetall_many(r, await self._scan_keys(r, self.key(P_ORDER))):
            oid = key[len(self.prefix) + len(P_ORDER) :]
            if ":" in oid:
                continue  # order:history:<id> is the order's history list
            if typ != "hash":
                self._warn(key, typ, "wrong type, expected a hash")
                continue
            o = self._order_from(key, oid, h)
            if o is not None:
                snap.set_order(o)
                nord += 1
        now = self.clock()
        snap.loaded_at = now
        self._load_epoch = int(now)
        self.snapshot = snap  # the swap: one reference assignment
        self._bump()
        self.loaded = True
        log.info(
            "snapshot %s loaded in %.2fs: block_caller=%d allow_caller=%d dno_caller=%d "
            "block_prefix=%d block_provider=%d providers=%d notices=%d orders=%d "
            "emergency_caller=%d",
            snap.version,
            time.perf_counter() - t0,
            len(snap.block_caller),
            len(snap.allow_caller),
            len(snap.dno_caller),
            len(snap.block_prefix),
            len(snap.block_provider),
            nprov,
            nnot,
            nord,
            len(snap.emergency_caller),
        )
        if self.on_change is not None:
            self.on_change(snap)
        return snap

    # -- live edits ----------------------------------------------------------

    def apply_argv(self, argv: list[str]) -> None:
        """Apply one executed Redis command (as MONITOR shows it) to the snapshot."""
        if not argv:
            return
        cmd = argv[0].lower()
        if cmd in ("flushdb", "flushall", "swapdb"):
            self._schedule_full()
            return
        if cmd not in self._write_commands or cmd in _NO_CONTENT_CHANGE:
            return
        if self._replay is not None:
            self._replay.append(argv)
        pfx = self.prefix
        key = argv[1] if len(argv) > 1 else ""
        rel = key[len(pfx) :] if key.startswith(pfx) else None
        kind = KEY_KINDS.get(rel) if rel is not None else None
        if rel is not None and key in self._reread_buf:
            self._reread_buf[key].append(argv)
        if kind is not None and self._apply_in_place(cmd, kind, rel or "", argv):
            self._bump()
            return
        # Anything else: every argument that names one of our keys is re-read.
        for a in argv[1:]:
            if a.startswith(pfx):
                r = a[len(pfx) :]
                if r in KEY_KINDS or (r.startswith(_HASH_PREFIXES) and r.count(":") == 1):
                    self._schedule_reread(a)

    def _apply_in_place(self, cmd: str, kind: str, rel: str, argv: list[str]) -> bool:
        snap = self.snapshot
        key = argv[1]
        members = argv[2:]
        if cmd in ("del", "unlink"):
            for k in argv[1:]:
                if k.startswith(self.prefix):
                    r = k[len(self.prefix) :]
                    if r in KEY_KINDS:
                        self._install(snap, _Part(r, _empty_value(KEY_KINDS[r])))
                    elif r.startswith(_HASH_PREFIXES) and r.count(":") == 1:
                        self._install(snap, _Part(r, None))
            self.edits_applied += 1
            return True
        if kind == "numbers" and cmd in ("sadd", "srem"):
            ns: NumberSet = getattr(snap, NUMBER_SETS[rel])
            op = ns.add if cmd == "sadd" else ns.discard
            for m in members:
                n = _number(m)
                if n is None:
                    self._warn(key, m, "not a phone number")
                else:
                    op(n)
            self.edits_applied += 1
            return True
        if kind == "prefix" and cmd in ("sadd", "srem"):
            ps = snap.block_prefix
            for m in members:
                p = valid_prefix(m)
                if p is None:
                    self._warn(key, m, "not an E.164 prefix such as +1202555")
                elif cmd == "sadd":
                    ps.add(p)
                else:
                    ps.discard(p)
            self.edits_applied += 1
            return True
        if kind in ("provider_set", "npa", "nxx") and cmd in ("sadd", "srem"):
            what = {"provider_set": "provider id", "npa": "npa", "nxx": "nxx"}[kind]
            attr = {"provider_set": "block_provider", "npa": "nanpa_npa", "nxx": "nanpa_nxx"}[kind]
            cur: set[str] | None = getattr(snap, attr)
            s = set() if cur is None else cur
            for m in members:
                if not _valid_plain(what, m):
                    self._warn(key, m, f"not a valid {what}")
                elif cmd == "sadd":
                    s.add(m)
                else:
                    s.discard(m)
            # NANPA sets: empty means "not loaded, rule off" (None); set_nanpa
            # keeps the derived NPA coverage of the NPA-NXX data in step.
            if kind == "provider_set":
                snap.block_provider = s
            elif kind == "npa":
                snap.set_nanpa(s or None, snap.nanpa_nxx)
            else:
                snap.set_nanpa(snap.nanpa_npa, s or None)
            self.edits_applied += 1
            return True
        if kind == "expiry" and cmd == "zrem":
            for m in members:
                n = _number(m)
                if n is not None:
                    snap.allow_expiry.pop(n, None)
            self.edits_applied += 1
            return True
        if kind == "expiry" and cmd == "zadd":
            # Plain `ZADD key score member ...` only; NX/XX/GT/LT/INCR/CH are
            # conditional, so the key is re-read instead.
            if len(members) % 2 or not members:
                return False
            pairs: list[tuple[str, float]] = []
            for i in range(0, len(members), 2):
                try:
                    score = float(members[i])
                except ValueError:
                    return False
                n = _number(members[i + 1])
                if n is None:
                    self._warn(key, members[i + 1], "not a phone number")
                    continue
                pairs.append((n, score))
            for n, score in pairs:
                snap.allow_expiry[n] = score
            self.edits_applied += 1
            return True
        return False

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("store background task failed: %s", exc)

    def _schedule_reread(self, key: str) -> None:
        if key in self._reread_buf:
            self._reread_dirty.add(key)
            return
        if self._data is None:
            return  # not connected: the full reload after reconnecting covers it
        self._reread_buf[key] = []
        self._spawn(self._reread(key, self._data))

    async def _reread(self, key: str, r: aioredis.Redis) -> None:
        rel = key[len(self.prefix) :]
        try:
            while True:
                self._reread_dirty.discard(key)
                self._reread_buf[key] = []
                part = await self._read_part(r, rel)
                if part is None:
                    return
                buffered = self._reread_buf.get(key, [])
                self._install(self.snapshot, part)
                self.rereads += 1
                self._reread_buf.pop(key, None)
                for argv in buffered:
                    self.apply_argv(argv)
                self._bump()
                if key not in self._reread_dirty:
                    return
                self._reread_buf[key] = []
        finally:
            self._reread_buf.pop(key, None)

    def _schedule_full(self) -> None:
        if self._data is None:
            return
        self._spawn(self._reload_aside(self._data))

    async def _reload_aside(self, r: aioredis.Redis) -> None:
        """Full reload while following: edits seen meanwhile are replayed."""
        self._replay = []
        try:
            await self._load_with(r)
            replay, self._replay = self._replay, None
            for argv in replay or ():
                self.apply_argv(argv)
        finally:
            self._replay = None

    # -- the long-running task ----------------------------------------------

    async def run(self) -> None:
        """Connect, load, follow; reconnect with backoff forever (cancel to stop)."""
        delay = BACKOFF_MIN
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                if self.connected:
                    self.connected = False
                    log.info("store stopped")
                    if self.on_state is not None:
                        self.on_state(False)
                raise
            except (RedisError, OSError, TimeoutError, ExceptionGroup) as exc:
                self._set_state(False, exc)
            finally:
                for t in list(self._tasks):
                    t.cancel()
                self._reread_buf.clear()
                self._reread_dirty.clear()
                self._replay = None
                if self._data is not None:
                    data, self._data = self._data, None
                    with contextlib.suppress(Exception):
                        await data.aclose()
            if time.monotonic() - started > 10 * BACKOFF_MAX:
                delay = BACKOFF_MIN
            # Jitter: 50-100 % of the current step, so many proxies restarting
            # together do not hammer Redis in lock step.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max)

    def _set_state(self, up: bool, exc: BaseException | None) -> None:
        if up == self.connected:
            if not up and exc is not None and not self._down_logged and not self._ever_connected:
                self._down_logged = True
                log.warning(
                    "redis at %s unreachable (%s); %s, retrying",
                    _safe_url(self.redis_url),
                    _exc_text(exc),
                    "screening on the last snapshot" if self.loaded else "no snapshot yet",
                )
            return
        self.connected = up
        if up:
            self._ever_connected = True
            self._down_logged = False
            log.info("redis at %s connected (%s feed)", _safe_url(self.redis_url), self.mode)
        else:
            self._down_logged = True
            self._down_at = time.monotonic()
            log.warning(
                "redis at %s connection lost (%s); screening on the last snapshot %s",
                _safe_url(self.redis_url),
                _exc_text(exc) if exc else "stopped",
                self.snapshot.version or "(none)",
            )
        if self.on_state is not None:
            self.on_state(up)

    async def _log_outage(self, r: aioredis.Redis) -> None:
        # From the connection loss to this first full load (behind Sentinel:
        # the failover time as this proxy saw it), with the primary it is on.
        assert self._down_at is not None
        self.last_outage_s = time.monotonic() - self._down_at
        self._down_at = None
        where = _safe_url(self.redis_url)
        get_addr = getattr(r.connection_pool, "get_master_address", None)
        if get_addr is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                host, port = await get_addr()
                where = f"primary {host}:{port} (Sentinel)"
        log.warning(
            "redis outage over: first full load from %s %.2f s after the connection was lost",
            where,
            self.last_outage_s,
        )

    async def _check_generation(self, r: aioredis.Redis) -> bool:
        """True when the data under the prefix may be loaded (module docstring:
        Redis back empty); False while it is lost and not confirmed."""
        key = self.key(K_GENERATION)
        gen = cast(str | None, await r.get(key))  # a decode_responses client
        if self.generation is None:  # first load of this process: stamp, take it
            if gen is None:
                stamp = f"gen-{int(self.clock())}-{random.getrandbits(48):012x}"
                await r.set(key, stamp, nx=True)
                gen = cast(str | None, await r.get(key))
        elif gen != self.generation and not (gen or "").startswith(CONFIRMED):
            why = "missing" if gen is None else f"changed to {gen!r}"
            return self._lost(key, f"{key} is {why} (loaded generation {self.generation})")
        elif gen == self.generation and self._snapshot_size() > 0:
            # the same stamp, but none of the lists it had: emptied behind our back
            if not await r.exists(*(self.key(k) for k in KEY_KINDS)):
                return self._lost(key, f"every list under {self.prefix!r} is gone")
        if self.data_lost:
            self.data_lost = False
            log.warning("redis data confirmed (generation %s): loading it", gen)
        self.generation = str(gen) if gen is not None else None
        return True

    def _snapshot_size(self) -> int:
        snap = self.snapshot
        return sum(
            len(x)
            for x in (
                snap.block_caller,
                snap.allow_caller,
                snap.dno_caller,
                snap.block_prefix,
                snap.block_provider,
            )
        )

    def _lost(self, key: str, why: str) -> bool:
        """Redis does not hold the data loaded: keep the snapshot, say so once."""
        if not self.data_lost:
            self.data_lost = True
            log.error(
                "REDIS DATA LOST at %s: %s. Redis restarted without its data? Screening "
                "stays on the last snapshot %s and ignores Redis until an operator "
                "confirms: `sipscreen redis confirm-empty` (or SET %s %s<anything> after "
                "re-seeding)",
                _safe_url(self.redis_url),
                why,
                self.snapshot.version or "(none)",
                key,
                CONFIRMED,
            )
        return False

    async def _session(self) -> None:
        data = _client(self.redis_url)
        self._data = data
        await asyncio.wait_for(data.ping(), PING_TIMEOUT)
        while not await self._check_generation(data):
            await asyncio.sleep(GENERATION_POLL)
        await self._learn_write_commands(data)
        notify = await self._enable_notifications(data)
        mon = _client(self.redis_url, decode=False, timeout=None)
        pubsub = None
        try:
            mon_conn = await self._start_monitor(mon)
            if notify is not False:
                pubsub = data.pubsub()
                # Every key under the prefix but the decision records
                # (`records`, `records:ix:*`, proxy/records.py): their ~10
                # writes per blocked call would each wake every worker's
                # subscriber (~5% of a worker's CPU at 6,000 calls/s).
                base = f"__keyspace@{self._db}__:{_glob_escape(self.prefix)}"
                await pubsub.psubscribe(base + "[^r]*", base + "r[^e]*")
                if notify is None:  # CONFIG refused (managed Redis): see if they come
                    notify = await self._probe_notifications(pubsub, data)
                    if not notify:
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                        pubsub = None
                if pubsub is not None:
                    await self._journal_start(data)
            notify_ok = pubsub is not None
            self.mode = "monitor" if mon_conn is not None else ("keyspace" if notify_ok else "poll")
            self._replay = []
            async with asyncio.TaskGroup() as tg:
                if mon_conn is not None:
                    tg.create_task(self._follow_monitor(mon_conn))
                if pubsub is not None:
                    tg.create_task(self._follow_keyspace(pubsub, everything=mon_conn is None))
                if self.mode == "poll":
                    log.error(
                        "neither MONITOR nor keyspace notifications are available: "
                        "live edits are picked up by a full reload every 30 s; set "
                        "notify-keyspace-events to include %r",
                        _NEEDED_FLAGS,
                    )
                    tg.create_task(self._poll_reload(data))
                self._set_state(True, None)
                await self._load_with(data)
                if self._down_at is not None:
                    await self._log_outage(data)
                replay, self._replay = self._replay, None
                for argv in replay or ():
                    self.apply_argv(argv)
                self.synced.set()
                tg.create_task(self._watchdog(data))
        finally:
            self.synced.clear()
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            with contextlib.suppress(Exception):
                await mon.aclose()

    async def _learn_write_commands(self, r: aioredis.Redis) -> None:
        # COMMAND lists each command's flags; only "write" ones can change a key.
        try:
            info = await r.execute_command("COMMAND")  # type: ignore[no-untyped-call]
        except ResponseError:
            return
        names: set[str] = set()
        for entry in info if isinstance(info, list) else ():
            if isinstance(entry, list) and len(entry) > 2 and isinstance(entry[2], list):
                if "write" in entry[2] or "write" in [str(f) for f in entry[2]]:
                    names.add(str(entry[0]).lower())
        if names:
            self._write_commands = frozenset(names | {"flushdb", "flushall", "swapdb"})

    async def _probe_notifications(self, pubsub: Any, r: aioredis.Redis) -> bool:
        """CONFIG GET was refused, so the flags cannot be read: write a probe
        key under the prefix and wait (PING_TIMEOUT) for its notification."""
        key = self.key(P_META + "notify-probe")
        await r.set(key, str(self.clock()), ex=60)
        chan = f"__keyspace@{self._db}__:{key}"
        deadline = time.monotonic() + PING_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if msg is not None and msg.get("channel") == chan:
                log.info("keyspace notifications arrive (probe %s): following them", key)
                return True
        return False

    async def _enable_notifications(self, r: aioredis.Redis) -> bool | None:
        """True: on; False: off and not ours to change; None: cannot tell
        (CONFIG GET refused), `_probe_notifications` decides."""
        try:
            cur = (await r.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
        except ResponseError as exc:
            log.warning(
                "CONFIG GET refused (%s): make sure the operator sets "
                "notify-keyspace-events to include %r (expiries and the MONITOR fallback "
                "rely on it)",
                exc,
                _NEEDED_FLAGS,
            )
            return None
        want = needed_notify_flags(str(cur or ""))
        if want == cur:
            return True
        try:
            await r.config_set("notify-keyspace-events", want)
        except ResponseError as exc:
            log.warning(
                "CONFIG SET notify-keyspace-events %r refused (%s): the operator must set "
                "it (managed Redis: parameter group); until then expiries are not followed",
                want,
                exc,
            )
            return False
        # A change to the operator's server: say it plainly (stderr, WARNING).
        log.warning(
            "changed the Redis server's configuration: CONFIG SET notify-keyspace-events "
            "%r (was %r) so that live edits and allowlist expiries are followed; it lasts "
            "until that Redis restarts (put it in redis.conf, or CONFIG REWRITE, to keep it)",
            want,
            cur,
        )
        return True

    async def _start_monitor(self, mon: aioredis.Redis) -> Any:
        conn = await mon.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_command("MONITOR")
            resp = await conn.read_response()
        except ResponseError as exc:
            log.warning(
                "MONITOR refused (%s): following edits by keyspace notifications, "
                "which re-read the whole touched key on each edit",
                exc,
            )
            await mon.connection_pool.release(conn)
            return None
        if resp not in (b"OK", "OK"):
            await mon.connection_pool.release(conn)
            return None
        return conn

    async def _follow_monitor(self, conn: Any) -> None:
        pfx_q = self._pfx_q
        rec_q = pfx_q + b"records"  # proxy/records.py: the stream and its indexes
        db = self._db
        while True:
            line = await conn.read_response(disconnect_on_error=True)
            if isinstance(line, str):
                line = line.encode("utf-8", "surrogateescape")
            if not isinstance(line, bytes):
                continue
            # The decision records' writes (~7 commands per record, from every
            # worker) name no snapshot key: skip them before parsing.
            c = line.find(b'] "') + 3
            e = line.find(b'" ', c)
            if e > 0 and line.startswith(rec_q, e + 2) and line[c:e].lower() in _RECORD_WRITES:
                continue
            if pfx_q not in line:
                # FLUSHDB/FLUSHALL/SWAPDB name no key; everything else that
                # names none of ours is someone else's traffic.
                low = line[line.find(b'] "') + 3 :][:8].lower()
                if not low.startswith((b"flush", b"swapdb")):
                    continue
            parsed = parse_monitor_line(line)
            if parsed is None:
                continue
            ldb, argv = parsed
            if ldb != db and argv[0].lower() != b"flushall":
                continue
            self.apply_argv([a.decode("utf-8", "replace") for a in argv])

    async def _follow_keyspace(self, pubsub: Any, *, everything: bool) -> None:
        chan_pfx = f"__keyspace@{self._db}__:"
        journal = self.key(K_JOURNAL)
        records = self.key("records")
        # Set/zset edits waiting for their journal entry: key -> events seen,
        # and when the oldest arrived (module docstring, "edit journal").
        pending: dict[str, int] = {}
        since = 0.0
        while True:
            wait = 1.0 if not pending else max(0.0, since + JOURNAL_GRACE - time.monotonic())
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if pending and time.monotonic() >= since + JOURNAL_GRACE:
                for k in pending:  # no journal entry came: read the whole key
                    self._schedule_reread(k)
                pending.clear()
            if msg is None or msg.get("type") != "pmessage":
                continue
            event = msg.get("data")
            chan = msg.get("channel", "")
            if not chan.startswith(chan_pfx):
                continue
            key = chan[len(chan_pfx) :]
            if key.startswith(records):
                continue  # the decision records (proxy/records.py): no snapshot key
            if key == journal:
                if everything and event == "xadd":
                    await self._journal_step(pending)
                continue
            if everything and event in _JOURNAL_OPS and key[len(self.prefix) :] in KEY_KINDS:
                if not pending:
                    since = time.monotonic()
                pending[key] = pending.get(key, 0) + 1
                continue
            if pending.pop(key, 0):
                self._schedule_reread(key)  # another kind of write: the re-read covers both
            if everything or event in ("expired", "evicted"):
                if event in ("expired", "evicted") or everything:
                    self._schedule_reread(key)

    async def _journal_start(self, r: aioredis.Redis) -> None:
        """Where the journal stands now: entries after it are followed."""
        last = await r.xrevrange(self.key(K_JOURNAL), count=1)
        self._journal_id = str(last[0][0]) if last else "0-0"
        self._journal_ahead.clear()

    async def _journal_step(self, pending: dict[str, int]) -> None:
        """One XADD on the journal was notified: apply the new entries, and let
        the entry that XADD wrote (one per notification, in order) vouch for
        the edit notified just before it on the key it names."""
        r = self._data
        if r is None:
            return
        got = cast(
            list[tuple[str, list[tuple[str, dict[str, str]]]]],
            await r.xread({self.key(K_JOURNAL): self._journal_id}, count=1000),
        )
        for _stream, entries in got or ():
            for eid, fields in entries:
                self._journal_id = str(eid)
                self.journal_entries += 1
                rel = str(fields.get("key", ""))
                op = str(fields.get("op", "")).lower()
                members = str(fields.get("members", "")).split()
                if op not in _JOURNAL_OPS or rel not in KEY_KINDS or not members:
                    self._warn(self.key(K_JOURNAL), dict(fields), "not an edit journal entry")
                    self._journal_ahead.append("")
                    continue
                self._journal_ahead.append(self.key(rel))
                self.apply_argv([op, self.key(rel), *members])
        if not self._journal_ahead:
            return  # an entry from before this session
        key = self._journal_ahead.popleft()
        n = pending.pop(key, 0)
        if n > 1:  # more edits of the key than journal entries: one was not journaled
            self._schedule_reread(key)

    async def _poll_reload(self, r: aioredis.Redis) -> None:
        while True:
            await asyncio.sleep(30.0)
            await self._reload_aside(r)

    async def _watchdog(self, r: aioredis.Redis) -> None:
        # A dead peer behind a silent network never closes the MONITOR socket;
        # a PING per second notices within PING_INTERVAL + PING_TIMEOUT.
        while True:
            await asyncio.sleep(PING_INTERVAL)
            await asyncio.wait_for(r.ping(), PING_TIMEOUT)

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until a session has loaded and is following edits."""
        await asyncio.wait_for(self.synced.wait(), timeout)

    def compact(self) -> None:
        """Fold NumberSet deltas into their base arrays (off the hot path)."""
        snap = self.snapshot
        for attr in NUMBER_SETS.values():
            ns = getattr(snap, attr)
            fn = getattr(ns, "compact", None)
            if callable(fn):
                fn()

    # -- writer helpers (CLI, tests) -----------------------------------------

    async def _write(
        self,
        ops: Callable[[Any], None],
        meta_keys: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
    ) -> None:
        r = self._data or _client(self.redis_url)
        try:
            async with r.pipeline(transaction=True) as p:
                ops(p)
                if meta:
                    fields = {**meta, "when": meta.get("when") or _iso(self.clock())}
                    for mk in meta_keys:
                        p.hset(self.key(P_META + mk), mapping=cast(Any, fields))
                await p.execute()
        finally:
            if r is not self._data:
                await r.aclose()

    def _journal(self, p: Any, op: str, rel: str, members: Iterable[str]) -> None:
        """Queue the edit-journal entry of one member edit on pipeline `p`
        (after the edit itself, in the same MULTI/EXEC)."""
        p.xadd(
            self.key(K_JOURNAL),
            {"op": op, "key": rel, "members": " ".join(members)},
            maxlen=JOURNAL_MAXLEN,
            approximate=True,
        )

    async def block_caller(
        self, numbers: Iterable[str], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        """SADD block:caller (normalised); returns the numbers written."""
        nums = _numbers_or_raise(numbers)

        def ops(p: Any) -> None:
            p.sadd(self.key(K_BLOCK_CALLER), *nums)
            self._journal(p, "sadd", K_BLOCK_CALLER, nums)

        await self._write(ops, [f"{K_BLOCK_CALLER}:{n}" for n in nums], meta)
        return nums

    async def unblock_caller(self, numbers: Iterable[str]) -> list[str]:
        nums = _numbers_or_raise(numbers)

        def ops(p: Any) -> None:
            p.srem(self.key(K_BLOCK_CALLER), *nums)
            self._journal(p, "srem", K_BLOCK_CALLER, nums)
            p.delete(*[self.key(f"{P_META}{K_BLOCK_CALLER}:{n}") for n in nums])

        await self._write(ops)
        return nums

    async def allow_caller(
        self, number: str, until: float | None = None, meta: Mapping[str, str] | None = None
    ) -> str:
        """SADD allow:caller; with `until`, ZADD allow:caller:expiry too."""
        n = _numbers_or_raise([number])[0]

        def ops(p: Any) -> None:
            p.sadd(self.key(K_ALLOW_CALLER), n)
            self._journal(p, "sadd", K_ALLOW_CALLER, [n])
            if until is not None:
                p.zadd(self.key(K_ALLOW_EXPIRY), {n: until})
                self._journal(p, "zadd", K_ALLOW_EXPIRY, [repr(float(until)), n])
            else:
                p.zrem(self.key(K_ALLOW_EXPIRY), n)
                self._journal(p, "zrem", K_ALLOW_EXPIRY, [n])

        await self._write(ops, [f"{K_ALLOW_CALLER}:{n}"], meta)
        return n

    async def disallow_caller(self, numbers: Iterable[str]) -> list[str]:
        nums = _numbers_or_raise(numbers)

        def ops(p: Any) -> None:
            p.srem(self.key(K_ALLOW_CALLER), *nums)
            self._journal(p, "srem", K_ALLOW_CALLER, nums)
            p.zrem(self.key(K_ALLOW_EXPIRY), *nums)
            self._journal(p, "zrem", K_ALLOW_EXPIRY, nums)

        await self._write(ops)
        return nums

    async def block_prefix(
        self,
        prefixes: Iterable[str],
        meta: Mapping[str, str] | None = None,
        *,
        remove: bool = False,
    ) -> list[str]:
        good: list[str] = []
        for raw in prefixes:
            p = valid_prefix(raw)
            if p is None:
                raise StoreError(f"prefix {raw!r}: expected '+' and 1-15 digits, e.g. +1202555")
            good.append(p)
        key = self.key(K_BLOCK_PREFIX)
        op = "srem" if remove else "sadd"

        def ops(p: Any) -> None:
            p.execute_command(op.upper(), key, *good)
            self._journal(p, op, K_BLOCK_PREFIX, good)

        await self._write(
            ops,
            [] if remove else [f"{K_BLOCK_PREFIX}:{g}" for g in good],
            meta,
        )
        return good

    async def block_provider(
        self, ids: Iterable[str], meta: Mapping[str, str] | None = None, *, remove: bool = False
    ) -> list[str]:
        good = list(ids)
        for pid in good:
            if not _valid_plain("provider id", pid):
                raise StoreError(f"provider id {pid!r}: letters, digits, '_', '-', '.' only")
        key = self.key(K_BLOCK_PROVIDER)
        op = "srem" if remove else "sadd"

        def ops(p: Any) -> None:
            p.execute_command(op.upper(), key, *good)
            self._journal(p, op, K_BLOCK_PROVIDER, good)

        await self._write(
            ops,
            [] if remove else [f"{K_BLOCK_PROVIDER}:{g}" for g in good],
            meta,
        )
        return good

    async def set_provider(self, pid: str, **fields: str) -> dict[str, str]:
        """HSET provider:<id> with validated fields; returns what was written."""
        if not _valid_plain("provider id", pid):
            raise StoreError(f"provider id {pid!r}: letters, digits, '_', '-', '.' only")
        allowed = {
            "name",
            "rmd_status",
            "rmd_order",
            "rmd_since",
            "frn",
            "rmd_number",
            "ocn",
            "monitor_only",
            "trunks",
            "ocns",  # more signing OCNs (STIR/SHAKEN), comma list
            "rmd_ocn",  # the RMD filing's OCN
            "implementation",  # the RMD filing's STIR/SHAKEN implementation claim
        }
        out: dict[str, str] = {}
        for k, v in fields.items():
            if k not in allowed:
                raise StoreError(f"provider field {k!r}: not one of {', '.join(sorted(allowed))}")
            if k == "rmd_status" and v not in RMD_STATUSES:
                raise StoreError(
                    f"rmd_status {v!r}: must be one of {', '.join(sorted(RMD_STATUSES))}"
                )
            if k == "monitor_only" and v not in ("0", "1"):
                raise StoreError(f"monitor_only {v!r}: must be 0 or 1")
            out[k] = v
        if out:
            await self._write(lambda p: p.hset(self.key(P_PROVIDER + pid), mapping=cast(Any, out)))
        return out


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------


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


def _repr_bytes(b: bytes) -> bytes:
    """Redis's sdscatrepr of a key prefix, as MONITOR prints it."""
    out = bytearray()
    for c in b:
        if c in (0x5C, 0x22):
            out += b"\\" + bytes((c,))
        elif 0x20 <= c < 0x7F:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out)


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def _valid_plain(what: str, m: str) -> bool:
    if what == "npa":
        return len(m) == 3 and m.isdigit() and m[0] not in "01"
    if what == "nxx":
        return len(m) == 6 and m.isdigit() and m[0] not in "01" and m[3] not in "01"
    # provider id: a short printable token.
    return 0 < len(m) <= 64 and all(c.isalnum() or c in "_-." for c in m) and m.isascii()


def _empty_value(kind: str) -> Any:
    return {
        "numbers": NumberSet(),
        "prefix": PrefixSet(),
        "provider_set": set(),
        "npa": None,
        "nxx": None,
        "expiry": {},
        "rmd_current": "",
    }[kind]


def _drop_notice(snap: Snapshot, nid: str) -> None:
    for prov, lst in list(snap.notices.items()):
        kept = [n for n in lst if n.id != nid]
        if len(kept) != len(lst):
            if kept:
                snap.notices[prov] = kept
            else:
                del snap.notices[prov]


def _numbers_or_raise(numbers: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in numbers:
        n = _number(raw.strip())
        if n is None:
            raise StoreError(f"number {raw!r}: not an E.164 phone number")
        out.append(n)
    if not out:
        raise StoreError("no number given")
    return out


def _iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
