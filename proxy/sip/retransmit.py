"""Retransmission of requests that cross from a reliable transport onto UDP (sans-I/O).

How this works:

- The proxy forwards requests without client transactions (proxy/sip/core.py).
  That is enough when the request arrived over UDP: its sender runs timer A
  (INVITE) or timer E (non-INVITE) and retransmits until a response comes
  back, and each copy is forwarded again. A sender over TCP or TLS does not:
  RFC 3261 §17.1.1.2 "If an unreliable transport is being used, the client
  transaction MUST start timer A with a value of T1"; §17.1.2.2 "If an
  unreliable transport is in use, the client transaction MUST set timer E to
  fire in T1 seconds". A reliable sender relies on its transport, so once the
  proxy puts its request on UDP the proxy takes over that duty (RFC 3261
  §16.6 step 10, §17.1: the stateful proxy's client transaction does it).
- ``RetransmitTable.track`` is called for such a request (never an ACK: §17.1.1.3
  "the ACK ... is not retransmitted" by the transaction, and an ACK has no
  response to stop it). The table keeps the forwarded bytes and sends them
  again on its timers, keyed by our branch (the 16 hex digits after
  ``z9hG4bKsc``) and the method: the CANCEL of an INVITE carries the
  INVITE's branch (RFC 3261 §9.1), so the two are told apart by the CSeq
  method of the response.
- INVITE (§17.1.1.2): timer A fires at T1, 2*T1, 4*T1 ... (doubling, no cap);
  "If the client transaction receives a provisional response while in the
  Calling state, it transitions to the Proceeding state. In the Proceeding
  state, the client transaction SHOULD NOT retransmit the request any
  longer", so any response removes the entry. Timer B at 64*T1 without any
  response: the entry expires and the core answers the caller 408 Request
  Timeout, as a stateful proxy does when its client transaction times out
  (RFC 3261 §16.8: "behave as if the client transaction had received a 408",
  then §16.7 step 6/7 forward the best response, here that 408).
- Non-INVITE (§17.1.2.2): timer E at T1, doubling up to T2 ("timer E MUST
  be reset with a value of MIN(2*T1, T2) ... on the next firing ... T2");
  a provisional response moves it to Proceeding, where timer E is reset to
  T2 each time; a final response removes the entry; timer F at 64*T1
  expires it. No 408 is sent for a non-INVITE: RFC 4320 §4.1 "A
  transaction-stateful SIP element MUST NOT send a response with Status-Code
  of 408 to a non-INVITE request" (it would arrive when the sender's own
  timer F has already fired); the expiry is counted and logged only.
- Bounded (an attacker sending INVITEs over TLS towards a dead softswitch
  must not grow memory): at most ``cap`` entries; a request over the cap is
  still forwarded once, untracked, and counted (``refused``). Each entry
  lives at most 64*T1 = 32 s.
- Timers live in one heap of ``(deadline, seq, entry, kind)`` with lazy
  deletion, like proxy/sip/transaction.py: a popped timer whose entry has
  gone, or was re-armed, is skipped.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from .message import Request
from .transaction import T1, T2, Out

__all__ = ["TIMER_B", "Pending", "RetransmitTable", "describe"]

TIMER_B = 64 * T1  # RFC 3261 §17.1.1.2 timer B, §17.1.2.2 timer F: 64*T1
_RETRANSMIT = 0
_EXPIRE = 1


@dataclass(slots=True, eq=False)
class Pending:
    """One request forwarded onto UDP on behalf of a reliable sender."""

    branch: bytes  # our branch tail (16 hex digits)
    method: bytes
    data: bytes  # the forwarded bytes, sent as they are on every retransmission
    dest: tuple[str, int]
    interval: float  # the next retransmission interval (timer A/E)
    next_at: float  # when timer A/E fires
    expires_at: float  # timer B/F
    # for the 408 of an INVITE: the request as received, its source and transport
    req: Request | None
    src: tuple[str, int]
    transport: str
    proceeding: bool = False  # non-INVITE: a provisional response came
    sent: int = 1  # copies sent, the first included
    live: bool = True


class RetransmitTable:
    """The requests the proxy retransmits for reliable senders (module docstring)."""

    __slots__ = (
        "pending",
        "_n",
        "_heap",
        "_seq",
        "cap",
        "retransmitted",
        "refused",
        "timeouts_invite",
        "timeouts_non_invite",
        "last_timeout",
    )

    def __init__(self, cap: int = 4096) -> None:
        # branch tail -> the entries of that branch (an INVITE and its CANCEL)
        self.pending: dict[bytes, list[Pending]] = {}
        self._n = 0  # entries in ``pending``
        self._heap: list[tuple[float, int, Pending, int]] = []
        self._seq = 0
        self.cap = cap
        self.retransmitted = 0  # copies sent again
        self.refused = 0  # requests not tracked: the table was full
        self.timeouts_invite = 0  # timer B: the caller was answered 408
        self.timeouts_non_invite = 0  # timer F: nothing sent (RFC 4320 §4.1)
        # the last expiry in words, for the adapter's log line (this layer does
        # no I/O: proxy/metrics.py logs it, once a minute at most)
        self.last_timeout = ""

    def __len__(self) -> int:
        return self._n

    def track(
        self,
        branch: bytes,
        method: bytes,
        data: bytes,
        dest: tuple[str, int],
        req: Request,
        src: tuple[str, int],
        transport: str,
        now: float,
    ) -> bool:
        """Retransmit ``data`` (just sent to ``dest`` over UDP) until its response comes.

        False when not tracked: an ACK, a copy already tracked, or the table full."""
        if method == b"ACK":
            return False
        entries = self.pending.get(branch)
        if entries is not None:
            for p in entries:
                if p.method == method:
                    return False  # the sender sent it again: the entry already runs
        if self._n >= self.cap:
            self.refused += 1
            return False
        if len(self._heap) > 8 * self.cap:
            self._compact()
        invite = method == b"INVITE"
        p = Pending(
            branch,
            method,
            data,
            dest,
            T1,
            now + T1,
            now + TIMER_B,
            req if invite else None,
            src,
            transport,
        )
        if entries is None:
            self.pending[branch] = [p]
        else:
            entries.append(p)
        self._n += 1
        self._push(p.next_at, p, _RETRANSMIT)
        self._push(p.expires_at, p, _EXPIRE)
        return True

    def _compact(self) -> None:
        """Drop the timers of entries gone (answered entries leave theirs behind
        for up to 64*T1): the heap stays within a multiple of ``cap``."""
        self._heap = [t for t in self._heap if t[2].live]
        heapq.heapify(self._heap)

    def response(self, branch: bytes, method: bytes, status: int, now: float) -> None:
        """A response of ours came back: stop or slow down the request it answers."""
        entries = self.pending.get(branch)
        if entries is None:
            return
        for p in entries:
            if p.method != method:
                continue
            if method != b"INVITE" and status < 200:
                # RFC 3261 §17.1.2.2: Proceeding, timer E from now on at T2
                p.proceeding = True
                p.interval = T2
            else:
                # INVITE: any response ends timer A (§17.1.1.2); non-INVITE: a final one
                self._remove(p)
                p.req = None
            return

    def _remove(self, p: Pending) -> None:
        p.live = False
        p.data = b""  # its stale timers may stay in the heap a while: free the bytes
        entries = self.pending.get(p.branch)
        if entries is None:
            return
        entries.remove(p)
        self._n -= 1
        if not entries:
            del self.pending[p.branch]
            if not self.pending:
                self._heap.clear()  # nothing live: every timer left is stale

    def _push(self, when: float, p: Pending, kind: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, p, kind))

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, p, kind = heap[0]
            if p.live and (kind == _EXPIRE or p.next_at == when):
                return when
            heapq.heappop(heap)
        return None

    def fire(self, now: float) -> tuple[list[Out], list[Pending]]:
        """Run the timers due at ``now``: the copies to send again, and the entries
        that expired (timer B/F) without a final response."""
        out: list[Out] = []
        expired: list[Pending] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, p, kind = heapq.heappop(heap)
            if not p.live:
                continue
            if kind == _EXPIRE:
                self._remove(p)
                expired.append(p)
                if p.method == b"INVITE":
                    self.timeouts_invite += 1
                else:
                    self.timeouts_non_invite += 1
                self.last_timeout = describe(p)
                continue
            if p.next_at != when:
                continue
            out.append((p.data, p.dest, "udp"))
            p.sent += 1
            self.retransmitted += 1
            # re-armed from the deadline, not from a late ``now``
            if p.method == b"INVITE":
                p.interval = 2 * p.interval  # timer A doubles (§17.1.1.2)
            elif not p.proceeding:
                p.interval = min(2 * p.interval, T2)  # timer E (§17.1.2.2)
            p.next_at = when + p.interval
            if p.next_at < p.expires_at:
                self._push(p.next_at, p, _RETRANSMIT)
        return out, expired


def describe(p: Pending) -> str:
    """One expired entry in words (for the log)."""
    outcome = "answered 408" if p.method == b"INVITE" else "no 408 (RFC 4320 §4.1)"
    return (
        f"{p.method.decode('latin-1')} from {p.transport} {p.src[0]}:{p.src[1]} "
        f"to {p.dest[0]}:{p.dest[1]}, {p.sent} copies over UDP, {outcome}"
    )
