"""Redis is the source of truth; this package keeps `rules.Snapshot` in step.

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

Where things are: `snapshot_store.SnapshotStore` is the object the proxy and
the CLI use, assembled from `state.StoreState` (what it holds),
`readers.Readers` and `loader.Loader` (the full load), `edits.LiveEdits` (how
an edit reaches the snapshot), `feed.Feed` (MONITOR, keyspace, journal),
`session.Session` (`run()`, reconnects, generation) and `writers.Writers`;
`keys.py` is the key schema and `monitor_line.py` the MONITOR-line parser,
both pure. docs/DESIGN.md has the table.
"""
