"""Decision records in a Redis stream: queue (bounded by count and bytes),
flush with the callee/caller/provider-day indexes, trim by age, indexed and
scanned export, the CLI, summary."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from proxy.records import FIELDS, RecordWriter, export, iso_ms, summary
from tests.store.conftest import free_port


def rec(
    caller: str,
    provider: str,
    rule: str,
    action: str = "blocked",
    callee: str = "+13035550100",
) -> dict[str, str]:
    return {
        "ts": iso_ms(time.time()),
        "call_id": f"c-{caller}",
        "source": "192.0.2.1:5060",
        "transport": "udp",
        "provider": provider,
        "ocn": "AB12",
        "caller": caller,
        "callee": callee,
        "rule": rule,
        "citation": "47 CFR 64.6305(g)",
        "reason": 'has, "quotes" and commas',
        "action": action,
        "monitor": "0",
        "snapshot_version": "1-1",
    }


async def collect(it: object) -> str:
    out = []
    async for line in it:  # type: ignore[attr-defined]
        out.append(line)
    return "".join(out)


async def test_write_export_csv_json_with_filters(prefix: str, operator: aioredis.Redis) -> None:
    w = RecordWriter(operator, prefix, max_len=1000, max_age_s=3600)
    w.append(rec("+12025550001", "acme", "rmd_gate"))
    w.append(rec("+12025550002", "acme", "caller_block"))
    w.append(rec("+12025550003", "other", "rmd_gate", "would_block"))
    assert len(w) == 3
    assert await w.flush() == 3 and len(w) == 0
    assert await operator.xlen(prefix + "records") == 3

    text = await collect(export(operator, prefix, fmt="csv"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["caller"] for r in rows] == ["+12025550001", "+12025550002", "+12025550003"]
    assert rows[0]["reason"] == 'has, "quotes" and commas'
    assert list(rows[0]) == ["id", *FIELDS]

    js = await collect(export(operator, prefix, provider="acme", rule="rmd_gate", fmt="json"))
    lines = [json.loads(x) for x in js.splitlines()]
    assert len(lines) == 1 and lines[0]["caller"] == "+12025550001"
    js = await collect(export(operator, prefix, caller="+12025550003", fmt="json"))
    assert json.loads(js)["action"] == "would_block"
    # Time filter by stream ID: nothing in the future.
    future = await collect(export(operator, prefix, since=time.time() + 3600, fmt="json"))
    assert future == ""

    counts = await summary(operator, prefix, "acme")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    assert counts == {(day, "rmd_gate", "blocked"): 1, (day, "caller_block", "blocked"): 1}


async def test_trim_by_length_and_age(prefix: str, operator: aioredis.Redis) -> None:
    # An optional count ceiling (off by default: retention is by age).
    w = RecordWriter(operator, prefix, max_len=100, max_age_s=0, batch=200)
    for i in range(2000):
        w.append(rec(f"+1202555{i:04d}", "acme", "caller_block"))
    await w.flush()
    n = await operator.xlen(prefix + "records")
    assert 100 <= n < 2000  # MAXLEN ~ trims whole nodes, approximately
    # Age: writing does not trim the stream (that is the periodic trim(), off
    # the write path); a writer whose clock is an hour ahead finds every
    # record older than max_age_s and trims them (MINID ~ keeps at most the
    # last node).
    await operator.delete(prefix + "records")
    fill = RecordWriter(operator, prefix, max_len=0, max_age_s=0, batch=500)
    for i in range(2000):
        fill.append(rec(f"+1303555{i:04d}", "acme", "caller_block"))
    await fill.flush()
    assert await operator.xlen(prefix + "records") == 2000
    old = RecordWriter(operator, prefix, max_len=0, max_age_s=1, clock=lambda: time.time() + 3600)
    old.append(rec("+12025550000", "acme", "caller_block"))
    await old.flush()
    assert await operator.xlen(prefix + "records") == 2001
    await old.trim()
    assert await operator.xlen(prefix + "records") <= 200


async def test_periodic_trim_in_run(prefix: str, operator: aioredis.Redis) -> None:
    """run() trims every trim_every_s even when no record comes."""
    fill = RecordWriter(operator, prefix, max_len=0, max_age_s=0, batch=500)
    for i in range(1000):
        fill.append(rec(f"+1303555{i:04d}", "acme", "caller_block"))
    await fill.flush()
    w = RecordWriter(
        operator,
        prefix,
        max_len=0,
        max_age_s=1,
        trim_every_s=0.05,
        clock=lambda: time.time() + 3600,
    )
    task = asyncio.create_task(w.run())
    try:
        for _ in range(200):
            if await operator.xlen(prefix + "records") <= 200:
                break
            await asyncio.sleep(0.02)
        assert await operator.xlen(prefix + "records") <= 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_index_members_follow_the_retention(prefix: str, operator: aioredis.Redis) -> None:
    """Each index key touched by a write loses its members older than the
    retention and carries the retention as TTL (an idle one expires)."""
    w = RecordWriter(operator, prefix, max_len=0, max_age_s=1)
    w.append(rec("+12025550001", "acme", "caller_block", callee="+13035550111"))
    await w.flush()
    key = prefix + "records:ix:callee:+13035550111"
    assert await operator.zcard(key) == 1
    assert 0 < await operator.pttl(key) <= 1000
    await asyncio.sleep(1.1)  # the first member is now older than 1 s
    w.append(rec("+12025550002", "acme", "caller_block", callee="+13035550111"))
    await w.flush()
    ids = await operator.zrange(key, 0, -1)
    newest = await operator.xrevrange(prefix + "records", count=1)
    assert ids == [newest[0][0]]
    # Kept forever when max_age_s is 0: no TTL.
    keep = RecordWriter(operator, prefix, max_len=0, max_age_s=0)
    keep.append(rec("+12025550003", "acme", "caller_block", callee="+13035550222"))
    await keep.flush()
    assert await operator.pttl(prefix + "records:ix:callee:+13035550222") == -1


async def test_queue_bounded_when_redis_down() -> None:
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    w = RecordWriter(dead, "sipscreen-test-dead:", 100, 60, queue_max=10)
    for i in range(25):
        w.append(rec(f"+1202555{i:04d}", "acme", "caller_block"))
    assert len(w) == 10 and w.dropped == 15
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.3)
    assert len(w) == 10  # kept, waiting for Redis
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await dead.aclose()


async def test_cancelling_run_as_it_wakes_ends_it() -> None:
    """run() waits for records on an event; cancelled in the same turn as the event
    is set (the retry path sets it itself), it must end. On Python 3.11,
    asyncio.wait_for returned the event's result and lost the cancellation,
    and run() went on forever: a CI run hung in test_queue_bounded_when_redis_down."""
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    w = RecordWriter(dead, "sipscreen-test-dead:", 100, 60, queue_max=10)
    for _ in range(20):
        task = asyncio.create_task(w.run())
        await asyncio.sleep(0.01)  # run() waits on the event (nothing queued)
        w._wake.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 2.0)
    await dead.aclose()


async def test_run_flushes_in_background(prefix: str, operator: aioredis.Redis) -> None:
    w = RecordWriter(operator, prefix, 1000, 3600)
    task = asyncio.create_task(w.run())
    w.append(rec("+12025550009", "acme", "notice_k4"))
    for _ in range(100):
        if await operator.xlen(prefix + "records") == 1:
            break
        await asyncio.sleep(0.01)
    assert await operator.xlen(prefix + "records") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_filtered_export_across_pages_matches_client_side_filter(
    prefix: str, operator: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan (records from before the indexes): the filter runs inside
    Redis a page at a time: pages with no match, matches on page boundaries
    and the last short page all count."""
    import proxy.records.query as records_mod

    monkeypatch.setattr(records_mod, "PAGE", 7)
    key = prefix + "records"
    for i in range(50):
        await operator.xadd(
            key,
            {
                "caller": f"+1310555{i % 5:04d}",
                "provider": "pz" if i % 3 == 0 else "acme",
                "rule": "notice_k4" if i % 2 == 0 else "default",
            },
        )
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        everything = [json.loads(x) async for x in export(r, prefix, fmt="json")]
        assert len(everything) == 50
        for filt in ({"caller": "+13105550003"}, {"provider": "pz", "rule": "notice_k4"}):
            got = [json.loads(x) async for x in export(r, prefix, fmt="json", scan=True, **filt)]
            want = [e for e in everything if all(e[k] == v for k, v in filt.items())]
            assert got == want and got
        none = [x async for x in export(r, prefix, fmt="json", scan=True, provider="nobody")]
        assert none == []
    finally:
        await r.aclose()


