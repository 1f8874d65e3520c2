"""Decision records: what was blocked (and a sample of what was allowed), why.

How this works: 47 CFR 64.1200(k)(4) and the traceback duty (answer within
24 hours, 64.1200(n)(1); notify the FCC before blocking a provider's whole
traffic) and the subscriber's right to the list of its calls blocked in the
last 28 days mean every blocking decision must be kept with the facts it was
based on and be findable later by callee, caller and provider
(shared/DOMAIN.md "Records").

* `proxy/screen.py` builds the record on the record path only (blocked,
  would-block, `--monitor`, sampled allows) with every column of `FIELDS`;
  strings received from the network (Call-ID, raw headers, provider header)
  are cut by `clip()` to a configured size, ending in `…[+N]` (N = the
  characters cut), so an attacker's 30 KB Call-ID costs at most a few
  hundred bytes in the buffer, the stream and the JSON log.
* `RecordWriter.append(record)` is called on the hot path: it only appends
  the dict to an in-memory deque (no await, no I/O), bounded both by count
  (`queue_max`) and by bytes (`queue_max_bytes`, the dict and its strings
  as `sys.getsizeof` counts them). When either bound is reached the oldest
  records go first; `dropped_by_reason` counts them (`buffer_count`,
  `buffer_bytes`). It never raises and never blocks a call.
* `RecordWriter.run()` is a background task: it drains the deque in batches,
  two pipelined round trips per batch: `XADD <prefix>records *` for each
  record (the stream ID is the Redis server time in ms, when the record was
  written), then `ZADD` of the returned stream IDs, each scored by its own
  ms, into the index sorted sets `<prefix>records:ix:callee:<E.164>`,
  `...:ix:caller:<E.164>` and `...:ix:provider:<id>:<YYYY-MM-DD>` (the UTC
  day of the write), one ZADD per key. An index key touched by a batch has
  its members older than `max_age_s` removed (`ZREMRANGEBYSCORE`) and its
  TTL set to `max_age_s` (`PEXPIRE`), at most once per `trim_every_s` (or
  half the retention, when shorter) for a key written again and again (a
  busy callee, a provider's day), so an index entry outlives the retention
  by at most that plus the retention and an idle key expires whole. (Plain commands,
  not a Lua script: a script writing a batch blocked Redis ~100 ms per 1,000
  records; these interleave with the store's reads.) Every time filter is
  on this write time (the stream ID), also under a replay clock; the
  record's `ts` is the decision time (the same but for the moments a record
  waits in the buffer, longer while Redis is down). If Redis is down,
  records wait in the deque (bounded as above) and the flush is retried
  with backoff; if only the index pipeline fails, the batch stays in the
  stream unindexed (`unindexed` counts it; `export(scan=True)` finds it).
* Retention is by age: every `trim_every_s` the writer trims the stream with
  `XTRIM <prefix>records MINID ~ <now - max_age_s in ms>`, off the hot path
  (default 30 days, so a subscriber's 28-day list can always be produced).
  `max_len` > 0 adds a count ceiling (`XADD MAXLEN ~`), off by default.
* `export()` streams records as CSV (a header, then `id` and `FIELDS`) or JSON
  lines (every field). With a callee, caller or provider filter it reads
  the matching index (callee first, then caller, then provider's day keys)
  with `ZRANGEBYSCORE` over the time range and fetches those
  entries by ID (`XRANGE id id`, pipelined a page at a time); the other
  filters (rule, action, ...) are applied to what comes back. Without one of
  those filters (or with `scan=True`, for records written before the
  indexes existed) it reads `XRANGE` over the stream-ID range, filtering
  inside Redis a page at a time (`_FILTER_PAGE`).
* `summary()` counts the records of one provider by day, rule and action,
  through the provider index.
* Spool (issue 10.9): records still queued when the process stops (Redis
  down, or slower than the last 2 s flush) are written by `spool()` to a JSON
  lines file in the spool directory (`[records] spool_dir`), named after the
  Redis URL and key prefix and renamed into place once complete. The next
  start runs `replay_spool()` before any worker: every spooled file of the same
  URL and prefix is XADDed to the stream (the record's own `ts` field keeps its
  decision time; the stream ID is the replay time) and deleted once written. A
  file that cannot be written back (Redis still down) stays for the next start.
"""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = [
    "DROP_REASONS",
    "FIELDS",
    "RecordWriter",
    "clip",
    "default_spool_dir",
    "export",
    "index_keys",
    "iso_ms",
    "replay_spool",
    "spool_name",
    "summary",
]

