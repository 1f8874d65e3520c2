"""Decision records as evidence (proxy/screen.py `_record` -> proxy/records/)
on real data: a SnapshotStore loaded from the real Redis (per-test prefix),
real parsed INVITEs, a real RecordWriter.

Checks that a blocked, a would-block and a --monitor call are recorded with
every field (source ip:port and transport, raw caller/callee, raw PAI, From
and Identity, rule, citation, SIP status, snapshot version), that received
strings are clipped (issue 10 item 7: a 30 KB Call-ID gives a bounded record
and log line, counted by field), and that with Redis unreachable the writer's
buffer stays under its byte cap while the calls keep being answered and the
drops are counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sipscreen_testlib import loaded_store, screener_config

from proxy.metrics import Metrics
from proxy.records import FIELDS, RecordWriter, export
from proxy.screen import DECISION_LOGGER, Screener
from proxy.sip.message import parse

BLOCKED = "+12127369999"
SRC = ("10.1.2.3", 5062)
IDENTITY = (
    "eyJhbGciOiJFUzI1NiJ9.eyJhdHRlc3QiOiJBIn0.c2ln;"
    "info=<https://cert.example.org/sp.pem>;alg=ES256;ppt=shaken"
)


def _invite(call_id: str, caller: str = BLOCKED, *, pai: bool = True, extra: str = "") -> Any:
    hdrs = (
        "INVITE sip:3125557000@127.0.0.1;user=phone SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.1.2.3:5062;branch=z9hG4bKevidence\r\n"
        "Max-Forwards: 70\r\n"
        f'From: "Caller" <sip:{caller}@10.1.2.3>;tag=1\r\n'
        "To: <sip:+13125557000@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
    )
    if pai:
        hdrs += f"P-Asserted-Identity: <sip:{caller}@10.1.2.3;user=phone>\r\n"
    hdrs += f"Identity: {IDENTITY}\r\n"
    return parse((hdrs + extra + "Content-Length: 0\r\n\r\n").encode())


def _config(tmp_path: Path, prefix: str, body: str = "") -> Any:
    return screener_config(tmp_path, prefix, '[answer.deterministic]\nkind = "603"\n' + body)


@pytest.fixture
def seeded(redis_client: Any, key_prefix: str) -> str:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    return key_prefix


async def test_blocked_call_recorded_with_every_field_and_clipped(
    tmp_path: Path, redis_url: str, seeded: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(tmp_path, seeded)
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    records = RecordWriter(client, seeded, 0, 3600)
    try:
        s = Screener(cfg, store, m, records, rng=lambda: 1.0)
        huge = "a" * 30_000 + "@10.1.2.3"
        with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
            ans = s(_invite(huge), SRC, "udp")
        assert ans is not None and ans.status == 603
        # The log line is bounded too (it was 30 KB with the Call-ID in it).
        lines = [r.getMessage() for r in caplog.records if r.name == DECISION_LOGGER]
        assert len(lines) == 1 and len(lines[0]) < 3000
        assert await records.flush() == 1
        (sid, rec), *_ = await client.xrange(seeded + "records")
        assert list(rec)[: len(FIELDS)] == list(FIELDS)
        assert len(rec["call_id"]) == cfg.records_max_call_id == 256
        assert rec["call_id"].startswith("aaaa")
        assert rec["call_id"].endswith(f"…[+{len(huge) - 256 + len('…[+29753]')}]")
        assert json.loads(lines[0])["call_id"] == rec["call_id"]
        assert m.records_truncated_children["call_id"]._value.get() == 1
        assert m.records_truncated_children["pai"]._value.get() == 0
        expect = {
            "source": "10.1.2.3:5062",
            "transport": "udp",
            "provider": "acme",
            "caller": BLOCKED,
            "callee": "+13125557000",
            "caller_raw": BLOCKED,
            "callee_raw": "3125557000",
            "pai": f"<sip:{BLOCKED}@10.1.2.3;user=phone>",
            "from": f'"Caller" <sip:{BLOCKED}@10.1.2.3>;tag=1',
            "identity": IDENTITY,
            "rule": "caller_block",
            "citation": "operator policy",
            "action": "reject",
            "monitor": "0",
            "status": "603",
        }
        assert {k: rec[k] for k in expect} == expect
        assert rec["snapshot_version"] and rec["ts"].endswith("Z")
        # Found by callee (the subscriber's list of blocked calls).
        got = [
            json.loads(x)
            async for x in export(
                client, seeded, callee="+13125557000", actions=["reject"], fmt="json"
            )
        ]
        assert [g["id"] for g in got] == [sid]
        # A raw header longer than its cap is clipped and counted.
        long_pai = "<sip:" + BLOCKED + "@" + "h" * 2000 + ">"
        ans = s(_invite("x", pai=False, extra=f"P-Asserted-Identity: {long_pai}\r\n"), SRC, "tcp")
        assert ans is not None
        await records.flush()
        rec = (await client.xrevrange(seeded + "records", count=1))[0][1]
        assert len(rec["pai"]) == 512 and rec["pai"].endswith("]")
        assert rec["transport"] == "tcp"
        assert m.records_truncated_children["pai"]._value.get() == 1
    finally:
        await client.aclose()


async def test_monitor_and_sampled_allow_recorded(
    tmp_path: Path, redis_url: str, seeded: str
) -> None:
    cfg = _config(tmp_path, seeded, "[proxy]\nmonitor = true\n")
    store = await loaded_store(cfg, redis_url)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    records = RecordWriter(client, seeded, 0, 3600)
    try:
        s = Screener(cfg, store, Metrics(CollectorRegistry()), records, rng=lambda: 1.0)
        assert s(_invite("mon-1"), ("2001:db8::7", 5060), "udp") is None
        # Allowed and not sampled (rng 1.0 >= 0.01): no record.
        assert s(_invite("ok-1", "+12027621401"), SRC, "udp") is None
        await records.flush()
        assert await client.xlen(seeded + "records") == 1
        rec = (await client.xrange(seeded + "records"))[0][1]
        assert rec["action"] == "monitor" and rec["monitor"] == "1" and rec["status"] == ""
        assert rec["source"] == "[2001:db8::7]:5060" and rec["call_id"] == "mon-1"
        # Sampled allows carry the same fields.
        s2 = Screener(cfg, store, Metrics(CollectorRegistry()), records, rng=lambda: 0.0)
        assert s2(_invite("ok-2", "+12027621401"), SRC, "udp") is None
        await records.flush()
        rec = (await client.xrevrange(seeded + "records", count=1))[0][1]
        assert rec["action"] == "allow" and rec["rule"] == "default"
        assert rec["identity"] == IDENTITY and rec["caller_raw"] == "+12027621401"
    finally:
        await client.aclose()


async def test_redis_down_buffer_stays_under_its_byte_cap(
    tmp_path: Path, redis_url: str, seeded: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 item 7: 20,000 blocked calls with a 30 KB Call-ID while Redis
    is unreachable: every call is still answered, the buffer stays under
    `records.buffer_max_bytes` and what does not fit is counted."""
    from tests.store.conftest import free_port

    cap = 1 << 20
    cfg = _config(tmp_path, seeded, f"[records]\nbuffer_max_bytes = {cap}\n")
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    records = RecordWriter(dead, seeded, 0, 3600, queue_max_bytes=cfg.records_buffer_max_bytes)
    task = asyncio.create_task(records.run())
    try:
        s = Screener(cfg, store, m, records)
        with caplog.at_level(logging.WARNING, logger=DECISION_LOGGER):
            for i in range(20_000):
                ans = s(_invite(f"{i}-" + "c" * 30_000), SRC, "udp")
                assert ans is not None and ans.status == 603
                assert records.bytes <= cap
                if i % 4000 == 0:
                    await asyncio.sleep(0.05)  # the writer tries Redis meanwhile
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dead.aclose()
    # A clipped record is a few KB: about 1 MiB of them are kept.
    assert 100 < len(records) < 2000
    assert records.dropped_by_reason["buffer_bytes"] == 20_000 - len(records)
    assert m.records_truncated_children["call_id"]._value.get() == 20_000