async def test_indexed_queries_match_the_scan(prefix: str, operator: aioredis.Redis) -> None:
    """By callee (blocked only: the subscriber's list), by caller, by provider
    and day: the indexes answer exactly what a scan of the stream answers."""
    w = RecordWriter(operator, prefix, max_len=0, max_age_s=30 * 86400, batch=7)
    actions = ("reject", "would_block", "monitor", "allow")
    for i in range(60):
        w.append(
            rec(
                f"+1202555{i % 4:04d}",
                ("acme", "pz", "")[i % 3],
                "caller_block" if i % 2 else "rmd_gate",
                actions[i % 4],
                callee=f"+1303555{i % 5:04d}",
            )
        )
    assert await w.flush() == 60
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        everything = [json.loads(x) async for x in export(r, prefix, fmt="json")]
        assert len(everything) == 60
        day = time.strftime("%Y-%m-%d", time.gmtime())
        since = time.time() - 28 * 86400
        queries: list[tuple[dict[str, object], Callable[[dict[str, str]], bool]]] = [
            (
                {"callee": "+13035550002", "actions": ["reject"], "since": since},
                lambda e: e["callee"] == "+13035550002" and e["action"] == "reject",
            ),
            ({"caller": "+12025550001"}, lambda e: e["caller"] == "+12025550001"),
            ({"provider": "pz"}, lambda e: e["provider"] == "pz"),
            (
                {"provider": "acme", "rule": "rmd_gate", "callee": "+13035550000"},
                lambda e: (
                    (e["provider"], e["rule"], e["callee"]) == ("acme", "rmd_gate", "+13035550000")
                ),
            ),
        ]
        for kw, pred in queries:
            got = [json.loads(x) async for x in export(r, prefix, fmt="json", **kw)]  # type: ignore[arg-type]
            want = [e for e in everything if pred(e)]
            assert sorted(x["id"] for x in got) == sorted(x["id"] for x in want) and got, kw
            scanned = [
                json.loads(x)
                async for x in export(r, prefix, fmt="json", scan=True, **kw)  # type: ignore[arg-type]
            ]
            assert scanned == got, kw
        # A day's provider query reads that day's key (and its neighbours).
        ts0 = dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()
        got = [
            json.loads(x)
            async for x in export(
                r, prefix, since=ts0, until=ts0 + 86399.999, provider="acme", fmt="json"
            )
        ]
        assert len(got) == 20
        yesterday = [
            x async for x in export(r, prefix, since=ts0 - 86400, until=ts0 - 1, provider="acme")
        ]
        assert yesterday == [",".join(("id", *FIELDS)) + "\n"]  # the CSV header only
        # Index entries whose stream entry was trimmed are skipped.
        await r.xtrim(prefix + "records", maxlen=0)
        assert [x async for x in export(r, prefix, fmt="json", caller="+12025550001")] == []
    finally:
        await r.aclose()


