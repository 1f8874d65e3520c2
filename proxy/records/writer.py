"""`RecordWriter`: the bounded, non-blocking buffer of the hot path and the
background task that writes it to the stream and the indexes (see the
package docstring for the bounds, batches, retention and retries)."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.records.schema import FIELDS, STREAM, _day, index_keys
from proxy.records.wire import _send, _text

log = logging.getLogger("sipscreen.records")

DROP_REASONS = ("buffer_count", "buffer_bytes", "error")
MIB = 1 << 20


def _size(rec: dict[str, str]) -> int:
    """Bytes a queued record holds: the dict, its values, the queue slot."""
    return sys.getsizeof(rec) + sum(map(sys.getsizeof, rec.values())) + 64


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
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses
                    # a cancellation that lands as the event is set (the retry
                    # path sets it), and cancelling run() then never ended it
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
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
                    async with asyncio.timeout(2.0):
                        await self.flush()
                except (RedisError, OSError, TimeoutError, asyncio.CancelledError):
                    pass
            raise
