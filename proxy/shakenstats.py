"""Per-provider STIR/SHAKEN traffic counts: what each provider's calls show.

How this works: with ``[shaken]`` on, the screener counts every screened
INVITE by upstream provider and outcome (:data:`OUTCOMES`: ``unsigned``,
``pending`` (certificate not cached yet), ``failed``, ``A``/``B``/``C``
(verified, by attestation)). Only providers of the snapshot are named (the
label set stays bounded); any other source counts as ``OTHER``.

Each count goes to two places, without an await or a Redis round trip on the
INVITE path:

- the metric ``sipscreen_shaken_provider_calls_total{provider,outcome}``
  (children bound once per provider);
- an in-memory table that a background task (started on the running loop at
  the first count, one per process and Redis prefix, kept across SIGHUP)
  adds to Redis every ``FLUSH_S`` seconds: HINCRBY on the hash
  ``<prefix>shaken:seen:<provider>`` (fields = outcomes, plus ``since``, the
  first flush), so ``sipscreen report shaken`` and ``report provider`` read
  every worker's and every host's counts. A Redis error keeps the counts for
  the next flush.

:func:`claim_vs_seen` (pure) puts the RMD implementation claim next to the
counts and flags a provider that certified "Complete STIR/SHAKEN
Implementation" and sends mostly unsigned traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "COMPLETE",
    "FLAG_MIN_CALLS",
    "FLUSH_S",
    "OTHER",
    "OUTCOMES",
    "ShakenStats",
    "claim_vs_seen",
    "seen_key",
]

log = logging.getLogger("sipscreen.shaken")

OUTCOMES = ("unsigned", "pending", "failed", "A", "B", "C")
OTHER = "(other)"  # a source that maps to no provider of the snapshot
FLUSH_S = 5.0
COMPLETE = "Complete STIR/SHAKEN Implementation"
FLAG_MIN_CALLS = 20  # fewer calls than this are not judged
FLAG_SIGNED_BELOW = 0.5  # "mostly unsigned": under half of the calls signed


def seen_key(prefix: str, provider: str) -> str:
    return f"{prefix}shaken:seen:{provider}"


class ShakenStats:
    """Counts by provider and outcome; one per (Redis URL, prefix) per process."""

    _shared: dict[tuple[str, str], ShakenStats] = {}

    @classmethod
    def shared(
        cls, redis_url: str, prefix: str, metric: Any = None, claim: Any = None
    ) -> ShakenStats:
        got = cls._shared.get((redis_url, prefix))
        if got is None:
            got = cls._shared[(redis_url, prefix)] = cls(redis_url, prefix, metric, claim=claim)
        return got

    def __init__(
        self,
        redis_url: str | None,
        prefix: str,
        metric: Any = None,
        flush_s: float = FLUSH_S,
        claim: Any = None,
    ) -> None:
        self._claim = claim
        self.redis_url = redis_url
        self.prefix = prefix
        self.flush_s = flush_s
        self._metric = metric
        self._children: dict[str, tuple[Any, ...]] = {}
        self.pending: dict[str, list[int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None

    def count(self, provider: str, outcome: int, claim: str = "") -> None:
        """One call from ``provider`` with outcome ``OUTCOMES[outcome]``
        (``claim``: its RMD implementation claim, labelled once per provider)."""
        row = self.pending.get(provider)
        if row is None:
            row = self.pending[provider] = [0] * len(OUTCOMES)
        row[outcome] += 1
        if self._metric is not None:
            ch = self._children.get(provider)
            if ch is None:
                ch = self._children[provider] = tuple(
                    self._metric.labels(provider, o) for o in OUTCOMES
                )
                if self._claim is not None:
                    self._claim.labels(provider, claim).set(1)
            ch[outcome].inc()
        if self._task is None and self.redis_url:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._task = loop.create_task(self._run(), name="shaken_stats")

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_s)
                await self.flush()
        finally:
            self._task = None

    async def close(self) -> None:
        """Flush, then stop the task and close the Redis client."""
        await self.flush()
        if self._task is not None:
            self._task.cancel()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def flush(self) -> int:
        """Add the pending counts to Redis; returns how many calls were written."""
        if not self.pending or not self.redis_url:
            return 0
        todo, self.pending = self.pending, {}
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(
                self.redis_url, socket_timeout=5, socket_connect_timeout=5
            )
        n = 0
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            async with self._redis.pipeline(transaction=False) as p:
                for provider, row in todo.items():
                    key = seen_key(self.prefix, provider)
                    p.hsetnx(key, "since", since)
                    for name, v in zip(OUTCOMES, row, strict=True):
                        if v:
                            p.hincrby(key, name, v)
                            n += v
                await p.execute()
        except Exception as exc:  # keep them for the next flush
            log.warning("shaken: per-provider counts not written to Redis: %s", exc)
            self._redis = None
            for provider, row in todo.items():
                cur = self.pending.setdefault(provider, [0] * len(OUTCOMES))
                for i, v in enumerate(row):
                    cur[i] += v
            return 0
        return n


def claim_vs_seen(claim: str, seen: Mapping[str, str]) -> dict[str, Any]:
    """The RMD claim next to the counts (``seen``: a ``shaken:seen:<id>`` hash).

    ``signed`` counts every call that carried an Identity header (pending
    included); ``signed_share`` is signed / calls, ``failed_share`` failed /
    signed; ``flag`` is set when the claim is complete implementation and
    under half of at least ``FLAG_MIN_CALLS`` calls were signed."""

    def num(k: str) -> int:
        try:
            return int(seen.get(k, "0") or 0)
        except ValueError:
            return 0

    counts = {o: num(o) for o in OUTCOMES}
    calls = sum(counts.values())
    signed = calls - counts["unsigned"]
    share = signed / calls if calls else None
    flag = ""
    if claim == COMPLETE and calls >= FLAG_MIN_CALLS and share is not None:
        if share < FLAG_SIGNED_BELOW:
            flag = "claims complete STIR/SHAKEN, sends mostly unsigned calls"
    return {
        "implementation": claim,
        "calls": calls,
        "signed": signed,
        "signed_share": share,
        "failed_share": counts["failed"] / signed if signed else None,
        **counts,
        "since": seen.get("since", ""),
        "flag": flag,
    }
