"""Fixtures for the store tests: a unique key prefix on the real Redis, and
a plain client playing the operator's redis-cli.

Every test gets `sipscreen-test-<uuid>:` so tests run in parallel with
others on the shared Redis at 127.0.0.1:6379; the keys are deleted after.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _delete_prefix(url: str, prefix: str) -> None:
    r = aioredis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for k in r.scan_iter(match=prefix + "*", count=1000):
            batch.append(k)
            if len(batch) >= 1000:
                await r.unlink(*batch)
                batch = []
        if batch:
            await r.unlink(*batch)
    finally:
        await r.aclose()


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    pfx = f"sipscreen-test-{uuid.uuid4().hex}:"
    yield pfx
    await _delete_prefix(REDIS_URL, pfx)


@pytest.fixture
async def operator() -> AsyncIterator[aioredis.Redis]:
    """A separate plain connection, as an operator's redis-cli would be."""
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield r
    await r.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
