"""proxy/server/shedding.py: when a worker sheds load, on synthetic readings of
its receive queue every 20 ms as the worker reads it (bytes queued; the clock
in ms here, so that the windows' sums are exact)."""

from __future__ import annotations

from proxy.server.shedding import ShedPolicy

HIGH = 2 << 20  # 2 MiB
TICK = 20  # ms
HOLD = 100  # ms


def _run(policy: ShedPolicy, readings: list[int], t0: float = 0) -> list[bool]:
    return [policy.update(q, t0 + i * TICK) for i, q in enumerate(readings)]


def test_a_standing_full_queue_is_shed_after_the_hold() -> None:
    p = ShedPolicy(HIGH, HOLD)
    states = _run(p, [4 << 20] * 10)
    assert states[:5] == [False] * 5  # 0..80 ms: not yet a whole hold
    assert states[5] and p.overloaded  # 100 ms above high, not draining
    # shedding goes on until the queue is under a quarter of high
    assert _run(p, [HIGH, HIGH // 2, HIGH // 4 + 1, HIGH // 4 - 1], 1000) == [
        True,
        True,
        True,
        False,
    ]


def test_a_hiccup_backlog_being_worked_off_is_not_shed() -> None:
    """The machine held the worker up: it finds 4 MiB queued and works it off by
    at least a tenth per 100 ms: never overloaded, however long it takes."""
    p = ShedPolicy(HIGH, HOLD)
    queued, readings = 4 << 20, []
    while queued > 0:
        readings.append(queued)
        queued -= 100_000  # ~0.5 MiB per 100 ms: 12% a window at first, more later
    assert not any(_run(p, readings))
    assert p.since is None  # under high again: the next run starts afresh


def test_a_queue_that_drains_too_slowly_is_shed() -> None:
    """Less than a tenth per hold: more arrives than the worker serves, or it
    would take it more than a second to catch up (callers retransmit at T1)."""
    p = ShedPolicy(HIGH, HOLD)
    queued, states = 4 << 20, []
    for i in range(12):
        states.append(p.update(queued, i * TICK))
        queued -= 20_000  # ~0.1 MiB per 100 ms: 2.5%
    assert states.index(True) == 5


def test_dipping_under_high_restarts_the_count() -> None:
    p = ShedPolicy(HIGH, HOLD)
    readings = [HIGH + 1] * 4 + [HIGH] + [HIGH + 1] * 4
    assert not any(_run(p, readings))


def test_hold_zero_sheds_at_the_first_reading_above_high() -> None:
    """overload_hold_ms = 0: the first reading above high sheds."""
    p = ShedPolicy(64 << 10, 0)
    assert _run(p, [64 << 10, 1 << 20]) == [False, True]