log = logging.getLogger("sipscreen.records")

# The columns of a record, in export order (DOMAIN.md "Records").
FIELDS = (
    "ts",  # decision time, ISO-8601 UTC with ms
    "call_id",  # as received (clipped)
    "source",  # ip:port the INVITE came from ([v6]:port)
    "transport",  # udp / tcp
    "provider",  # upstream provider id (trunk map or trusted SBC header)
    "ocn",  # SHAKEN signer OCN when verified
    "caller",  # normalised E.164 (PAI, else From)
    "callee",  # normalised E.164 (Request-URI, else To)
    "caller_raw",  # From URI user part as received
    "callee_raw",  # Request-URI user part as received
    "caller_private",  # 1 when Privacy: id/user
    "pai",  # P-Asserted-Identity header(s) as received
    "from",  # From header value as received
    "identity",  # Identity header(s) as received (RFC 8224)
    "rule",
    "citation",
    "reason",
    "detail",  # notice id (k4; n2 id:campaign), order id (fdo, RMD removal), prefix
    "action",  # reject / would_block / monitor / allow
    "monitor",  # 1 when the proxy ran with --monitor
    "status",  # SIP status sent (reject only)
    "snapshot_version",
    "attest",  # SHAKEN attestation A/B/C when the Identity verified ([shaken] on)
    "verstat",  # ATIS-1000074: TN-Validation-Passed / -Failed / No-TN-Validation ([shaken] on)
    "shaken_reason",  # why it did not pass: unsigned, cert_pending, stale, bad_signature, ...
    "matched_by",  # provider rules: "trunk" (the provider it came from) or "signature" (its signer)
)
STREAM = "records"
INDEX = "records:ix:"
PAGE = 5000
FETCH_PAGE = 1000
# How far back a provider query looks when no --since is given (the day
# keys expire with the retention; a missing day key costs one empty reply).
PROVIDER_LOOKBACK_DAYS = 400
DROP_REASONS = ("buffer_count", "buffer_bytes", "error")
MIB = 1 << 20


def iso_ms(ts: float) -> str:
    """ISO-8601 UTC with milliseconds: `2026-11-29T12:00:00.123Z`."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def clip(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, marked `…[+N]` when cut (N = cut).

    Received strings are latin-1 decoded, so a character is a received byte.
    The result is at most `limit` characters long, marker included (only
    the marker when `limit` is shorter than it; limit 0 = no cut).
    """
    if limit <= 0 or len(value) <= limit:
        return value
    cut = len(value) - limit
    while True:
        mark = f"…[+{cut}]"
        keep = max(limit - len(mark), 0)
        if len(value) - keep == cut:
            return value[:keep] + mark
        cut = len(value) - keep


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def index_keys(prefix: str, rec: dict[str, str], day: str) -> list[str]:
    """The index sorted sets a record written on `day` (UTC, YYYY-MM-DD)
    goes into (an empty caller, callee or provider has none)."""
    keys = []
    ix = prefix + INDEX
    if callee := rec.get("callee"):
        keys.append(f"{ix}callee:{callee}")
    if caller := rec.get("caller"):
        keys.append(f"{ix}caller:{caller}")
    if provider := rec.get("provider"):
        keys.append(f"{ix}provider:{provider}:{day}")
    return keys


def _size(rec: dict[str, str]) -> int:
    """Bytes a queued record holds: the dict, its values, the queue slot."""
    return sys.getsizeof(rec) + sum(map(sys.getsizeof, rec.values())) + 64


async def _send(redis: aioredis.Redis, cmds: list[tuple[Any, ...]], replies: int) -> list[Any]:
    """Send the commands in one write (packed by hiredis) on a pooled
    connection and read `replies` raw replies. Through a redis-py pipeline
    (its per-argument encoding, per-reply parsing and callbacks) the
    writer's CPU per record was 2-3x higher, and an export's per-ID fetch
    ~3x slower."""
    pool = cast(Any, redis.connection_pool)
    try:
        conn = await pool.get_connection()
    except TypeError:  # redis-py < 5.3 wants a command name
        conn = await pool.get_connection("XADD")
    try:
        await conn.send_packed_command([b"".join(map(hiredis.pack_command, cmds))])
        out = [await conn.read_response() for _ in range(replies)]
        for r in out:
            if isinstance(r, Exception):
                raise r
    except BaseException:
        await conn.disconnect()  # its state (replies due, reply mode) is unknown now
        raise
    finally:
        await pool.release(conn)
    return out