async def test_cli_export_by_callee_day_action(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.store.test_admin import run

    w = RecordWriter(operator, prefix, max_len=0, max_age_s=30 * 86400)
    w.append(rec("+12025550001", "acme", "caller_block", "reject", callee="+13035550100"))
    w.append(rec("+12025550002", "acme", "caller_block", "allow", callee="+13035550100"))
    w.append(rec("+12025550003", "pz", "notice_k4", "reject", callee="+13035550199"))
    await w.flush()
    from zoneinfo import ZoneInfo

    day = dt.datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m-%d")  # --day is ET
    assert await run(prefix, "records", "export", "--callee", "(303) 555-0100", "--action",
                     "reject", "--format", "json") == 0  # fmt: skip
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["caller"] for x in rows] == ["+12025550001"]
    assert set(FIELDS) <= set(rows[0])
    assert await run(prefix, "records", "export", "--provider", "pz", "--day", day) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [x["caller"] for x in rows] == ["+12025550003"] and list(rows[0]) == ["id", *FIELDS]
    for bad in (
        ["--day", "2026-13-01"],
        ["--day", day, "--since", day],
        ["--callee", "nobody"],
        ["--action", "blocked"],
    ):
        assert await run(prefix, "records", "export", *bad) == 2, bad
        assert capsys.readouterr().err.strip()


