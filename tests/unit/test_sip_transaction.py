"""The INVITE server transaction table (RFC 3261 §17.2.1) on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip.message import Request, parse
from proxy.sip.transaction import (
    T1,
    T4,
    TABLE,
    TIMER_H,
    TransactionTable,
    TxEvent,
    TxState,
    transaction_key,
)

DEST = ("127.0.0.3", 5061)


def test_table_shape() -> None:
    # every state but Terminated has an exit; Terminated has no entries at all
    assert {s for s, _ in TABLE} == {TxState.PROCEEDING, TxState.COMPLETED, TxState.CONFIRMED}
    assert TABLE[(TxState.COMPLETED, TxEvent.ACK)][1] is TxState.CONFIRMED
    assert TABLE[(TxState.COMPLETED, TxEvent.TIMER_H)][1] is TxState.TERMINATED
    assert TABLE[(TxState.CONFIRMED, TxEvent.TIMER_I)][1] is TxState.TERMINATED


def test_udp_lifecycle() -> None:
    table = TransactionTable()
    out = table.start(b"k", b"FINAL", DEST, "udp", 10.0)
    assert out == [(b"FINAL", DEST, "udp")]
    tx = table.get(b"k")
    assert tx is not None and tx.state is TxState.COMPLETED
    assert table.next_deadline() == 10.0 + T1
    assert table.dispatch(tx, TxEvent.INVITE_RETRANSMISSION, 10.1) == [(b"FINAL", DEST, "udp")]
    assert table.fire(10.4) == []
    assert table.fire(10.5) == [(b"FINAL", DEST, "udp")]
    assert table.next_deadline() == 11.5
    assert table.dispatch(tx, TxEvent.ACK, 11.0) == []
    assert tx.state is TxState.CONFIRMED
    # the stale G entry is skipped; I is next
    assert table.next_deadline() == 11.0 + T4
    assert table.fire(15.9) == []
    assert table.fire(16.0) == [] and table.get(b"k") is None
    assert table.next_deadline() is None and table.terminated == 1


def test_reliable_transport_has_no_timer_g_and_zero_timer_i() -> None:
    table = TransactionTable()
    table.start(b"k", b"FINAL", DEST, "tcp", 0.0)
    assert table.next_deadline() == TIMER_H
    tx = table.get(b"k")
    assert tx is not None
    table.dispatch(tx, TxEvent.ACK, 1.0)
    assert table.next_deadline() == 1.0
    table.fire(1.0)
    assert len(table) == 0 and table.ack_timeouts == 0


def test_late_timer_call_catches_up_and_terminates() -> None:
    table = TransactionTable()
    table.start(b"k", b"F", DEST, "udp", 0.0)
    out = table.fire(100.0)  # the adapter slept through everything
    assert len(out) == 10 and len(table) == 0 and table.ack_timeouts == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(TxEvent)), max_size=30), st.sampled_from(["udp", "tcp"]))
def test_any_event_sequence_is_safe(events: list[TxEvent], transport: str) -> None:
    """Hypothesis over (state, event) sequences: no exception, sends only the final."""
    table = TransactionTable()
    now = 0.0
    table.start(b"k", b"F", DEST, transport, now)
    for ev in events:
        now += 0.3
        tx = table.get(b"k")
        if tx is None:
            break
        before = tx.state
        out = table.dispatch(tx, ev, now)
        assert all(o == (b"F", DEST, transport) for o in out)
        entry = TABLE.get((before, ev))
        assert tx.state is (before if entry is None else entry[1])
        table.fire(now)
    # everything ends by timer H (+ timer I) at the latest
    table.fire(now + TIMER_H + T4 + 1)
    assert len(table) == 0 and table.next_deadline() is None


def test_keys_match_ack_and_cancel_of_the_invite() -> None:
    inv = (
        b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
        b"From: <sip:a@h>;tag=f\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\n\r\n"
    )
    ack = inv.replace(b"INVITE", b"ACK").replace(b"To: <sip:b@h>", b"To: <sip:b@h>;tag=t")
    cancel = inv.replace(b"INVITE", b"CANCEL")
    keys = set()
    for raw in (inv, ack, cancel):
        msg = parse(raw)
        assert isinstance(msg, Request)
        keys.add(transaction_key(msg))
    assert len(keys) == 1
    # RFC 2543 style (no magic cookie): keyed by Call-ID, From tag, CSeq, sent-by
    old = [parse(r.replace(b";branch=z9hG4bKx", b"")) for r in (inv, ack, cancel)]
    assert len({transaction_key(m) for m in old if isinstance(m, Request)}) == 1


class _HeapOnly(TransactionTable):
    """The table with every timer on the heap (no FIFOs): the reference order; and
    every event through ``dispatch`` and the TABLE (no row written out: ``start``,
    ``ack`` and ``fire`` take the TABLE's rows, as the state machine defines them)."""

    __slots__ = ()
    ROWS_WRITTEN_OUT = False

    def _push(self, when: float, key: bytes, event: TxEvent, delay: float | None = None) -> None:
        super()._push(when, key, event, None)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # which transaction
            st.sampled_from(["start", "ack", "retransmit", "fire"]),
            st.floats(-0.4, 3.0),  # time step (negative: a clock that went back)
            st.sampled_from(["udp", "tcp"]),
        ),
        max_size=60,
    ),
    st.sampled_from([0, 2]),  # the retransmission budget: off, or 2 unacked per IP
)
def test_fifo_timers_fire_as_the_heap_would(
    steps: list[tuple[int, str, float, str]], budget: int
) -> None:
    """Timers armed at now + a constant go to FIFOs, and the rows every call takes
    (start, ack) are written out: the same answers, the same states, the same
    deadlines (or an earlier one that a timer call corrects) and the same end as
    with every timer on one heap and every event through the TABLE, for any
    interleaving of transactions, ACKs and timer calls (also out of order)."""
    fast, ref = TransactionTable(budget, 1.0), _HeapOnly(budget, 1.0)
    now = 0.0
    for k, what, dt, transport in steps:
        now = max(0.0, now + dt)
        key = b"k%d" % k
        outs = []
        for table in (fast, ref):
            tx = table.get(key)
            if what == "start" and tx is None:
                outs.append(table.start(key, b"F" + key, DEST, transport, now))
            elif what == "ack" and tx is not None:
                outs.append(table.ack(tx, now))
            elif what == "retransmit" and tx is not None:
                outs.append(table.dispatch(tx, TxEvent.INVITE_RETRANSMISSION, now))
            else:
                outs.append(table.fire(now))
        # the same datagrams; two transactions' timers due at the same instant may
        # come in either order (the heap keeps the order they were armed in, the
        # FIFOs theirs), which nothing on the wire can tell apart
        assert sorted(outs[0]) == sorted(outs[1])
        fd, rd = fast.next_deadline(), ref.next_deadline()
        # never late; early only by a timer disarmed since (start/ack keep the
        # cache): a timer call then finds nothing due, and knows the real one
        assert rd is None or (fd is not None and fd <= rd)
        if fd is not None and (rd is None or fd < rd):
            assert fast.fire(fd) == [] == ref.fire(fd)
            assert fast.next_deadline() == ref.next_deadline()
        assert len(fast) == len(ref)
        for key in (b"k%d" % i for i in range(6)):
            a, b = fast.get(key), ref.get(key)
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert (a.state, a.g_at, a.h_at, a.i_at, a.sent, a.retransmit, a.counted) == (
                    b.state,
                    b.g_at,
                    b.h_at,
                    b.i_at,
                    b.sent,
                    b.retransmit,
                    b.counted,
                )
        assert (fast._unacked, fast.suppressed, fast.terminated, fast.ack_timeouts) == (
            ref._unacked,
            ref.suppressed,
            ref.terminated,
            ref.ack_timeouts,
        )
    end = now + TIMER_H + T4 + 1
    assert sorted(fast.fire(end)) == sorted(ref.fire(end))
    assert len(fast) == 0 == len(ref) and fast.next_deadline() is None
