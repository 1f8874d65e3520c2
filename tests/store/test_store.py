"""SnapshotStore against the real Redis: full load, validation, live edits
from a separate client, reload built aside, and Redis going down and up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sipscreen_testlib import until

from proxy.store.snapshot_store import SnapshotStore
from tests.store.conftest import REDIS_URL, free_port

EMERG = frozenset({"911", "933"})


def make_store(prefix: str, url: str = REDIS_URL, **kw: object) -> SnapshotStore:
    return SnapshotStore(url, prefix, emergency=EMERG, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def started(prefix: str) -> AsyncIterator[SnapshotStore]:
    """A store on ``prefix``, running and synced; stopped on the way out."""
    store = make_store(prefix)
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        yield store
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def running(prefix: str) -> AsyncIterator[SnapshotStore]:
    async with started(prefix) as store:
        yield store


# -- full load ---------------------------------------------------------------


async def test_full_load_every_key_kind(prefix: str, operator: aioredis.Redis) -> None:
    p = prefix
    await operator.sadd(p + "block:caller", "+12025550123", "+13035550100")
    await operator.sadd(p + "allow:caller", "+14155550100")
    await operator.zadd(p + "allow:caller:expiry", {"+14155550100": 1900000000})
    await operator.sadd(p + "block:prefix", "+1202555", "+44")
    await operator.sadd(p + "block:provider", "badco")
    await operator.sadd(p + "dno:caller", "+18005551212")
    await operator.sadd(p + "nanpa:npa", "202", "303")
    await operator.sadd(p + "nanpa:nxx", "202555")
    await operator.hset(
        p + "provider:acme",
        mapping={
            "name": "Acme",
            "rmd_status": "removed",
            "frn": "0012345678",
            "rmd_number": "RMD0001410",
            "ocn": "AB12",
            "monitor_only": "1",
        },
    )
    await operator.hset(
        p + "notice:n1",
        mapping={
            "provider": "acme",
            "kind": "n2",
            "issued": "2021-10-21",
            "campaigns": "+1202555,2025550199",
        },
    )
    await operator.set(p + "rmd:current", "v7")
    store = make_store(p)
    old = store.snapshot
    snap = await store.load_full()
    assert store.snapshot is snap and snap is not old
    assert store.loaded
    assert set(snap.block_caller) == {"+12025550123", "+13035550100"}
    assert "+14155550100" in snap.allow_caller
    assert snap.allow_expiry == {"+14155550100": 1900000000.0}
    assert snap.block_prefix.longest_match("+12025550123") == "+1202555"
    assert snap.block_provider == {"badco"}
    assert "+18005551212" in snap.dno_caller
    assert snap.nanpa_npa == {"202", "303"} and snap.nanpa_nxx == {"202555"}
    prov = snap.providers["acme"]
    assert (prov.name, prov.rmd_status, prov.ocn, prov.monitor_only) == (
        "Acme",
        "removed",
        "AB12",
        True,
    )
    (notice,) = snap.notices["acme"]
    # A letter dated 2021-10-21 (Eastern): report due November 5, 2021 as the
    # seed letter states (47 CFR 64.1200(k)(4), counted per 47 CFR 1.4).
    assert notice.kind == "n2" and notice.issued == 1634788800.0
    assert notice.report_due == 1636084800.0
    assert notice.campaigns == ("+1202555", "+12025550199")
    assert snap.emergency == EMERG
    assert snap.version.endswith("+rmd:v7")


async def test_invalid_values_skipped_with_warning(
    prefix: str, operator: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    p = prefix
    await operator.sadd(p + "block:caller", "+12025550123", "not-a-number", "+0123")
    await operator.sadd(p + "block:prefix", "1202", "+1303")
    await operator.hset(p + "provider:bad", mapping={"name": "B", "rmd_status": "gone"})
    await operator.hset(p + "provider:good", mapping={"name": "G", "rmd_status": "listed"})
    await operator.hset(
        p + "notice:x", mapping={"provider": "good", "kind": "k4", "issued": "soon"}
    )
    await operator.set(p + "dno:caller", "a string, not a set")
    store = make_store(p)
    with caplog.at_level(logging.WARNING, logger="sipscreen.store"):
        snap = await store.load_full()
    assert set(snap.block_caller) == {"+12025550123"}
    assert set(snap.block_prefix) == {"+1303"}
    assert set(snap.providers) == {"good"}
    assert snap.notices == {}
    assert len(snap.dno_caller) == 0
    text = caplog.text
    for needle in ("not-a-number", "'1202'", "'gone'", "'soon'", p + "dno:caller"):
        assert needle in text, needle


# -- live follow ---------------------------------------------------------------


async def test_live_set_edits_within_100ms(
    running: SnapshotStore, operator: aioredis.Redis
) -> None:
    p = running.prefix
    assert running.mode == "monitor"
    await operator.sadd(p + "block:caller", "+12025550123")
    await until(lambda: "+12025550123" in running.snapshot.block_caller)
    await operator.srem(p + "block:caller", "+12025550123")
    await until(lambda: "+12025550123" not in running.snapshot.block_caller)
    await operator.sadd(p + "block:prefix", "+1303555")
    await until(lambda: running.snapshot.block_prefix.longest_match("+13035550100") == "+1303555")
    await operator.sadd(p + "block:provider", "evil")
    await until(lambda: "evil" in running.snapshot.block_provider)
    await operator.sadd(p + "allow:caller", "+14155550100", "+14155550101")
    await operator.zadd(p + "allow:caller:expiry", {"+14155550100": 2e9})
    await until(lambda: running.snapshot.allow_expiry.get("+14155550100") == 2e9)
    await operator.delete(p + "allow:caller")
    await until(lambda: len(running.snapshot.allow_caller) == 0)


async def test_a_number_spelt_twice_stays_blocked_until_its_last_spelling_goes(
    prefix: str, operator: aioredis.Redis
) -> None:
    """A number is on a list while any spelling of it is a member of the Redis set,
    live as at a full load. ``SADD "+1 212-736-9999"`` and ``SADD +12127369999``
    are two members of one number: SREM of one of them unblocked the number
    live (it came back at the next reload), and SREM of a spelling that was no
    member unblocked it too. Now each SREM takes one spelling away, and the
    number leaves with the last; a full load agrees."""
    p = prefix
    await operator.sadd(p + "block:caller", "+1 (212) 736-9999", "+13035550100")
    async with started(prefix) as store:
        snap = lambda: store.snapshot.block_caller  # noqa: E731
        assert "+12127369999" in snap()
        await operator.sadd(p + "block:caller", "+12127369999")  # a second spelling
        await operator.srem(p + "block:caller", "+1 212 736 9999")  # no member: no change
        await operator.srem(p + "block:caller", "+12127369999")
        await operator.sadd(p + "block:caller", "+14155550100")  # a marker: the edits above applied
        await until(lambda: "+14155550100" in snap())
        assert "+12127369999" in snap()  # "+1 (212) 736-9999" is still a member
        await operator.srem(p + "block:caller", "+13035550199")  # no member: no change
        await operator.srem(p + "block:caller", "+1 (212) 736-9999")
        await until(lambda: "+12127369999" not in snap())
        assert "+13035550100" in snap()
        # a full load reads the same: both spellings, then one removed
        await operator.sadd(p + "block:caller", "+1.212.736.9999", "+12127369999")
        await operator.srem(p + "block:caller", "+12127369999")
        async with started(prefix) as fresh:
            assert "+12127369999" in fresh.snapshot.block_caller
            assert fresh.snapshot.block_caller.spellings == {12127369999: {"+1.212.736.9999"}}
            # `sipscreen unblock caller` takes every spelling of the number away
            await operator.sadd(p + "block:caller", "2127369999", "+1 (212) 736-9990")
            await fresh.unblock_caller(["(212) 736-9999"])
            assert await operator.smembers(p + "block:caller") == {
                "+13035550100",
                "+14155550100",
                "+1 (212) 736-9990",
            }
            await until(lambda: "+12127369999" not in fresh.snapshot.block_caller)
            await until(lambda: "+12127369999" not in snap())
            assert "+12127369990" in snap()


async def test_live_hash_and_transaction_edits(
    running: SnapshotStore, operator: aioredis.Redis
) -> None:
    p = running.prefix
    await operator.hset(p + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"})
    await until(lambda: "acme" in running.snapshot.providers)
    await operator.hset(p + "provider:acme", "rmd_status", "removed")
    await until(lambda: running.snapshot.providers["acme"].rmd_status == "removed")
    await operator.hset(
        p + "notice:n9", mapping={"provider": "acme", "kind": "k4", "issued": "2026-11-01"}
    )
    await until(lambda: "acme" in running.snapshot.notices)
    await operator.delete(p + "notice:n9", p + "provider:acme")
    await until(lambda: not running.snapshot.providers and not running.snapshot.notices)
    # Commands inside MULTI/EXEC and Lua appear in MONITOR too.
    async with operator.pipeline(transaction=True) as tx:
        tx.sadd(p + "block:caller", "+15555550100")
        tx.sadd(p + "dno:caller", "+18005550100")
        await tx.execute()
    await until(lambda: "+15555550100" in running.snapshot.block_caller)
    await until(lambda: "+18005550100" in running.snapshot.dno_caller)
    await operator.eval(  # type: ignore[misc]
        "return redis.call('SADD', KEYS[1], ARGV[1])", 1, p + "block:caller", "+16665550100"
    )
    await until(lambda: "+16665550100" in running.snapshot.block_caller)


async def test_unmodelled_commands_reread_the_key(
    running: SnapshotStore, operator: aioredis.Redis
) -> None:
    p = running.prefix
    await operator.sadd(p + "staging", "+12025550001", "+12025550002")
    await operator.sunionstore(p + "block:caller", [p + "staging"])
    await until(lambda: len(running.snapshot.block_caller) == 2)
    await operator.smove(p + "block:caller", p + "staging", "+12025550001")
    await until(lambda: set(running.snapshot.block_caller) == {"+12025550002"})
    await operator.sadd(p + "tmp", "202", "303")
    await operator.rename(p + "tmp", p + "nanpa:npa")
    await until(lambda: running.snapshot.nanpa_npa == {"202", "303"})
    await operator.sadd(p + "block:provider", "short")
    await operator.pexpire(p + "block:provider", 50)
    await until(lambda: "short" in running.snapshot.block_provider)
    await until(lambda: not running.snapshot.block_provider, timeout=2.0)


async def test_reload_builds_aside(running: SnapshotStore, operator: aioredis.Redis) -> None:
    p = running.prefix
    await operator.sadd(p + "block:caller", "+12025550123")
    await until(lambda: "+12025550123" in running.snapshot.block_caller)
    old = running.snapshot
    old_members = set(old.block_caller)
    await operator.sadd(p + "block:caller", "+13035550100")
    await until(lambda: "+13035550100" in running.snapshot.block_caller)
    old_members = set(old.block_caller)
    new = await running.load_full()
    assert new is running.snapshot and new is not old
    await operator.sadd(p + "block:caller", "+14045550100")
    await until(lambda: "+14045550100" in running.snapshot.block_caller)
    # Edits after the swap went to the new snapshot only.
    assert set(old.block_caller) == old_members
    assert "+14045550100" not in old.block_caller


async def test_writer_helpers_normalise_and_meta(
    running: SnapshotStore, operator: aioredis.Redis
) -> None:
    p = running.prefix
    nums = await running.block_caller(
        ["(202) 555-0123", "1-303-555-0100"], {"why": "spam", "by": "noc"}
    )
    assert nums == ["+12025550123", "+13035550100"]
    assert await operator.smembers(p + "block:caller") == set(nums)
    meta = await operator.hgetall(p + "meta:block:caller:+12025550123")
    assert meta["why"] == "spam" and meta["by"] == "noc" and meta["when"]
    await until(lambda: "+13035550100" in running.snapshot.block_caller)
    await running.allow_caller("4155550100", until=2e9)
    await until(lambda: running.snapshot.allow_expiry.get("+14155550100") == 2e9)
    await running.set_provider("acme", name="Acme", rmd_status="not_listed")
    await until(lambda: running.snapshot.providers.get("acme") is not None)
    from proxy.store.keys import StoreError

    with pytest.raises(StoreError, match="not-a-number"):
        await running.block_caller(["not-a-number"])
    with pytest.raises(StoreError, match="rmd_status"):
        await running.set_provider("acme", rmd_status="gone")


# -- Redis down ------------------------------------------------------------------


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("redis-server")
    assert exe is not None
    return subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait_ping(url: str) -> None:
    r = aioredis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                if await r.ping():
                    return
            except (OSError, aioredis.ConnectionError):
                pass
            await asyncio.sleep(0.025)
        raise AssertionError("redis-server did not start")
    finally:
        await r.aclose()


async def _seed(url: str) -> None:
    """Once the private redis-server answers: one blocked caller, +12025550123."""
    await _wait_ping(url)
    r = aioredis.Redis.from_url(url, decode_responses=True)
    await r.sadd("sipscreen:block:caller", "+12025550123")
    await r.aclose()


async def _stop(task: asyncio.Task[None] | None, proc: subprocess.Popen[bytes]) -> None:
    """Cancel the store's task (if it was started), then stop the redis-server."""
    if task is not None:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    proc.terminate()
    proc.wait(5)


