"""When a worker sheds load: the policy, on the bytes queued and the clock (sans-I/O).

How this works: the worker reads the bytes waiting in its UDP receive queues
every 20 ms and after every full batch (proxy/server/datapath.py
``_check_overload``) and asks ``ShedPolicy.update(queued, now)`` whether it is
overloaded. Overloaded means a standing queue, one the worker is not
working off:

- above ``high`` bytes, for a whole window of ``hold`` seconds in which the
  queue did not shrink below ``DRAINING`` (nine tenths) of what it held when
  the window began. A window in which it did shrink starts the next one: the
  worker is catching up.
- It stops when the queue is under ``low`` (a quarter of ``high``), or
  whenever it is at or under ``high`` before shedding started.
- ``hold`` 0: shedding starts at the first reading above ``high``.

Why not the first sight of ``high``: on a loaded 2-core host a worker, or the
whole machine, is held up now and then for tens to hundreds of ms (RESULTS.md,
eighth session). The worker then finds a full queue and, with CPU to spare,
drains it within a few hundred ms; the callers' INVITEs wait, some are
retransmitted (answered again from their transactions), and every call
completes, as Kamailio's do. Shedding on the first sight, or on a queue that
stood for 100 ms whatever it did, answered thousands of those INVITEs 503.
A worker that really is behind (more arrives than it serves) has a queue
that stays full, which the policy sees within one ``hold``: ``hold`` (100 ms
by default) plus the time to fill the buffer stays below T1 (500 ms), so it
sheds before its callers retransmit.
"""

from __future__ import annotations

__all__ = ["DRAINING", "ShedPolicy"]

# A window in which the queue fell under this share of its size at the start
# of the window: the worker is catching up (not overloaded).
DRAINING = 0.9


class ShedPolicy:
    """Overloaded or not, from ``update(queued, now)`` (module docstring)."""

    __slots__ = ("high", "low", "hold", "overloaded", "since", "_window_at", "_window_queued")

    def __init__(self, high: int, hold: float, low: int | None = None) -> None:
        self.high = high
        self.low = high // 4 if low is None else low
        self.hold = hold
        self.overloaded = False
        # when the queue was first seen above high in the current run of checks
        self.since: float | None = None
        self._window_at = 0.0
        self._window_queued = 0

    def update(self, queued: int, now: float) -> bool:
        """The state after one reading of the bytes queued at ``now``."""
        if self.overloaded:
            if queued < self.low:
                self.overloaded = False
                self.since = None
            return self.overloaded
        if queued <= self.high:
            self.since = None
            return False
        if self.since is None:
            self.since = self._window_at = now
            self._window_queued = queued
            if self.hold > 0:
                return False
            # hold 0: shed at the first sight of the queue above high
        elif now - self._window_at < self.hold:
            return False
        elif queued < self._window_queued * DRAINING:
            # caught up by a tenth or more in one hold: another window
            self._window_at = now
            self._window_queued = queued
            return False
        self.overloaded = True
        return True
