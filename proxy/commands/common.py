"""What every command group shares: the handler wrapper, the error type,
date options, file reading and the store on an open client.

How this works: a command is an async ``Job(args, r, prefix, now) -> int``
run against one open Redis client; ``wrap(job)`` turns it into the
``args.handler(args, redis_url, prefix, now) -> int`` that proxy/cli.py
calls. The wrapper owns the exit codes shared by every command: 0 done,
2 bad input (``AdminError``/``StoreError``, one line, never a traceback, or
a WATCH that saw the data change), 1 Redis unreachable (``check`` passes
its own code: 1 means "blocked" there). Files are read here, never in
``rules/``: a command reads the file and hands its text to the pure parser,
and prints each ``RowError`` as ``FILE:LINE: column 'X': message``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

from redis.exceptions import RedisError, WatchError

from proxy.config import Config
from proxy.store.keys import StoreError
from proxy.store.snapshot_store import SnapshotStore
from proxy.store.state import _client
from rules import notices as rnotices
from rules.errors import RowError

__all__ = [
    "AdminError",
    "Client",
    "Clock",
    "Handler",
    "Job",
    "Subparsers",
    "day_arg",
    "entry_meta",
    "hgetall_many",
    "iso",
    "make_store",
    "print_row_errors",
    "read_file",
    "recorded_by",
    "records_client",
    "scan_keys",
    "today_et",
    "when_arg",
    "wrap",
]

Clock = Callable[[], float]
# An open client made by store._client with decode_responses=True (the
# handler owns it, `wrap`): every reply is a str. redis-py 8 annotates replies
# as `bytes | str` whatever that flag, so the commands take the client under
# this name, not as `redis.asyncio.Redis` (the type `main` below creates).
Client = Any
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace, str, str, Clock], int]
Job = Callable[[argparse.Namespace, Client, str, Clock], Awaitable[int]]


class AdminError(ValueError):
    """Bad input: printed as one line, exit code 2."""


def iso(ts: float) -> str:
    return rnotices.epoch_to_iso(ts)


def when_arg(text: str, what: str, bound: str = "start") -> float:
    """Every date option goes through here: rules.notices.when_et reads a bare
    date as a day in US Eastern Time (``bound``: its start or its last second)."""
    try:
        return rnotices.when_et(text, bound)
    except ValueError:
        raise AdminError(f"{what}: not a date: {text!r}") from None


def day_arg(text: str, what: str) -> str:
    """ISO date of a CLI date: a bare date as given, an instant's US Eastern date."""
    try:
        when = rnotices.parse_when(text)
    except ValueError:
        raise AdminError(f"{what}: not a date: {text!r}") from None
    if isinstance(when, dt.datetime):
        return rnotices.eastern_date(when).isoformat()
    return when.isoformat()


def today_et(now: Clock) -> str:
    return rnotices.eastern_date(dt.datetime.fromtimestamp(now(), dt.UTC)).isoformat()


def read_file(path: str | Path) -> str:
    """The text of ``path`` (UTF-8, a BOM dropped, bad bytes replaced) for a
    parser of ``rules/``; unreadable: AdminError naming the file."""
    try:
        return Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror or exc}") from None


def print_row_errors(path: str, errors: list[RowError]) -> None:
    for e in errors:
        col = f" column {e.column!r}:" if e.column else ""
        print(f"{path}:{e.line}:{col} {e.message}", file=sys.stderr)


def wrap(job: Job, redis_down: int = 1) -> Handler:
    """The CLI handler running ``job``; ``redis_down``: its exit code when
    Redis fails (`check` exits 1 for "blocked", so Redis down is 3 there)."""

    def handler(args: argparse.Namespace, redis_url: str, prefix: str, now: Clock) -> int:
        async def main() -> int:
            r = _client(redis_url)
            try:
                return await job(args, r, prefix, now)
            finally:
                await r.aclose()

        try:
            return asyncio.run(main())
        except (AdminError, StoreError) as exc:
            print(f"sipscreen: error: {exc}", file=sys.stderr)
            return 2
        except WatchError:
            print("sipscreen: error: the data changed meanwhile; nothing written", file=sys.stderr)
            return 2
        except (RedisError, OSError) as exc:
            print(f"sipscreen: Redis at {redis_url} failed: {exc}", file=sys.stderr)
            return redis_down

    return handler


@contextlib.asynccontextmanager
async def records_client(args: argparse.Namespace, r: Client) -> AsyncIterator[Client]:
    """The client for the decision records: ``r``, or one on the config's
    ``[records] redis_url`` (proxy/cli.py sets ``args.records_url``)."""
    url = getattr(args, "records_url", None)
    if not url:
        yield r
        return
    rr = _client(url)
    try:
        yield rr
    finally:
        await rr.aclose()


def make_store(r: Client, prefix: str, now: Clock, config: Config | None = None) -> SnapshotStore:
    """A store on the open client; with `config`, the snapshot it loads is
    built with exactly the running proxy's decision settings
    (proxy/server/worker.py, _make_store)."""
    url = "redis://"  # not used: _data is set to the open client
    if config is None:
        s = SnapshotStore(url, prefix, emergency=frozenset({"911", "933"}))
    else:
        s = SnapshotStore(
            url,
            prefix,
            emergency=config.emergency_numbers,
            emergency_callers=config.emergency_callers,
            unmapped_provider_policy=config.unmapped_provider_policy,
            shaken_policy=config.shaken_policy,
        )
    s.clock = now
    s._data = r
    return s


def entry_meta(args: argparse.Namespace) -> dict[str, str]:
    out = {"why": getattr(args, "why", None) or "", "by": getattr(args, "by", None) or ""}
    return {k: v for k, v in out.items() if v}


async def scan_keys(r: Client, pattern: str) -> list[str]:
    return [k async for k in r.scan_iter(match=pattern, count=1000)]


def recorded_by(args: argparse.Namespace) -> str:
    """Who records an entry: ``--by``, default the OS user."""
    by = getattr(args, "by", None)
    if by:
        return str(by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


async def hgetall_many(r: Client, keys: list[str]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i in range(0, len(keys), 1000):
        async with r.pipeline(transaction=False) as p:
            for k in keys[i : i + 1000]:
                p.hgetall(k)
            out.extend(await p.execute())
    return out
