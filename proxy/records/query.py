"""Reading records back: `export` (CSV or JSON lines) and `summary` (counts
by day, rule and action), through the index sorted sets when a callee,
caller or provider is given, else over the stream filtered inside Redis a
page at a time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import redis.asyncio as aioredis

from proxy.records.schema import FIELDS, INDEX, STREAM
from proxy.records.wire import _send, _text

PAGE = 5000
FETCH_PAGE = 1000
# How far back a provider query looks when no --since is given (the day
# keys expire with the retention; a missing day key costs one empty reply).
PROVIDER_LOOKBACK_DAYS = 400


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
