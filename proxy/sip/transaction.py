"""INVITE server transactions for the INVITEs the proxy rejects itself (sans-I/O).

How this works:

- The proxy is stateless (RFC 3261 §16.11) for everything it forwards. Only
  when the screen rejects an initial INVITE does it act as a UAS for that
  transaction, and RFC 3261 §17.2.1 then asks for an INVITE server
  transaction: the final response is retransmitted over UDP on timer G until
  the ACK arrives, timer H bounds the wait for the ACK, timer I absorbs ACK
  retransmissions after it.
- The state machine is data: ``TABLE[(state, event)] -> (actions, next)``.
  ``TransactionTable.dispatch`` looks the pair up and runs the actions; a pair
  not in the table is ignored (a stale timer, an ACK after Terminated ...).
- The timers of all transactions live in a few FIFOs and one heap: a timer
  armed at ``now`` plus a constant (the first G at T1, I at T4, H at 64*T1)
  joins the FIFO of that constant, where deadlines come in the order they
  were armed (O(1) at both ends); the doubled G, and any timer armed out of
  order (a clock that went back), goes to the heap of ``(deadline, seq, key,
  event)``. Entries are never removed: a popped entry whose transaction has
  gone or whose deadline was re-armed is skipped (lazy deletion), so the core
  exposes one timer for everything (``next_deadline``/``fire``). Over UDP,
  timer H is armed by the last G rather than at the answer: an ACK usually
  comes first, and 32 s of dead H entries per answer filled the heap.
- Transactions are keyed per RFC 3261 §17.2.3 by the top Via branch and
  sent-by (method INVITE implied; the ACK to a non-2xx and the CANCEL carry
  the same branch). RFC 2543 requests without the magic cookie are keyed by
  Call-ID, From tag, CSeq number and top Via sent-by.
- Retransmission budget (issue 10.8: a spoofed INVITE must not draw eleven
  603s at its "source"): with ``unacked_limit`` > 0, a new transaction whose
  destination IP already has that many rejections waiting for their ACK, or
  let one time out (timer H) less than ``no_ack_hold`` seconds ago, sends its
  final response once and arms no timer G (``suppressed`` counts them); timer
  H and the Completed state are unchanged. RFC 3261 §17.2.1 makes timer G the
  UAS's answer to a lost response; a UAC whose response was lost has no final
  response, so its own INVITE client transaction keeps retransmitting the
  INVITE (timer A, §17.1.1.2), and each copy is answered from Completed with
  the final response: an honest UAC still gets its answer, in the same
  timer-B bound. An honest UAC ACKs within a round trip, so it never has more
  than a few rejections outstanding and keeps the full timer G schedule.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from dataclasses import dataclass

from .message import Request, Via

__all__ = [
    "T1",
    "T2",
    "T4",
    "TIMER_H",
    "TxState",
    "TxEvent",
    "TxAction",
    "TABLE",
    "InviteServerTransaction",
    "TransactionTable",
    "transaction_key",
    "via_key",
    "Out",
]

# RFC 3261 §17.1.1.1 / Table 4
T1 = 0.5
T2 = 4.0
T4 = 5.0
TIMER_H = 64 * T1  # wait time for ACK receipt
TIMER_I_UDP = T4  # wait time for ACK retransmits
TIMER_I_RELIABLE = 0.0

MAGIC_COOKIE = b"z9hG4bK"  # RFC 3261 §8.1.1.7

Out = tuple[bytes, tuple[str, int], str]


class TxState(enum.StrEnum):  # str: C-level hash (TABLE lookups)
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class TxEvent(enum.StrEnum):  # str: C-level hash (TABLE lookups)
    FINAL_RESPONSE = "final_response"  # the TU (the screen) answered
    INVITE_RETRANSMISSION = "invite_retransmission"
    ACK = "ack"
    TIMER_G = "timer_g"
    TIMER_H = "timer_h"
    TIMER_I = "timer_i"


class TxAction(enum.StrEnum):  # str: C-level hash (TABLE lookups)
    SEND_FINAL = "send_final"  # (re)send the final response
    START_G = "start_g"  # arm timer G at T1 (unreliable transports only)
    DOUBLE_G = "double_g"  # re-arm G at min(2*G, T2)
    START_H = "start_h"  # arm timer H at 64*T1
    START_I = "start_i"  # arm timer I at T4 (0 for reliable)
    COUNT_ACK_TIMEOUT = "count_ack_timeout"
    ABSORB = "absorb"  # swallow the message, nothing to send


S = TxState
E = TxEvent
A = TxAction

# RFC 3261 §17.2.1, Figure 7. (state, event) -> (actions, next state)
TABLE: dict[tuple[TxState, TxEvent], tuple[tuple[TxAction, ...], TxState]] = {
    # "the TU passes a final response ... the state machine MUST enter Completed"
    (S.PROCEEDING, E.FINAL_RESPONSE): ((A.SEND_FINAL, A.START_G, A.START_H), S.COMPLETED),
    # a retransmission in Proceeding: we have no provisional to resend; absorb
    (S.PROCEEDING, E.INVITE_RETRANSMISSION): ((A.ABSORB,), S.PROCEEDING),
    # "any retransmissions of the INVITE received while in Completed ... the
    #  most recent response MUST be passed to the transport layer"
    (S.COMPLETED, E.INVITE_RETRANSMISSION): ((A.SEND_FINAL,), S.COMPLETED),
    (S.COMPLETED, E.TIMER_G): ((A.SEND_FINAL, A.DOUBLE_G), S.COMPLETED),
    # "If an ACK is received while in Completed, the machine MUST go to Confirmed"
    (S.COMPLETED, E.ACK): ((A.ABSORB, A.START_I), S.CONFIRMED),
    # "If timer H fires while in Completed ... the transaction has failed"
    (S.COMPLETED, E.TIMER_H): ((A.COUNT_ACK_TIMEOUT,), S.TERMINATED),
    # "Confirmed ... absorb any additional ACK messages"
    (S.CONFIRMED, E.ACK): ((A.ABSORB,), S.CONFIRMED),
    (S.CONFIRMED, E.INVITE_RETRANSMISSION): ((A.ABSORB,), S.CONFIRMED),
    (S.CONFIRMED, E.TIMER_I): ((), S.TERMINATED),
}


def via_key(top: Via) -> bytes | None:
    """The RFC 3261 §17.2.3 key from the top Via alone: branch and sent-by, when the
    branch has the magic cookie; None for an RFC 2543 branch (more fields needed)."""
    branch = top.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        return branch + b"|" + top.sent_by.lower()
    return None


def transaction_key(req: Request) -> bytes:
    """RFC 3261 §17.2.3 server transaction key of an INVITE, its ACK or its CANCEL."""
    top = req.vias[0]
    key = via_key(top)
    if key is not None:
        return key
    # RFC 2543 style (inv2543): no usable branch
    ftag = req.from_.tag or b""
    return b"2543|%s|%s|%d|%s" % (req.call_id, ftag, req.cseq[0], top.sent_by.lower())


@dataclass(slots=True)
class InviteServerTransaction:
    key: bytes
    final: bytes  # the final response, sent as is on every (re)transmission
    dest: tuple[str, int]
    transport: str
    reliable: bool
    state: TxState = TxState.PROCEEDING
    g_interval: float = T1
    g_at: float | None = None
    h_at: float | None = None
    i_at: float | None = None
    sent: int = 0  # number of times ``final`` went out
    retransmit: bool = True  # False: over the destination's budget, no timer G
    counted: bool = False  # counted in TransactionTable._unacked while Completed
    to_tag: bytes = b""  # the To tag of ``final``: an ACK that names it is this one's


class TransactionTable:
    """All rejected-INVITE server transactions of one core and their timers."""

    __slots__ = (
        "_tx",
        "live",
        "_heap",
        "_seq",
        "_fifos",
        "_deadline",
        "_deadline_stale",
        "ack_timeouts",
        "terminated",
        "unacked_limit",
        "no_ack_hold",
        "suppressed",
        "_unacked",
        "_no_ack",
    )

    # start, ack and fire take the rows every answered call takes without the
    # TABLE; False: every event through the TABLE (tests/unit/test_sip_transaction.py's
    # reference)
    ROWS_WRITTEN_OUT = True

    def __init__(self, unacked_limit: int = 0, no_ack_hold: float = 300.0) -> None:
        self._tx: dict[bytes, InviteServerTransaction] = {}
        # the same dict, read-only for the core: ``if table.live`` costs no call
        # (``len(table)`` is a Python __len__ on the INVITE path)
        self.live: dict[bytes, InviteServerTransaction] = self._tx
        self._heap: list[tuple[float, int, bytes, TxEvent]] = []
        self._seq = 0
        # Timers armed at ``now + a constant`` (the first G, I, H) come due in the
        # order they were armed: one FIFO per constant, O(1) at both ends; the
        # doubled G (and anything armed out of order) goes to the heap.
        # Its entries are (deadline, key): a tuple of a float and bytes, which the
        # collector stops tracking after one pass (a StrEnum inside would keep
        # every entry of the last seconds in each full collection).
        self._fifos: dict[tuple[float, TxEvent], deque[tuple[float, bytes]]] = {}
        # next_deadline() is asked after every message: kept until dispatch or
        # fire changes the table
        self._deadline: float | None = None
        self._deadline_stale = False
        self.ack_timeouts = 0
        self.terminated = 0
        # The retransmission budget (module docstring); 0 = RFC 3261 timer G always
        self.unacked_limit = unacked_limit
        self.no_ack_hold = no_ack_hold
        self.suppressed = 0  # transactions that sent their final response once only
        self._unacked: dict[str, int] = {}  # destination IP -> transactions in Completed
        self._no_ack: dict[str, float] = {}  # destination IP -> end of its hold

    def __len__(self) -> int:
        return len(self._tx)

    def get(self, key: bytes) -> InviteServerTransaction | None:
        return self._tx.get(key)

    def start(
        self,
        key: bytes,
        final: bytes,
        dest: tuple[str, int],
        transport: str,
        now: float,
        to_tag: bytes = b"",
    ) -> list[Out]:
        """Create a transaction for a rejected INVITE and send its final response
        (``to_tag``: the To tag ``final`` carries)."""
        tx = InviteServerTransaction(key, final, dest, transport, transport != "udp")
        tx.to_tag = to_tag
        self._tx[key] = tx
        if self.unacked_limit and not tx.reliable:
            ip = dest[0]
            n = self._unacked.get(ip, 0)
            if n >= self.unacked_limit or self._held(ip, now):
                tx.retransmit = False
                self.suppressed += 1
            self._unacked[ip] = n + 1
            tx.counted = True
        if not self.ROWS_WRITTEN_OUT:
            return self.dispatch(tx, E.FINAL_RESPONSE, now)
        # dispatch(tx, FINAL_RESPONSE) from Proceeding, the TABLE's row written out
        # (every answer takes it; tests/unit/test_sip_transaction.py checks the two agree)
        tx.sent = 1
        tx.h_at = h_at = now + TIMER_H  # START_H: armed by the last G when G runs
        if not tx.reliable and tx.retransmit:  # START_G
            tx.g_at = at = now + T1
            self._push(at, key, E.TIMER_G, T1)
        else:
            at = h_at
            self._push(at, key, E.TIMER_H, TIMER_H)
        self._armed(at)
        tx.state = S.COMPLETED
        return [(final, dest, transport)]

    def _armed(self, at: float) -> None:
        """A timer was armed at ``at`` (``next_deadline``'s cache: kept while it is
        not later than ``at``; a timer disarmed since may leave it early, never late)."""
        d = self._deadline
        if d is None or at < d:
            self._deadline_stale = True

    def ack(self, tx: InviteServerTransaction, now: float) -> list[Out]:
        """``dispatch(tx, ACK, now)``; the row every answered call takes (Completed ->
        Confirmed: absorb, timer I) written out, the others through the TABLE."""
        if tx.state is not S.COMPLETED or not self.ROWS_WRITTEN_OUT:
            return self.dispatch(tx, E.ACK, now)
        tx.g_at = None  # START_I: "timer G is ignored" once Confirmed
        wait = TIMER_I_RELIABLE if tx.reliable else TIMER_I_UDP
        tx.i_at = at = now + wait
        self._push(at, tx.key, E.TIMER_I, wait)
        self._armed(at)
        if tx.counted:
            self._left_completed(tx)
        tx.state = S.CONFIRMED
        return []

    def _held(self, ip: str, now: float) -> bool:
        """``ip`` let a rejection time out less than ``no_ack_hold`` seconds ago."""
        until = self._no_ack.get(ip)
        if until is None:
            return False
        if until > now:
            return True
        del self._no_ack[ip]
        return False

    def _left_completed(self, tx: InviteServerTransaction) -> None:
        tx.counted = False
        ip = tx.dest[0]
        n = self._unacked.get(ip, 1) - 1
        if n > 0:
            self._unacked[ip] = n
        else:
            self._unacked.pop(ip, None)

    def dispatch(self, tx: InviteServerTransaction, event: TxEvent, now: float) -> list[Out]:
        """Run ``TABLE[(tx.state, event)]``; unknown pairs are ignored."""
        self._deadline_stale = True
        entry = TABLE.get((tx.state, event))
        if entry is None:
            return []
        actions, nxt = entry
        out: list[Out] = []
        for act in actions:
            if act is A.SEND_FINAL:
                out.append((tx.final, tx.dest, tx.transport))
                tx.sent += 1
            elif act is A.START_G:
                # RFC 3261 §17.2.1: G only for unreliable transports (and within budget)
                if not tx.reliable and tx.retransmit:
                    tx.g_interval = T1
                    tx.g_at = now + T1
                    self._push(tx.g_at, tx.key, E.TIMER_G, T1)
            elif act is A.DOUBLE_G:
                tx.g_interval = min(2 * tx.g_interval, T2)
                at = now + tx.g_interval
                if tx.h_at is not None and at >= tx.h_at:
                    # H comes first: the chain of G ends, H is armed now (START_H)
                    tx.g_at = None
                    self._push(tx.h_at, tx.key, E.TIMER_H)
                else:
                    tx.g_at = at
                    self._push(at, tx.key, E.TIMER_G)
            elif act is A.START_H:
                tx.h_at = now + TIMER_H
                if tx.g_at is None:
                    self._push(tx.h_at, tx.key, E.TIMER_H, TIMER_H)
                # else armed by the last G (DOUBLE_G): an ACK usually comes first,
                # and an H entry per answer would wait 32 s in the heap for nothing
            elif act is A.START_I:
                tx.g_at = None  # "timer G is ignored" once Confirmed
                wait = TIMER_I_RELIABLE if tx.reliable else TIMER_I_UDP
                tx.i_at = now + wait
                self._push(tx.i_at, tx.key, E.TIMER_I, wait)
            elif act is A.COUNT_ACK_TIMEOUT:
                self.ack_timeouts += 1
                if self.unacked_limit and not tx.reliable:
                    if len(self._no_ack) >= 65536:  # bounded: spoofed sources are unbounded
                        self._no_ack.clear()
                    self._no_ack[tx.dest[0]] = now + self.no_ack_hold
        if tx.counted and nxt is not S.COMPLETED:
            self._left_completed(tx)
        tx.state = nxt
        if nxt is S.TERMINATED:
            del self._tx[tx.key]
            self.terminated += 1
        return out

    def _push(self, when: float, key: bytes, event: TxEvent, delay: float | None = None) -> None:
        """Arm ``event`` for ``key`` at ``when``; ``delay``: ``when`` is ``now + delay``
        for a constant delay (its FIFO, unless that would put it out of order)."""
        if delay is not None:
            q = self._fifos.get((delay, event))
            if q is None:
                q = self._fifos[(delay, event)] = deque()
            if not q or q[-1][0] <= when:
                q.append((when, key))
                return
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key, event))

    def _live(self, when: float, key: bytes, event: TxEvent) -> InviteServerTransaction | None:
        tx = self._tx.get(key)
        if tx is None:
            return None
        armed = tx.g_at if event is E.TIMER_G else tx.h_at if event is E.TIMER_H else tx.i_at
        return tx if armed == when else None

    def next_deadline(self) -> float | None:
        """When ``fire`` has something to do next, or None: never later than the
        earliest armed timer; after ``start``/``ack`` it may be earlier (a timer
        disarmed since), and a call to ``fire`` then finds nothing due and
        computes it again."""
        if not self._deadline_stale:
            return self._deadline
        self._deadline_stale = False
        best: float | None = None
        heap = self._heap
        while heap:
            when, _, key, event = heap[0]
            if self._live(when, key, event) is not None:
                best = when
                break
            heapq.heappop(heap)
        for (_, event), q in self._fifos.items():
            while q:
                when, key = q[0]
                if self._live(when, key, event) is not None:
                    if best is None or when < best:
                        best = when
                    break
                q.popleft()
        self._deadline = best
        return best

    def fire(self, now: float) -> list[Out]:
        """Run every timer due at ``now``, earliest first (ties: the heap, then the
        FIFOs in the order they were made); ``_live``'s check written out: most
        entries are a first G whose ACK came, skipped here."""
        out: list[Out] = []
        self._deadline_stale = True
        heap = self._heap
        fifos = [(q, event) for (_, event), q in self._fifos.items()]
        txs = self._tx
        g, h = E.TIMER_G, E.TIMER_H
        written_out = self.ROWS_WRITTEN_OUT
        while True:
            src: deque[tuple[float, bytes]] | None = None
            event = g
            best = heap[0][0] if heap and heap[0][0] <= now else None
            for q, ev in fifos:
                if q:
                    w = q[0][0]
                    if w <= now and (best is None or w < best):
                        best, src, event = w, q, ev
            if best is None:
                break
            if src is not None:
                when, key = src.popleft()
            else:
                when, _, key, event = heapq.heappop(heap)
            tx = txs.get(key)
            if tx is None:
                continue
            if (tx.g_at if event is g else tx.h_at if event is h else tx.i_at) != when:
                continue  # re-armed or disarmed since: a stale entry
            if event is g:
                tx.g_at = None
            elif event is h:
                tx.h_at = None
            else:
                tx.i_at = None
                if tx.state is S.CONFIRMED and written_out:
                    # the TABLE's (Confirmed, timer I) row, the end of every answered
                    # call, written out (left Completed at the ACK: nothing counted)
                    tx.state = S.TERMINATED
                    del txs[key]
                    self.terminated += 1
                    continue
            # timers fire at their deadline: re-arm relative to it, not to a late ``now``
            out.extend(self.dispatch(tx, event, when))
        return out