class RecordWriter:
    """Bounded, non-blocking queue of records flushed to a Redis stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str,
        max_len: int,
        max_age_s: float,
        *,
        queue_max: int = 100_000,
        queue_max_bytes: int = 32 * MIB,
        batch: int = 1000,
        linger_s: float = 0.05,
        trim_every_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.key = prefix + STREAM
        self.max_len = max_len
        self.max_age_s = max_age_s
        self.batch = batch
        # After the first record wakes the writer it waits this long, so that a
        # burst of blocks goes out as one batch (two round trips) instead of
        # two round trips per record.
        self.linger_s = linger_s
        self.trim_every_s = trim_every_s
        self.clock = clock
        self.dropped = 0
        self.dropped_by_reason: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.written = 0
        self.unindexed = 0  # written, but the index write after it failed
        self.bytes = 0  # what the queued records hold (see _size)
        self._queue: collections.deque[tuple[dict[str, str], int]] = collections.deque()
        self._queue_max = queue_max
        self._queue_max_bytes = queue_max_bytes
        self._wake = asyncio.Event()
        self._failing = False
        self._trimmed_at = 0.0
        # Index key -> when this writer last trimmed it and set its TTL
        # (monotonic): a key written again within `_retrim_s` gets its ZADD
        # only (a busy callee's or provider-day key, once per batch else).
        self._key_trimmed: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped += n
        self.dropped_by_reason[reason] += n

    def take_all(self) -> list[dict[str, str]]:
        """Everything queued, oldest first, leaving the queue empty (for the spool)."""
        out = [rec for rec, _ in self._queue]
        self._queue.clear()
        self.bytes = 0
        return out

    def append(self, record: dict[str, str]) -> None:
        """Queue one record (hot path: no await, no I/O, never raises)."""
        size = _size(record)
        q = self._queue
        # The oldest go first: the newest are worth more. `bytes` includes
        # the batch being written (it is still held until Redis took it).
        while q and len(q) >= self._queue_max:
            self.bytes -= q.popleft()[1]
            self._drop("buffer_count")
        while q and self.bytes + size > self._queue_max_bytes:
            self.bytes -= q.popleft()[1]
            self._drop("buffer_bytes")
        if self.bytes + size > self._queue_max_bytes or self._queue_max <= 0:
            self._drop("buffer_bytes" if self._queue_max > 0 else "buffer_count")
            return
        q.append((record, size))
        self.bytes += size
        if not self._wake.is_set():
            self._wake.set()

    def _put_back(self, chunk: list[tuple[dict[str, str], int]]) -> None:
        # In order, in front of what came meanwhile, still bounded by count
        # (their bytes are still counted in `bytes`): what does not fit is
        # dropped (the newer records queued meanwhile stay).
        q = self._queue
        for item in reversed(chunk):
            if len(q) >= self._queue_max:
                self.bytes -= item[1]
                self._drop("buffer_count")
            else:
                q.appendleft(item)

    async def flush(self) -> int:
        """Write everything queued now; returns how many were written."""
        total = 0
        while self._queue:
            n = min(self.batch, len(self._queue))
            chunk = [self._queue.popleft() for _ in range(n)]
            try:
                await self._write([rec for rec, _ in chunk])
            except BaseException:
                self._put_back(chunk)
                raise
            self.bytes -= sum(item[1] for item in chunk)
            total += n
            self.written += n
        return total

    async def _write(self, chunk: list[dict[str, str]]) -> None:
        # 1. The records, in one write: their stream IDs come back. A
        #    failure here puts the batch back (a retry may duplicate a few
        #    records if the connection broke mid-batch).
        head: tuple[Any, ...] = ("XADD", self.key)
        if self.max_len > 0:
            head += ("MAXLEN", "~", self.max_len)
        head += ("*",)
        cmds: list[tuple[Any, ...]] = []
        for rec in chunk:
            args = list(head)
            for k in FIELDS:
                args += (k, rec.get(k, ""))
            for k, v in rec.items():
                if k not in FIELDS:
                    args += (k, v)
            cmds.append(tuple(args))
        ids = await self._send(cmds, len(cmds))
        # 2. The indexes, in one write: each ID scored by its own ms (the
        #    server's time), one ZADD per key, then per key touched the trim
        #    and TTL of the retention. A failure here leaves the batch in the
        #    stream (found by a scan) and is counted, not retried.
        day = _day(int(self.clock() * 1000))
        members: dict[str, dict[str, int]] = {}
        for rec, sid in zip(chunk, ids, strict=True):
            sid = _text(sid)
            ms = int(sid.partition("-")[0])
            for key in index_keys(self.prefix, rec, day):
                members.setdefault(key, {})[sid] = ms
        keep_ms = int(self.max_age_s * 1000) if self.max_age_s > 0 else 0
        # A key's trim and TTL at most every `retrim` seconds (the periodic
        # trim's period, or half the retention when that is shorter): its
        # members then outlive the retention by at most that much, and each
        # of these commands is one more line in every worker's MONITOR feed.
        retrim = min(self.trim_every_s if self.trim_every_s > 0 else 60.0, self.max_age_s / 2)
        now_m = time.monotonic()
        trimmed = self._key_trimmed
        if len(trimmed) > 100_000:
            trimmed.clear()
        cmds = [("CLIENT", "REPLY", "OFF")]
        for key, m in members.items():
            zadd: list[Any] = ["ZADD", key]
            for sid, ms in m.items():
                zadd += (ms, sid)
            cmds.append(tuple(zadd))
            if keep_ms:
                last = trimmed.get(key)
                if last is not None and now_m - last < retrim:
                    continue
                trimmed[key] = now_m
                newest = max(m.values())
                cmds.append(("ZREMRANGEBYSCORE", key, "-inf", f"({newest - keep_ms}"))
                cmds.append(("PEXPIRE", key, keep_ms))
        cmds.append(("CLIENT", "REPLY", "ON"))
        try:
            # Only the ON answers: the index writes cost Redis a few µs each
            # and the client no reply to read.
            await self._send(cmds, 1)
        except (RedisError, OSError, TimeoutError) as exc:
            self.unindexed += len(chunk)
            log.warning("records: %d records written but not indexed (%s)", len(chunk), exc)

    async def _send(self, cmds: list[tuple[Any, ...]], replies: int) -> list[Any]:
        return await _send(self.redis, cmds, replies)

    async def trim(self) -> None:
        """Drop the stream entries older than `max_age_s` (by stream ID)."""
        if self.max_age_s <= 0:
            return
        min_id = max(int((self.clock() - self.max_age_s) * 1000), 0)
        await self.redis.xtrim(self.key, minid=min_id, approximate=True)

    async def _maybe_trim(self) -> None:
        t = time.monotonic()
        if self.trim_every_s > 0 and t - self._trimmed_at >= self.trim_every_s:
            self._trimmed_at = t
            await self.trim()

    async def run(self) -> None:
        """Flush and trim forever (cancel to stop; a last flush is attempted)."""
        delay = 0.1
        try:
            while True:
                wait = self.trim_every_s if self.trim_every_s > 0 else None
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
                if self.linger_s > 0 and self._queue:
                    await asyncio.sleep(self.linger_s)
                self._wake.clear()
                failed = False
                try:
                    await self.flush()
                    await self._maybe_trim()
                except (RedisError, OSError, TimeoutError) as exc:
                    failed = True
                    if not self._failing:
                        log.warning(
                            "records: Redis write failed (%s); %d records queued, retrying",
                            exc,
                            len(self._queue),
                        )
                        self._failing = True
                if failed:
                    # Outside the except block: the exception's traceback
                    # holds the failed batch's frames (their strings), which
                    # must not outlive their eviction from the buffer.
                    await asyncio.sleep(delay * (0.5 + random.random() / 2))
                    delay = min(delay * 2, 5.0)
                    self._wake.set()
                    continue
                if self._failing:
                    log.info("records: Redis writes back; %d dropped meanwhile", self.dropped)
                    self._failing = False
                delay = 0.1
        except asyncio.CancelledError:
            if self._queue:
                try:
                    await asyncio.wait_for(self.flush(), 2.0)
                except (RedisError, OSError, TimeoutError, asyncio.CancelledError):
                    pass
            raise


def default_spool_dir() -> str:
    """The spool directory when ``[records] spool_dir`` is not set: systemd's
    ``$STATE_DIRECTORY/spool`` (``StateDirectory=sipscreen``), else
    ``$XDG_STATE_HOME/sipscreen/spool`` (``~/.local/state/...``)."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return os.path.join(state.split(":")[0], "spool")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "sipscreen", "spool")