async def test_redis_down_keeps_snapshot_and_reconnects(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _start_redis(port)
    states: list[bool] = []
    task: asyncio.Task[None] | None = None
    try:
        await _seed(url)
        store = make_store("sipscreen:", url, on_state=states.append)
        task = asyncio.create_task(store.run())
        await store.wait_synced(5)
        assert store.connected and states == [True]
        snap = store.snapshot
        with caplog.at_level(logging.INFO, logger="sipscreen.store"):
            proc.terminate()
            proc.wait(5)
            await until(lambda: not store.connected, timeout=5)
            assert states == [True, False]
            assert store.snapshot is snap and "+12025550123" in snap.block_caller
            await asyncio.sleep(0.5)  # several failed attempts: still one WARNING
            proc = _start_redis(port)
            await _wait_ping(url)
            r = aioredis.Redis.from_url(url, decode_responses=True)
            # This Redis has no persistence: what a persistent one keeps, its
            # generation stamp, is put back (without it the store reports the data
            # lost: test_redis_back_empty_keeps_the_snapshot_until_confirmed).
            assert store.generation is not None
            await r.sadd("sipscreen:block:caller", "+13035550100")  # made while we were away
            await r.set("sipscreen:meta:generation", store.generation)
            await r.aclose()
            await until(lambda: store.connected, timeout=10)
            await store.wait_synced(5)
        assert states == [True, False, True]
        assert store.snapshot is not snap
        assert "+13035550100" in store.snapshot.block_caller
        lost = [r for r in caplog.records if "connection lost" in r.getMessage()]
        back = [
            r for r in caplog.records if "connected" in r.getMessage() and r.levelno == logging.INFO
        ]
        assert len(lost) == 1 and lost[0].levelno == logging.WARNING
        assert len(back) == 1
    finally:
        await _stop(task, proc)


async def test_redis_back_empty_keeps_the_snapshot_until_confirmed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis restarted without persistence (issue 10.10): the blocklist is not
    emptied; data_lost is raised with an ERROR line until an operator confirms
    (a `confirmed-` generation stamp), then what Redis holds is loaded."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _start_redis(port)
    task: asyncio.Task[None] | None = None
    try:
        await _seed(url)
        store = make_store("sipscreen:", url)
        task = asyncio.create_task(store.run())
        await store.wait_synced(5)
        snap = store.snapshot
        assert store.generation is not None and not store.data_lost
        with caplog.at_level(logging.INFO, logger="sipscreen.store"):
            proc.terminate()
            proc.wait(5)
            await until(lambda: not store.connected, timeout=5)
            proc = _start_redis(port)  # empty
            await _wait_ping(url)
            await until(lambda: store.data_lost, timeout=10)
            await asyncio.sleep(1.5)  # it keeps checking, and keeps the snapshot
            assert store.data_lost and store.snapshot is snap
            assert "+12025550123" in store.snapshot.block_caller
            lost = [x for x in caplog.records if "REDIS DATA LOST" in x.getMessage()]
            assert len(lost) == 1 and lost[0].levelno == logging.ERROR
            r = aioredis.Redis.from_url(url, decode_responses=True)
            await r.sadd("sipscreen:block:caller", "+13035550100")
            await r.set("sipscreen:meta:generation", "confirmed-1")
            await r.aclose()
            await until(lambda: not store.data_lost, timeout=5)
            await store.wait_synced(5)
        assert store.snapshot is not snap
        assert "+12025550123" not in store.snapshot.block_caller
        assert "+13035550100" in store.snapshot.block_caller
    finally:
        await _stop(task, proc)


async def test_redis_back_with_the_stamp_but_no_lists_is_data_lost() -> None:
    """The same generation stamp but every list of the schema gone while the
    snapshot had entries (e.g. an old backup holding only the stamp): lost too."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _start_redis(port)
    task: asyncio.Task[None] | None = None
    try:
        await _seed(url)
        store = make_store("sipscreen:", url)
        task = asyncio.create_task(store.run())
        await store.wait_synced(5)
        gen = store.generation
        assert gen is not None
        proc.terminate()
        proc.wait(5)
        await until(lambda: not store.connected, timeout=5)
        proc = _start_redis(port)
        await _wait_ping(url)
        r = aioredis.Redis.from_url(url, decode_responses=True)
        await r.set("sipscreen:meta:generation", gen)
        await r.aclose()
        await until(lambda: store.data_lost, timeout=10)
        assert "+12025550123" in store.snapshot.block_caller
    finally:
        await _stop(task, proc)


async def test_never_loaded_when_redis_absent() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    store = make_store("sipscreen:", url)
    task = asyncio.create_task(store.run())
    await asyncio.sleep(0.3)
    assert not store.loaded and not store.connected
    assert len(store.snapshot.block_caller) == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nanpa_sets_drive_the_unallocated_rule_at_load_and_live(
    prefix: str, operator: aioredis.Redis
) -> None:
    """47 CFR 64.1200(o): an NPA-NXX missing from the NANPA data is blocked,
    but only inside the NPAs that data covers (loaded and edited live)."""
    from rules.engine import decide
    from rules.facts import CallFacts
    from rules.verdict import Rule

    await operator.sadd(prefix + "nanpa:npa", "202", "303")
    await operator.sadd(prefix + "nanpa:nxx", "202555")
    store = make_store(prefix)
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)

        def rule(caller: str) -> Rule:
            return decide(
                store.snapshot, CallFacts(caller=caller, callee="+13105550100", provider=None), 0.0
            ).rule

        assert rule("+12025551234") is Rule.DEFAULT  # assigned NPA-NXX
        assert rule("+12025560123") is Rule.DNO_UNALLOCATED  # 202-556 not assigned
        assert rule("+13035560123") is Rule.DEFAULT  # 303 not covered by the NXX data
        assert rule("+14155551234") is Rule.DNO_UNALLOCATED  # NPA 415 not assigned
        await operator.sadd(prefix + "nanpa:nxx", "202556")
        await until(lambda: rule("+12025560123") is Rule.DEFAULT)
        await operator.sadd(prefix + "nanpa:nxx", "303556")
        await until(lambda: rule("+13035570123") is Rule.DNO_UNALLOCATED)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- Final Determination Orders and emergency callers (docs/REDIS.md) -------


async def test_orders_and_emergency_callers_load_and_follow_live(
    prefix: str, operator: aioredis.Redis
) -> None:
    from datetime import date

    from rules.engine import decide
    from rules.facts import CallFacts
    from rules.orders import fdo_blocks_from
    from rules.verdict import Rule

    p = prefix
    await operator.hset(p + "provider:pz", mapping={"rmd_status": "listed"})
    await operator.hset(
        p + "order:DA-24-1",
        mapping={"provider": "pz", "kind": "fdo", "order": "DA 24-1", "released": "2024-05-01"},
    )
    await operator.rpush(p + "order:history:DA-24-1", '{"event": "added"}')  # not an order
    await operator.hset(p + "order:bad", mapping={"provider": "pz", "released": "May 1"})
    await operator.sadd(p + "emergency:caller", "+13015550100", "not-a-number")
    store = make_store(p, emergency_callers=frozenset({"+13015550199"}))
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        snap = store.snapshot
        assert [o.id for o in snap.orders["pz"]] == ["DA-24-1"]  # the invalid one skipped
        assert snap.orders["pz"][0].blocks_from == fdo_blocks_from(date(2024, 5, 1))
        assert "+13015550100" in snap.emergency_caller and len(snap.emergency_caller) == 1
        assert 13015550199 in snap.emergency_caller_config

        def rule(caller: str, at: float = 2e9) -> Rule:
            return decide(store.snapshot, CallFacts(caller, "+12025551000", "pz"), at).rule

        assert rule("+13035551234") is Rule.FDO
        assert rule("+13015550100") is Rule.EMERGENCY  # from Redis
        assert rule("+13015550199") is Rule.EMERGENCY  # from the config

        # Live: a new order, a removal recorded in place (not a DEL), set edits.
        await operator.hset(
            p + "order:DA-24-2",
            mapping={"provider": "qq", "kind": "fdo", "order": "DA 24-2", "released": "2024-06-03"},
        )
        await until(lambda: "qq" in store.snapshot.orders, timeout=2.0)
        await operator.hset(p + "order:DA-24-1", mapping={"status": "removed"})
        await until(lambda: "pz" not in store.snapshot.orders, timeout=2.0)
        assert rule("+13035551234") is Rule.DEFAULT
        await operator.hset(p + "order:DA-24-1", mapping={"status": "active"})
        await until(lambda: "pz" in store.snapshot.orders, timeout=2.0)
        await operator.delete(p + "order:DA-24-1")
        await until(lambda: "pz" not in store.snapshot.orders, timeout=2.0)

        await operator.sadd(p + "emergency:caller", "+13015550101")
        await until(lambda: "+13015550101" in store.snapshot.emergency_caller, timeout=2.0)
        assert rule("+13015550101") is Rule.EMERGENCY
        await operator.srem(p + "emergency:caller", "+13015550100")
        await until(lambda: "+13015550100" not in store.snapshot.emergency_caller, timeout=2.0)
        await operator.delete(p + "emergency:caller")
        await until(lambda: len(store.snapshot.emergency_caller) == 0, timeout=2.0)
        # The configured emergency callers survive a reload and a DEL of the set.
        await store.load_full()
        assert rule("+13015550199") is Rule.EMERGENCY
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
