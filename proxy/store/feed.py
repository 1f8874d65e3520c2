"""Where the live edits come from: MONITOR (the primary feed), keyspace
notifications with the edit journal (when MONITOR is refused), or a full
reload every 30 s (when neither is available). See the package docstring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from proxy.store.edits import LiveEdits
from proxy.store.keys import _JOURNAL_OPS, JOURNAL_GRACE, K_JOURNAL, KEY_KINDS, P_META
from proxy.store.monitor_line import _RECORD_WRITES, parse_monitor_line
from proxy.store.state import PING_INTERVAL, PING_TIMEOUT

log = logging.getLogger("sipscreen.store")

# Flags the store needs in notify-keyspace-events: K keyspace channel, g
# generic (del, rename, expire), s set, h hash, z zset, $ string, x expired,
# e evicted, t stream (the edit journal's XADD). "A" is the alias of "g$lshzxet".
_NEEDED_FLAGS = "Kgs$hzxet"
_ALIAS_A = "g$lshzxet"


def needed_notify_flags(current: str) -> str:
    """`current` notify-keyspace-events plus what the store needs (never less)."""
    have = set(current)
    if "A" in have:
        have |= set(_ALIAS_A)
    missing = "".join(c for c in _NEEDED_FLAGS if c not in have)
    return current + missing


class Feed(LiveEdits):
    """Follows Redis's writes and hands each to `apply_argv`."""

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
        rec_q = pfx_q + b"records"  # proxy/records/: the stream and its indexes
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
        # and when the oldest arrived (proxy/store/__init__.py, "edit journal").
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
                continue  # the decision records (proxy/records/): no snapshot key
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
            async with asyncio.timeout(PING_TIMEOUT):  # not wait_for: records/writer.py run
                await r.ping()