def spool_name(redis_url: str, prefix: str) -> str:
    """File name stem of the spool files of one Redis URL and key prefix."""
    tag = hashlib.blake2s(f"{redis_url}\n{prefix}".encode(), digest_size=8).hexdigest()
    return f"records-{tag}"


def spool(records: list[dict[str, str]], directory: str, redis_url: str, prefix: str) -> str:
    """Write ``records`` to a new spool file (JSON lines, renamed into place once
    complete); returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{spool_name(redis_url, prefix)}-{os.getpid()}-{time.time_ns()}"
    tmp = d / f".{stem}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    final = d / f"{stem}.jsonl"
    os.replace(tmp, final)
    return str(final)


def replay_spool(redis: Any, prefix: str, directory: str, redis_url: str, max_len: int = 0) -> int:
    """XADD every spooled record of ``redis_url``/``prefix`` found in ``directory``
    with the synchronous client ``redis``, deleting each file once written.
    Returns the number of records replayed."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    key = prefix + STREAM
    total = 0
    for path in sorted(d.glob(spool_name(redis_url, prefix) + "-*.jsonl")):
        recs = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    log.warning("records: %s line %d: not JSON, skipped", path, n)
                    continue
                if isinstance(rec, dict):
                    recs.append({str(k): str(v) for k, v in rec.items()})
        pipe = redis.pipeline(transaction=False)
        for rec in recs:
            if max_len > 0:
                pipe.xadd(key, rec, maxlen=max_len, approximate=True)
            else:
                pipe.xadd(key, rec)
        pipe.execute()
        path.unlink()
        total += len(recs)
    return total