async def test_buffer_bounded_in_bytes_when_redis_down() -> None:
    """Issue 10 item 7: with Redis unreachable, 20,000 records with a 30 KB
    Call-ID (as an old writer stored it, unclipped) keep the buffer under its
    byte cap, measured by tracemalloc too; drops are counted by reason."""
    import tracemalloc

    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    cap = 4 << 20
    w = RecordWriter(dead, "sipscreen-test-dead:", 0, 60, queue_max_bytes=cap, linger_s=0.0)
    task = asyncio.create_task(w.run())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            r = rec(f"+1202555{i % 10_000:04d}", "acme", "caller_block")
            r["call_id"] = f"{i}-" + "x" * 30_000
            w.append(r)
            assert w.bytes <= cap
            if i % 5000 == 0:
                await asyncio.sleep(0.05)  # the writer tries Redis meanwhile
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dead.aclose()
    assert held < cap * 1.1 + (1 << 20), held
    assert w.dropped_by_reason["buffer_bytes"] > 19_000
    assert w.dropped == sum(w.dropped_by_reason.values()) == 20_000 - len(w)
    # Count bound too (the oldest go first).
    w2 = RecordWriter(dead, "sipscreen-test-dead:", 0, 60, queue_max=5)
    for i in range(8):
        w2.append(rec(f"+1202555{i:04d}", "acme", "caller_block"))
    assert len(w2) == 5 and w2.dropped_by_reason["buffer_count"] == 3
    assert [x["caller"] for x, _ in w2._queue] == [f"+1202555{i:04d}" for i in range(3, 8)]


async def test_failed_write_keeps_the_batch_and_the_connection_usable(
    prefix: str, operator: aioredis.Redis
) -> None:
    """An error reply mid-batch (here WRONGTYPE) puts the batch back in order;
    the next flush, on a fresh connection state, writes it once and indexed."""
    from redis.exceptions import ResponseError

    await operator.set(prefix + "records", "not a stream")
    w = RecordWriter(operator, prefix, max_len=0, max_age_s=3600)
    for i in range(3):
        w.append(rec(f"+1202555000{i}", "acme", "caller_block", callee="+13035550123"))
    with pytest.raises(ResponseError):
        await w.flush()
    assert len(w) == 3 and w.written == 0 and w.bytes > 0
    await operator.delete(prefix + "records")
    assert await operator.ping()
    assert await w.flush() == 3 and w.bytes == 0 and w.unindexed == 0
    got = [json.loads(x) async for x in export(operator, prefix, callee="+13035550123", fmt="json")]
    assert [g["caller"] for g in got] == ["+12025550000", "+12025550001", "+12025550002"]


async def test_store_monitor_skips_the_record_writes(prefix: str, operator: aioredis.Redis) -> None:
    """The snapshot store follows edits by MONITOR: the records' own writes
    (XADD, index ZADD/ZREMRANGEBYSCORE/PEXPIRE) are skipped before parsing;
    a DEL naming a records key and a snapshot key still applies."""
    from proxy.store.snapshot_store import SnapshotStore

    seen: list[list[str]] = []

    class Watched(SnapshotStore):
        def apply_argv(self, argv: list[str]) -> None:
            seen.append(argv)
            super().apply_argv(argv)

    store = Watched("redis://127.0.0.1:6379/0", prefix, emergency=frozenset())
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        assert store.mode == "monitor"
        w = RecordWriter(operator, prefix, max_len=0, max_age_s=3600)
        for i in range(20):
            w.append(rec(f"+1202555{i:04d}", "acme", "caller_block"))
        await w.flush()
        await operator.sadd(prefix + "block:caller", "+12025550123")
        for _ in range(400):
            if "+12025550123" in store.snapshot.block_caller:
                break
            await asyncio.sleep(0.005)
        assert "+12025550123" in store.snapshot.block_caller
        assert not [a for a in seen if a[1].startswith(prefix + "records")]
        await operator.delete(prefix + "records", prefix + "block:caller")
        for _ in range(400):
            if not store.snapshot.block_caller:
                break
            await asyncio.sleep(0.005)
        assert not store.snapshot.block_caller
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
