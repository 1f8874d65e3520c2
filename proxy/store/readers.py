"""How each kind of key is read and validated: the number sets by the bulk
path (SSCAN replies kept as bytes, the next SSCAN in flight while a batch is
converted, a batch of canonical members checked at once by
`keys._canonical_joined` and kept in one `array('q')`, the NumberSet laid out
by `NumberSet.from_ints`), prefixes, plain sets, the allowlist expiries and the
provider / notice / order hashes. A bad member is skipped with one WARNING
(past WARN_PER_KEY per key and load, a count), never raised.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis

from proxy.store.keys import (
    RMD_STATUSES,
    _canonical_joined,
    _glob_escape,
    _number,
    _valid_plain,
    valid_prefix,
)
from proxy.store.state import StoreState
from rules.notices import notice_from_record
from rules.orders import order_from_record
from rules.snapshot import RMD_STATUSES as SNAP_RMD_STATUSES
from rules.snapshot import Notice, NumberSet, Order, PrefixSet, Provider, parse_campaigns

log = logging.getLogger("sipscreen.store")

SCAN_COUNT = 20_000
PROGRESS_EVERY = 1_000_000
WARN_PER_KEY = 20  # invalid members logged one by one per key and load


class _BadCount:
    """One WARNING per invalid member for the first WARN_PER_KEY, then a count."""

    __slots__ = ("store", "key", "why", "count")

    def __init__(self, store: StoreState, key: str, why: str) -> None:
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


class Readers(StoreState):
    """Reads one key of each kind, validating every value."""

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
        vals: array[int] = array("q")  # the canonical members
        extend = vals.extend
        bad = _BadCount(self, key, "not a phone number")
        # members spelt otherwise (NumberSet.spellings): number -> spellings
        spellings: dict[int, set[str]] = {}

        def take(batch: list[bytes]) -> None:
            if _canonical_joined(batch) is not None:
                # int() reads b"+12025550123" itself: no slicing, no decode.
                extend(map(int, batch))
                return
            for m in batch:
                text = m.decode("utf-8", "replace")
                n = _number(text)
                if n is None:
                    bad(text)
                elif n == text:
                    vals.append(int(n[1:]))
                else:
                    spellings.setdefault(int(n[1:]), set()).add(text)

        await self._scan_raw(r, key, take)
        bad.summary()
        if spellings:
            # (one pass over the canonical members, no set of them all)
            for n in set(spellings).intersection(vals):
                spellings[n].add(f"+{n}")  # its canonical spelling is a member too
            extend(spellings)
        out = NumberSet.from_ints(vals)
        out.spellings = spellings
        return out

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