def _stream_id(ts: float | None, default: str) -> str:
    return default if ts is None else str(max(int(ts * 1000), 0))


# Server-side filter for a traceback query (caller / provider / rule): one
# page of XRANGE is scanned inside Redis and only the matching entries come
# back, so a filtered export over a day of records moves a few rows, not
# every record, through the client. A page is bounded (PAGE entries), so
# Redis is never blocked for long. ARGV: lo, hi, count, caller, provider,
# rule ("" = any). Returns {last id of the page, page size, matches}.
_FILTER_PAGE = """
local page = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
local out = {}
local last = ''
for _, e in ipairs(page) do
  last = e[1]
  local f = e[2]
  local c, p, r = '', '', ''
  for j = 1, #f, 2 do
    local k = f[j]
    if k == 'caller' then c = f[j + 1]
    elseif k == 'provider' then p = f[j + 1]
    elseif k == 'rule' then r = f[j + 1] end
  end
  if (ARGV[4] == '' or c == ARGV[4]) and (ARGV[5] == '' or p == ARGV[5])
      and (ARGV[6] == '' or r == ARGV[6]) then
    out[#out + 1] = e
  end
end
return {last, #page, out}
"""


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _entry(sid: Any, fields: Any) -> tuple[str, dict[str, str]]:
    if isinstance(fields, list):  # from the script: a flat [k1, v1, k2, v2, ...]
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    return _text(sid), {_text(k): _text(v) for k, v in (fields or {}).items()}


def _match(rec: dict[str, str], want: dict[str, str | Iterable[str] | None]) -> bool:
    for k, v in want.items():
        if v is None:
            continue
        got = rec.get(k, "")
        if isinstance(v, str):
            if got != v:
                return False
        elif got not in v:
            return False
    return True


