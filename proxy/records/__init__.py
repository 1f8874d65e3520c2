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

Where things are (docs/DESIGN.md has the table): `schema.py` the columns
(`FIELDS`), the stream and index key names, `clip`, `iso_ms`, `index_keys`
(pure); `wire.py` the packed hiredis write and raw replies; `writer.py`
`RecordWriter`; `spool_files.py` the spool; `query.py` `export` and
`summary`. The names below are the package's interface; the modules import
one another, never this file.
"""

from __future__ import annotations

from proxy.records.query import export, summary
from proxy.records.schema import FIELDS, clip, index_keys, iso_ms
from proxy.records.spool_files import default_spool_dir, replay_spool, spool, spool_name
from proxy.records.writer import DROP_REASONS, RecordWriter

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
    "spool",
    "spool_name",
    "summary",
]
