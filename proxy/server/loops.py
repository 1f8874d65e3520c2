"""The event loop a process runs (uvloop when importable) and the decision
clock the Screener reads (real time, or the replay clock of `run --clock`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from proxy.config import Config

log = logging.getLogger("sipscreen")

# ---------------------------------------------------------------------------
# Decision clock
# ---------------------------------------------------------------------------


def replay_clock(start: float, anchor: float | None = None) -> Callable[[], float]:
    """A clock that reads `start` at real time `anchor` (default: now) and
    advances in real time from there."""
    offset = start - (time.time() if anchor is None else anchor)

    def clock() -> float:
        return time.time() + offset

    return clock


def decision_clock(config: Config) -> Callable[[], float]:
    """The Screener's clock: real time, or the replay clock of `config`."""
    if config.clock_start is None:
        return time.time
    return replay_clock(config.clock_start)


# ---------------------------------------------------------------------------
# Event loop selection
# ---------------------------------------------------------------------------


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """`uvloop.new_event_loop` for "uvloop" (or "auto" when importable)."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")
