"""Writer helpers (`block_caller`, `allow_caller`, `set_provider`, ...): what
the CLI and the tests write with. Each validates and normalises, then writes
the key, its edit-journal entry and its optional `meta:<key>` companion
(who/why/when) in one MULTI/EXEC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from proxy.store.keys import (
    JOURNAL_MAXLEN,
    K_ALLOW_CALLER,
    K_ALLOW_EXPIRY,
    K_BLOCK_CALLER,
    K_BLOCK_PREFIX,
    K_BLOCK_PROVIDER,
    K_JOURNAL,
    P_META,
    P_PROVIDER,
    RMD_STATUSES,
    StoreError,
    _iso,
    _number,
    _numbers_or_raise,
    _valid_plain,
    valid_prefix,
)
from proxy.store.state import StoreState, _client


class Writers(StoreState):
    """Validated writes to the schema (the CLI's and the tests')."""

    async def _write(
        self,
        ops: Callable[[Any], None],
        meta_keys: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
    ) -> None:
        r = self._data or _client(self.redis_url)
        try:
            async with r.pipeline(transaction=True) as p:
                ops(p)
                if meta:
                    fields = {**meta, "when": meta.get("when") or _iso(self.clock())}
                    for mk in meta_keys:
                        p.hset(self.key(P_META + mk), mapping=cast(Any, fields))
                await p.execute()
        finally:
            if r is not self._data:
                await r.aclose()

    def _journal(self, p: Any, op: str, rel: str, members: Iterable[str]) -> None:
        """Queue the edit-journal entry of one member edit on pipeline `p`
        (after the edit itself, in the same MULTI/EXEC)."""
        p.xadd(
            self.key(K_JOURNAL),
            {"op": op, "key": rel, "members": " ".join(members)},
            maxlen=JOURNAL_MAXLEN,
            approximate=True,
        )

    async def block_caller(
        self, numbers: Iterable[str], meta: Mapping[str, str] | None = None
    ) -> list[str]:
        """SADD block:caller (normalised); returns the numbers written."""
        nums = _numbers_or_raise(numbers)

        def ops(p: Any) -> None:
            p.sadd(self.key(K_BLOCK_CALLER), *nums)
            self._journal(p, "sadd", K_BLOCK_CALLER, nums)

        await self._write(ops, [f"{K_BLOCK_CALLER}:{n}" for n in nums], meta)
        return nums

    async def unblock_caller(self, numbers: Iterable[str]) -> list[str]:
        """SREM block:caller: each number in E.164 and under any other spelling a
        redis-cli SADD gave it (``+1 (212) 736-9999``): a number stays blocked
        while any spelling of it is a member (NumberSet.add_member)."""
        nums = _numbers_or_raise(numbers)
        members = nums + await self._other_spellings(K_BLOCK_CALLER, nums)

        def ops(p: Any) -> None:
            p.srem(self.key(K_BLOCK_CALLER), *members)
            self._journal(p, "srem", K_BLOCK_CALLER, members)
            p.delete(*[self.key(f"{P_META}{K_BLOCK_CALLER}:{n}") for n in nums])

        await self._write(ops)
        return nums

    async def _other_spellings(self, rel: str, nums: list[str]) -> list[str]:
        """The members of set ``rel`` that spell one of the E.164 ``nums`` otherwise.
        An SSCAN whose MATCH pattern is each number's last ten digits in order
        (a spelling may drop +1, or add separators): Redis visits the whole set
        but sends back only those candidates, which ``_number`` then reads."""
        r = self._data or _client(self.redis_url)
        found: list[str] = []
        try:
            for n in nums:
                pattern = "*" + "*".join(n[1:][-10:]) + "*"
                async for raw in r.sscan_iter(self.key(rel), match=pattern, count=10000):
                    m = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                    if m != n and _number(m) == n:
                        found.append(m)
        finally:
            if r is not self._data:
                await r.aclose()
        return found

    async def allow_caller(
        self, number: str, until: float | None = None, meta: Mapping[str, str] | None = None
    ) -> str:
        """SADD allow:caller; with `until`, ZADD allow:caller:expiry too."""
        n = _numbers_or_raise([number])[0]

        def ops(p: Any) -> None:
            p.sadd(self.key(K_ALLOW_CALLER), n)
            self._journal(p, "sadd", K_ALLOW_CALLER, [n])
            if until is not None:
                p.zadd(self.key(K_ALLOW_EXPIRY), {n: until})
                self._journal(p, "zadd", K_ALLOW_EXPIRY, [repr(float(until)), n])
            else:
                p.zrem(self.key(K_ALLOW_EXPIRY), n)
                self._journal(p, "zrem", K_ALLOW_EXPIRY, [n])

        await self._write(ops, [f"{K_ALLOW_CALLER}:{n}"], meta)
        return n

    async def block_prefix(
        self,
        prefixes: Iterable[str],
        meta: Mapping[str, str] | None = None,
        *,
        remove: bool = False,
    ) -> list[str]:
        good: list[str] = []
        for raw in prefixes:
            p = valid_prefix(raw)
            if p is None:
                raise StoreError(f"prefix {raw!r}: expected '+' and 1-15 digits, e.g. +1202555")
            good.append(p)
        key = self.key(K_BLOCK_PREFIX)
        op = "srem" if remove else "sadd"

        def ops(p: Any) -> None:
            p.execute_command(op.upper(), key, *good)
            self._journal(p, op, K_BLOCK_PREFIX, good)

        await self._write(
            ops,
            [] if remove else [f"{K_BLOCK_PREFIX}:{g}" for g in good],
            meta,
        )
        return good

    async def block_provider(
        self, ids: Iterable[str], meta: Mapping[str, str] | None = None, *, remove: bool = False
    ) -> list[str]:
        good = list(ids)
        for pid in good:
            if not _valid_plain("provider id", pid):
                raise StoreError(f"provider id {pid!r}: letters, digits, '_', '-', '.' only")
        key = self.key(K_BLOCK_PROVIDER)
        op = "srem" if remove else "sadd"

        def ops(p: Any) -> None:
            p.execute_command(op.upper(), key, *good)
            self._journal(p, op, K_BLOCK_PROVIDER, good)

        await self._write(
            ops,
            [] if remove else [f"{K_BLOCK_PROVIDER}:{g}" for g in good],
            meta,
        )
        return good

    async def set_provider(self, pid: str, **fields: str) -> dict[str, str]:
        """HSET provider:<id> with validated fields; returns what was written."""
        if not _valid_plain("provider id", pid):
            raise StoreError(f"provider id {pid!r}: letters, digits, '_', '-', '.' only")
        allowed = {
            "name",
            "rmd_status",
            "rmd_order",
            "rmd_since",
            "frn",
            "rmd_number",
            "ocn",
            "monitor_only",
            "trunks",
            "ocns",  # more signing OCNs (STIR/SHAKEN), comma list
            "rmd_ocn",  # the RMD filing's OCN
            "implementation",  # the RMD filing's STIR/SHAKEN implementation claim
        }
        out: dict[str, str] = {}
        for k, v in fields.items():
            if k not in allowed:
                raise StoreError(f"provider field {k!r}: not one of {', '.join(sorted(allowed))}")
            if k == "rmd_status" and v not in RMD_STATUSES:
                raise StoreError(
                    f"rmd_status {v!r}: must be one of {', '.join(sorted(RMD_STATUSES))}"
                )
            if k == "monitor_only" and v not in ("0", "1"):
                raise StoreError(f"monitor_only {v!r}: must be 0 or 1")
            out[k] = v
        if out:
            await self._write(lambda p: p.hset(self.key(P_PROVIDER + pid), mapping=cast(Any, out)))
        return out
