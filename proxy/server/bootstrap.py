"""Redis before any worker starts (the parent): start the embedded
redis-server when none answers, seed the sample data into an empty prefix,
replay the decision records spooled by the last run, and read the
monitor-only providers for the banner."""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.config import Config
from proxy.redis_url import is_sentinel, sync_client

if TYPE_CHECKING:
    from proxy.embedded_redis import EmbeddedRedis

log = logging.getLogger("sipscreen")

# ---------------------------------------------------------------------------
# Redis preparation (parent, before any worker)
# ---------------------------------------------------------------------------


def seed_sample_data(config: Config) -> int:
    """Run the sample-data commands into a Redis that holds no key under the
    prefix (a fresh embedded one, or an explicitly empty prefix).

    Returns the number of commands run: 0 when the file is unset or empty,
    or when any key under the prefix exists (an operator's data, or the
    sample already seeded and since edited: never overwritten or put back).
    """
    if not config.sample_data:
        return 0

    cmds: list[list[str]] = []
    with open(config.sample_data, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = shlex.split(line)
            if len(parts) < 2:
                continue
            parts[1] = config.key_prefix + parts[1]
            cmds.append(parts)
    if not cmds:
        return 0
    r = sync_client(config.redis_url, socket_timeout=5)
    try:
        pattern = _glob_escape(config.key_prefix) + "*"
        for _key in r.scan_iter(match=pattern, count=1000):
            return 0  # not empty under the prefix: leave the operator's data alone
        pipe = r.pipeline(transaction=True)
        for c in cmds:
            pipe.execute_command(*c)  # type: ignore[no-untyped-call]
        pipe.execute()
        return len(cmds)
    finally:
        r.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at ``url`` within a second."""

    r = sync_client(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(r.ping())
    except Exception:
        return False
    finally:
        r.close()


def _prepare_redis(config: Config) -> tuple[Config, EmbeddedRedis | None]:
    """Start the embedded redis-server when nothing answers at the URL; the
    returned Config names its URL and data directory."""
    if is_sentinel(config.redis_url):  # Sentinel: never an embedded server
        return config, None
    if redis_answers(config.redis_url) or not config.redis_embedded:
        return config, None
    from proxy.embedded_redis import default_data_dir, ensure_redis

    data_dir = config.redis_data_dir or default_data_dir()
    handle = asyncio.run(ensure_redis(config.redis_url, data_dir=data_dir))
    if handle is None:
        return config, None
    log.warning(
        "no Redis at %s; started the embedded redis-server at %s, data in %s (AOF on)",
        config.redis_url,
        handle.url,
        handle.workdir,
    )
    return replace(config, redis_url=handle.url, redis_data_dir=handle.workdir), handle


def monitor_only_providers(config: Config, timeout: float = 1.0) -> list[str] | str:
    """Provider ids whose `provider:<id>` hash has monitor_only = 1, read from
    Redis once at start (for the banner); a str says why it could not be read.

    Read directly rather than from a worker's snapshot so the parent of
    several workers prints the same list; a later `provider set
    --monitor-only` shows in `sipscreen check` and the records, not here.
    """
    import redis

    r = sync_client(
        config.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        pfx = config.key_prefix + "provider:"
        out: list[str] = []
        for key in r.scan_iter(match=pfx.replace("*", "\\*") + "*", count=1000):
            pid = str(key)[len(pfx) :]
            if ":" in pid:
                continue
            try:
                if r.hget(key, "monitor_only") == "1":
                    out.append(pid)
            except redis.ResponseError:
                continue  # not a hash: the store warns about it
        return sorted(out)
    except Exception as exc:
        return f"not read ({type(exc).__name__}: {exc})"
    finally:
        r.close()


def replay_spooled_records(config: Config) -> int:
    """Write the decision records spooled by an earlier run back to Redis (before
    any worker starts); a failure is logged and the files wait for the next start."""
    from proxy.records import default_spool_dir, replay_spool

    directory = config.spool_dir or default_spool_dir()

    url = config.records_url  # [records] redis_url, else the [redis] server
    r = sync_client(url, socket_timeout=5)
    try:
        n = replay_spool(r, config.key_prefix, directory, url, config.records_max_len)
    except Exception as exc:
        log.warning("spooled decision records in %s not replayed yet: %s", directory, exc)
        return 0
    finally:
        r.close()
    if n:
        log.warning("replayed %d spooled decision records from %s into Redis", n, directory)
    return n


def _seed(config: Config) -> None:
    """Seed the sample data when the Redis is empty under the prefix, and say so."""
    try:
        n = seed_sample_data(config)
    except Exception as exc:  # Redis down now: the store will retry
        log.warning("sample data not seeded: %s", exc)
        return
    if n:
        print(
            f"sipscreen: seeded {n} sample-data commands from {config.sample_data} into "
            f"{config.redis_url} (it held no key under prefix {config.key_prefix!r})",
            flush=True,
        )
    elif config.sample_data:
        log.info(
            "sample data not seeded: %s already holds keys under %r",
            config.redis_url,
            config.key_prefix,
        )
