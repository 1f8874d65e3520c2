"""The full load: every key of the schema read (readers.py), a new Snapshot
built aside and swapped in by one assignment (`load_full`).

`_read_part` / `_install` read one key aside and swap it into a snapshot: the
live feed re-reads a key the same way (edits.py).
"""

from __future__ import annotations

import logging
import time
from typing import cast

import redis.asyncio as aioredis

from proxy.store.keys import KEY_KINDS, NUMBER_SETS, P_NOTICE, P_ORDER, P_PROVIDER
from proxy.store.readers import Readers
from proxy.store.state import _client, _drop_notice, _Part
from rules.snapshot import NumberSet, PrefixSet, Snapshot

log = logging.getLogger("sipscreen.store")


class Loader(Readers):
    """Reads the schema into a Snapshot built aside (`load_full`)."""

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
