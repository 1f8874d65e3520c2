"""Decision records: what was blocked (and a sample of what was allowed), why.

How this works: 47 CFR 64.1200(k)(4) and the traceback duty (answer within
24 hours, notify the FCC before blocking a provider's whole traffic) mean
every blocking decision must be kept with the facts it was based on and be
searchable later (shared/DOMAIN.md "Records").

* `RecordWriter.append(record)` is called on the hot path: it only appends
  the dict to a bounded in-memory deque (no await, no I/O). When the deque is
  full the oldest record is dropped and `dropped` counts it.
* `RecordWriter.run()` is a background task: it drains the deque in batches
  into the Redis stream `<prefix>records` with one pipelined round trip per
  batch (`XADD ... MAXLEN ~ max_len * field value ...`) and trims by age
  (`XTRIM ... MINID ~ <now - max_age_s in ms>`). The stream ID is the Redis
  server time in ms, so a time range is an `XRANGE` between two IDs. If Redis
  is down, records wait in the deque and the flush is retried with backoff.
* Spool (issue 10.9): records still queued when the process stops (Redis
  down, or slower than the last 2 s flush) are written by `spool()` to a JSON
  lines file in the spool directory (`[records] spool_dir`), named after the
  Redis URL and key prefix and renamed into place once complete. The next
  start runs `replay_spool()` before any worker: every spooled file of the same
  URL and prefix is XADDed to the stream (the record's own `ts` field keeps its
  decision time; the stream ID is the replay time) and deleted once written. A
  file that cannot be written back (Redis still down) stays for the next start.
* `export()` streams a time range as CSV (with a header) or JSON lines, with
  optional caller/provider/rule filters, reading `XRANGE` in pages.
* `summary()` counts the records of one provider by day, rule and action.
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
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = [
    "FIELDS",
    "RecordWriter",
    "default_spool_dir",
    "export",
    "iso_ms",
    "replay_spool",
    "spool_name",
    "summary",
]

log = logging.getLogger("sipscreen.records")

# The columns of a record, in export order (DOMAIN.md "Records").
FIELDS = (
    "ts",
    "call_id",
    "source",
    "provider",
    "ocn",
    "caller",
    "callee",
    "rule",
    "citation",
    "reason",
    "action",
    "monitor",
    "snapshot_version",
)
STREAM = "records"
PAGE = 5000


def iso_ms(ts: float) -> str:
    """ISO-8601 UTC with milliseconds: `2026-11-29T12:00:00.123Z`."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


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
        batch: int = 1000,
        linger_s: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.key = prefix + STREAM
        self.max_len = max_len
        self.max_age_s = max_age_s
        self.batch = batch
        # After the first record wakes the writer it waits this long, so that a
        # burst of blocks goes out as one pipeline (one XADD per record, one
        # round trip) instead of one round trip per record.
        self.linger_s = linger_s
        self.clock = clock
        self.dropped = 0
        self.written = 0
        self._queue: collections.deque[dict[str, str]] = collections.deque()
        self._queue_max = queue_max
        self._wake = asyncio.Event()
        self._failing = False

    def __len__(self) -> int:
        return len(self._queue)

    def take_all(self) -> list[dict[str, str]]:
        """Everything queued, oldest first, leaving the queue empty (for the spool)."""
        out = list(self._queue)
        self._queue.clear()
        return out

    def append(self, record: dict[str, str]) -> None:
        """Queue one record (hot path: no await, no I/O)."""
        q = self._queue
        if len(q) >= self._queue_max:
            q.popleft()  # the oldest goes first: the newest are worth more
            self.dropped += 1
        q.append(record)
        if not self._wake.is_set():
            self._wake.set()

    async def flush(self) -> int:
        """Write everything queued now; returns how many were written."""
        total = 0
        while self._queue:
            n = min(self.batch, len(self._queue))
            chunk = [self._queue.popleft() for _ in range(n)]
            try:
                await self._write(chunk)
            except BaseException:
                # Put them back in order, still bounded.
                for rec in reversed(chunk):
                    if len(self._queue) >= self._queue_max:
                        self.dropped += 1
                        continue
                    self._queue.appendleft(rec)
                raise
            total += n
            self.written += n
        return total

    async def _write(self, chunk: list[dict[str, str]]) -> None:
        async with self.redis.pipeline(transaction=False) as p:
            for rec in chunk:
                fields = {k: rec.get(k, "") for k in FIELDS}
                for k, v in rec.items():
                    if k not in fields:
                        fields[k] = v
                if self.max_len > 0:
                    p.xadd(self.key, cast(Any, fields), maxlen=self.max_len, approximate=True)
                else:
                    p.xadd(self.key, cast(Any, fields))
            if self.max_age_s > 0:
                min_id = int((self.clock() - self.max_age_s) * 1000)
                p.xtrim(self.key, minid=max(min_id, 0), approximate=True)
            await p.execute()

    async def run(self) -> None:
        """Flush forever (cancel to stop; a last flush is attempted)."""
        delay = 0.1
        try:
            while True:
                await self._wake.wait()
                if self.linger_s > 0:
                    await asyncio.sleep(self.linger_s)
                self._wake.clear()
                try:
                    await self.flush()
                except (RedisError, OSError, TimeoutError) as exc:
                    if not self._failing:
                        log.warning(
                            "records: Redis write failed (%s); %d records queued, retrying",
                            exc,
                            len(self._queue),
                        )
                        self._failing = True
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


async def _records(
    redis: aioredis.Redis,
    prefix: str,
    since: float | None,
    until: float | None,
    caller: str | None = None,
    provider: str | None = None,
    rule: str | None = None,
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """The records between two times, in order; with a filter, only those
    that match it (filtered inside Redis, a page at a time)."""
    key = prefix + STREAM
    lo = _stream_id(since, "-")
    hi = _stream_id(until, "+")
    filtered = caller is not None or provider is not None or rule is not None
    while True:
        if filtered:
            last, n, page = await cast(Any, redis).eval(
                _FILTER_PAGE, 1, key, lo, hi, PAGE, caller or "", provider or "", rule or ""
            )
            for sid, fields in page:
                yield _entry(sid, fields)
            last_s = _text(last)
        else:
            entries = await redis.xrange(key, min=lo, max=hi, count=PAGE) or []
            n = len(entries)
            for sid, fields in entries:
                yield _entry(sid, fields)
            last_s = _text(entries[-1][0]) if entries else ""
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
) -> AsyncIterator[str]:
    """Yield the matching records as CSV lines (header first) or JSON lines."""
    if fmt not in ("csv", "json"):
        raise ValueError(f"format must be csv or json, got {fmt!r}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(("id", *FIELDS))
        yield buf.getvalue()
    async for sid, rec in _records(redis, prefix, since, until, caller, provider, rule):
        if fmt == "json":
            yield json.dumps({"id": sid, **rec}, separators=(",", ":")) + "\n"
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
