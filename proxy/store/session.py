"""The store's long-running task: connect, check the generation stamp, load,
follow; on any Redis error keep the last snapshot and reconnect with jittered
backoff (see the package docstring: Redis down, Redis back empty, Sentinel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.store.feed import _NEEDED_FLAGS, Feed
from proxy.store.keys import CONFIRMED, GENERATION_POLL, K_GENERATION, KEY_KINDS, _glob_escape
from proxy.store.state import BACKOFF_MAX, BACKOFF_MIN, PING_TIMEOUT, _client, _exc_text, _safe_url

log = logging.getLogger("sipscreen.store")


class Session(Feed):
    """`run()`: one session per connection, reconnecting forever."""

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
        """True when the data under the prefix may be loaded (proxy/store/__init__.py:
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
        async with asyncio.timeout(PING_TIMEOUT):  # not wait_for: records/writer.py run
            await data.ping()
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
                # (`records`, `records:ix:*`, proxy/records/): their ~10
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

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until a session has loaded and is following edits."""
        async with asyncio.timeout(timeout):  # not wait_for (records/writer.py run)
            await self.synced.wait()
