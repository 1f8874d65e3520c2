"""The edit journal on the keyspace-notification path (managed Redis: MONITOR
and CONFIG refused). A private redis-server with an ACL user that may not run
MONITOR or CONFIG, notify-keyspace-events set at start as a parameter group
would: journaled edits (the writers, and the documented redis-cli
MULTI/SADD/XADD/EXEC pattern) reach the snapshot without re-reading the set;
an edit made without a journal entry is still picked up, by a re-read."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from sipscreen_testlib import until

from proxy.store.snapshot_store import SnapshotStore
from tests.store.conftest import free_port
from tests.store.test_store import EMERG, _wait_ping

PFX = "sipscreen:"


@pytest.fixture
async def managed() -> AsyncIterator[tuple[str, aioredis.Redis]]:
    """(store URL as the restricted user, an operator client as that user)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--notify-keyspace-events", "Kgs$hzxet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        admin_url = f"redis://127.0.0.1:{port}/0"
        await _wait_ping(admin_url)
        a = aioredis.Redis.from_url(admin_url, decode_responses=True)
        await a.execute_command(
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-monitor", "-config"
        )
        await a.sadd(PFX + "block:caller", *[f"+1303555{i:04d}" for i in range(5000)])
        await a.aclose()
        url = f"redis://app:pw@127.0.0.1:{port}/0"
        op = aioredis.Redis.from_url(url, decode_responses=True)
        yield url, op
        await op.aclose()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_journal_edits_without_rereads(managed: tuple[str, aioredis.Redis]) -> None:
    url, op = managed
    store = SnapshotStore(url, PFX, emergency=EMERG)
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        assert store.mode == "keyspace"
        assert "+13035550001" in store.snapshot.block_caller
        base = store.rereads

        # The CLI writers (sipscreen block/unblock/allow) journal their edits.
        await store.block_caller(["+1 (212) 736-0001"])
        await until(lambda: "+12127360001" in store.snapshot.block_caller, 2)
        await store.unblock_caller(["+13035550001"])
        await until(lambda: "+13035550001" not in store.snapshot.block_caller, 2)
        await store.allow_caller("+12127360002", until=4102444800.0)
        await until(lambda: store.snapshot.allow_expiry.get("+12127360002") == 4102444800.0, 2)

        # The documented redis-cli pattern: MULTI; SADD ...; XADD journal ...; EXEC
        async with op.pipeline(transaction=True) as p:
            p.sadd(PFX + "block:caller", "+12127360003", "+12127360004")
            p.xadd(
                PFX + "journal",
                {"op": "sadd", "key": "block:caller", "members": "+12127360003 +12127360004"},
                maxlen=100000,
                approximate=True,
            )
            await p.execute()
        await until(lambda: "+12127360004" in store.snapshot.block_caller, 2)
        await asyncio.sleep(0.2)  # past the grace period: nothing re-read
        assert store.rereads == base, "a journaled edit re-read the whole set"
        assert store.journal_entries >= 5

        # No journal entry: the whole set is re-read, the edit still arrives.
        await op.sadd(PFX + "block:caller", "+12127360005")
        await until(lambda: "+12127360005" in store.snapshot.block_caller, 2)
        assert store.rereads == base + 1
        # An un-journaled edit and a journaled one of the same key back to
        # back: more edits than entries, so the key is re-read.
        async with op.pipeline(transaction=True) as p:
            p.srem(PFX + "block:caller", "+13035550002")
            p.sadd(PFX + "block:caller", "+12127360006")
            p.xadd(
                PFX + "journal",
                {"op": "sadd", "key": "block:caller", "members": "+12127360006"},
            )
            await p.execute()
        await until(lambda: "+13035550002" not in store.snapshot.block_caller, 2)
        assert "+12127360006" in store.snapshot.block_caller
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