async def _indexed(
    redis: aioredis.Redis,
    prefix: str,
    keys: list[str],
    lo_ms: int,
    hi_ms: int,
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The entries the index keys list between two times (ms), in key order
    then time order (entries already trimmed from the stream are skipped)."""
    stream = prefix + STREAM
    lists = await _send(redis, [("ZRANGEBYSCORE", k, lo_ms, hi_ms) for k in keys], len(keys))
    # A sorted set orders equal scores (the same ms) by member, as text: put
    # the stream IDs back in stream order.
    ids = sorted((_text(sid) for ids in lists for sid in ids), key=_id_order)
    for i in range(0, len(ids), FETCH_PAGE):
        page = ids[i : i + FETCH_PAGE]
        cmds = [("XRANGE", stream, sid, sid, "COUNT", 1) for sid in page]
        for entries in await _send(redis, cmds, len(cmds)):
            for sid, fields in entries or ():
                yield _entry(sid, fields)


def _id_order(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


def _days(lo_ms: int, hi_ms: int) -> list[str]:
    day = dt.datetime.fromtimestamp(lo_ms / 1000, dt.UTC).date()
    last = dt.datetime.fromtimestamp(hi_ms / 1000, dt.UTC).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


async def _records(
    redis: aioredis.Redis,
    prefix: str,
    since: float | None,
    until: float | None,
    caller: str | None = None,
    provider: str | None = None,
    rule: str | None = None,
    *,
    callee: str | None = None,
    actions: Iterable[str] | None = None,
    scan: bool = False,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The matching records, in time order.

    With a callee, caller or provider (and not `scan`), through the indexes;
    else over the stream, filtered inside Redis a page at a time. Times are
    the stream-ID (write) time either way.
    """
    acts = None if actions is None else frozenset(actions)
    want: dict[str, str | Iterable[str] | None] = {
        "callee": callee,
        "caller": caller,
        "provider": provider,
        "rule": rule,
        "action": acts,
    }
    if not scan and (callee or caller or provider):
        hi_ms = int((clock() if until is None else until) * 1000)
        if since is not None:
            lo_ms = max(int(since * 1000), 0)
        elif callee or caller:
            lo_ms = 0
        else:
            lo_ms = max(hi_ms - PROVIDER_LOOKBACK_DAYS * 86_400_000, 0)
        ix = prefix + INDEX
        if callee:
            keys = [f"{ix}callee:{callee}"]
        elif caller:
            keys = [f"{ix}caller:{caller}"]
        else:
            # The day of a key is the writer's clock at the write, the score
            # the server's: a neighbour day's key may hold an edge entry.
            days = _days(lo_ms - 86_400_000, hi_ms + 86_400_000)
            keys = [f"{ix}provider:{provider}:{d}" for d in days]
        async for sid, rec in _indexed(redis, prefix, keys, lo_ms, hi_ms):
            if _match(rec, want):
                yield sid, rec
        return
    key = prefix + STREAM
    lo = _stream_id(since, "-")
    hi = _stream_id(until, "+")
    filtered = caller is not None or provider is not None or rule is not None
    while True:
        if filtered:
            last, n, page = await cast(Any, redis).eval(
                _FILTER_PAGE, 1, key, lo, hi, PAGE, caller or "", provider or "", rule or ""
            )
            entries = [_entry(sid, fields) for sid, fields in page]
            last_s = _text(last)
        else:
            raw = await redis.xrange(key, min=lo, max=hi, count=PAGE) or []
            n = len(raw)
            entries = [_entry(sid, fields) for sid, fields in raw]
            last_s = entries[-1][0] if entries else ""
        for sid, rec in entries:
            if _match(rec, want):
                yield sid, rec
        if n < PAGE or not last_s:
            return
        lo = "(" + last_s  # exclusive start (Redis >= 6.2)


async def export(
    redis: aioredis.Redis,
    prefix: str,
    since: float | None = None,
    until: float | None = None,
    caller: str | None = None,
    provider: str | None = None,
    rule: str | None = None,
    fmt: str = "csv",
    *,
    callee: str | None = None,
    actions: Iterable[str] | None = None,
    scan: bool = False,
) -> AsyncIterator[str]:
    """Yield the matching records as CSV lines (header first) or JSON lines."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"format must be csv or json, got {fmt!r}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(("id", *FIELDS))
        yield buf.getvalue()
    async for sid, rec in _records(
        redis,
        prefix,
        since,
        until,
        caller,
        provider,
        rule,
        callee=callee,
        actions=actions,
        scan=scan,
    ):
        if fmt == "json":
            yield json.dumps({"id": sid, **rec}, separators=(",", ":"), ensure_ascii=False) + "\n"
        else:
            buf.seek(0)
            buf.truncate()
            writer.writerow((sid, *(rec.get(f, "") for f in FIELDS)))
            yield buf.getvalue()


async def summary(
    redis: aioredis.Redis,
    prefix: str,
    provider: str,
    since: float | None = None,
    until: float | None = None,
) -> dict[tuple[str, str, str], int]:
    """Counts of one provider's records by (day, rule, action)."""
    out: dict[tuple[str, str, str], int] = {}
    async for sid, rec in _records(redis, prefix, since, until, provider=provider):
        # The decision's own time (a replay clock may differ from the
        # stream id, which is when the record was written).
        day = rec.get("ts", "")[:10]
        if len(day) != 10:
            ms = int(sid.split("-", 1)[0])
            day = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")
        k = (day, rec.get("rule", ""), rec.get("action", ""))
        out[k] = out.get(k, 0) + 1
    return out
