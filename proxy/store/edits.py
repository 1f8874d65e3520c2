"""How one write seen on Redis reaches the snapshot.

`apply_argv` takes one executed command (as MONITOR shows it, or as the edit
journal spells it): member edits of the sets are applied in place between two
INVITEs (`_apply_in_place`, O(edit)); any other command on one of our keys
re-reads that key aside and swaps it in (`_reread`), with the edits that
arrive meanwhile buffered and replayed on the fresh copy; FLUSHDB and the like
reload everything aside (`_reload_aside`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import redis.asyncio as aioredis

from proxy.store.keys import (
    _HASH_PREFIXES,
    KEY_KINDS,
    NUMBER_SETS,
    _empty_value,
    _number,
    _valid_plain,
    valid_prefix,
)
from proxy.store.loader import Loader
from proxy.store.state import _Part
from rules.snapshot import NumberSet

log = logging.getLogger("sipscreen.store")

# Commands that change no member of an existing key (expiry arrives later as
# an `expired` keyspace event).
_NO_CONTENT_CHANGE = frozenset(
    {"expire", "pexpire", "expireat", "pexpireat", "persist", "touch", "object", "watch"}
)


class LiveEdits(Loader):
    """Applies executed Redis commands to the snapshot in force."""

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
            return True
        if kind == "numbers" and cmd in ("sadd", "srem"):
            ns: NumberSet = getattr(snap, NUMBER_SETS[rel])
            # by member: one number may be a member under several spellings
            op = ns.add_member if cmd == "sadd" else ns.remove_member
            for m in members:
                n = _number(m)
                if n is None:
                    self._warn(key, m, "not a phone number")
                else:
                    op(m, int(n[1:]))
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
            return True
        if kind == "expiry" and cmd == "zrem":
            for m in members:
                n = _number(m)
                if n is not None:
                    snap.allow_expiry.pop(n, None)
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

    def compact(self) -> None:
        """Fold NumberSet deltas into their base arrays (off the hot path)."""
        snap = self.snapshot
        for attr in NUMBER_SETS.values():
            ns = getattr(snap, attr)
            fn = getattr(ns, "compact", None)
            if callable(fn):
                fn()
