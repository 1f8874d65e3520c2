"""Redirect (query) mode: the SBC asks, sipscreen answers, nothing is forwarded (sans-I/O).

How this works:

- ``RedirectCore`` is a ``ProxyCore`` (same adapter API, same parser, same
  per-source limits, load shedding, worker handoff and INVITE server
  transactions) whose requests are never forwarded: it acts as a redirect
  server (RFC 3261 §8.3), a UAS that answers every request itself.
- An initial INVITE is screened by the same ``screen`` callable as in inline
  mode. A block (``Answer``) is answered exactly as inline mode answers it
  (status, reason phrase, the answer class's headers such as the
  ATIS-1000099 Reason), plus the verdict headers. An allowed call (``Forward``
  or None; a screening fault fails open here too) is answered
  ``RedirectConfig.allow_status``, by default ``302 Moved Temporarily`` whose
  Contact is the Request-URI unchanged, or that URI with its host part
  replaced by ``RedirectConfig.target``, so the SBC sends the call on to the
  route it asked for. ``RedirectConfig.verdict_headers(screen)`` gives the
  header lines the SBC can route on (proxy/redirect.py: X-Sipscreen-*).
- Either answer starts an INVITE server transaction (transaction.py): a
  retransmitted INVITE is answered again from it, timer G retransmits the
  final response over UDP until the ACK, and the ACK (hop-by-hop for a
  non-2xx final response, RFC 3261 §17.2.1) is absorbed. No dialog state.
- CANCEL: 200 when its INVITE has a transaction here (the INVITE is already
  answered, so the CANCEL has no effect, RFC 3261 §9.2), else 481.
- Other requests: OPTIONS 200 (with Allow), any request with a To tag 481
  (we hold no dialog, RFC 3261 §12.2.2), any other 405 with Allow
  (RFC 3261 §21.4.6). ACKs are never answered or forwarded. Responses (we
  send no request, so none is ours) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .core import (
    _METHOD_LABELS,
    Answer,
    CoreConfig,
    ProxyCore,
    Screen,
    routable_scheme,
)
from .message import Request, Via, build_response, reason_phrase
from .transaction import TxEvent, transaction_key

__all__ = ["RedirectConfig", "RedirectCore", "ALLOW", "contact_uri"]

# What a redirect server accepts (RFC 3261 §20.5)
ALLOW = b"Allow: INVITE, ACK, CANCEL, OPTIONS\r\n"
_OPTIONS_HEADERS = ALLOW + b"Accept: application/sdp\r\n"
# RFC 3261 §21.3 (message.reason_phrase knows the statuses the proxy sends)
_PHRASES_3XX = {
    300: b"Multiple Choices",
    301: b"Moved Permanently",
    302: b"Moved Temporarily",
    305: b"Use Proxy",
    380: b"Alternative Service",
}


def _no_headers(screen: object) -> bytes:
    return b""


@dataclass(frozen=True)
class RedirectConfig:
    # host[:port] that replaces the host part of the Request-URI in the
    # Contact of an allow answer; None = the Request-URI unchanged
    target: bytes | None = None
    # the answer to an allowed call: 302 by default; 300-399 carry the
    # Contact, other statuses (a 404/503 "continue" convention) do not
    allow_status: int = 302
    allow_reason: bytes = b""  # empty: the standard phrase
    # header lines (each ending in CRLF) describing the screen's last
    # decision; added to both the allow and the block answers
    verdict_headers: Callable[[object], bytes] = _no_headers


def contact_uri(ruri: bytes, target: bytes | None) -> bytes:
    """The Contact URI of an allow answer: ``ruri``, or ``ruri`` with its host
    part replaced by ``target`` (a tel: URI becomes ``sip:<number>@target;user=phone``;
    a ``maddr`` parameter, which would override ``target``, is dropped).

    A ``?`` in a sip:/sips: user part (legal there, RFC 3261 §25.1
    user-unreserved) is written ``%3F``: an SBC that follows the 302 with a
    lax reader would otherwise split the URI there and copy what follows into
    its new INVITE as headers (RFC 3261 §19.1.5), a ``P-Asserted-Identity``
    the caller chose, past the screen."""
    if b"?" in ruri:
        colon = ruri.find(b":")
        at = ruri.rfind(b"@")
        if at > colon and ruri[:colon].lower() in (b"sip", b"sips"):
            ruri = ruri[: colon + 1] + ruri[colon + 1 : at].replace(b"?", b"%3F") + ruri[at:]
    if target is None:
        return ruri
    colon = ruri.find(b":")
    scheme = ruri[:colon].lower()
    rest = ruri[colon + 1 :]
    if scheme == b"tel":
        semi = rest.find(b";")
        number = rest if semi < 0 else rest[:semi]
        return b"sip:%s@%s;user=phone" % (number, target)
    if scheme not in (b"sip", b"sips"):
        return ruri  # urn:service:sos and the like: the SBC routes them itself
    at = rest.rfind(b"@")
    user = rest[: at + 1] if at >= 0 else b""
    hostpart = rest[at + 1 :]
    # the end of host[:port]: the first ; or ? after it (an IPv6 literal's ] first)
    start = hostpart.find(b"]") + 1 if hostpart[:1] == b"[" else 0
    ends = [i for i in (hostpart.find(b";", start), hostpart.find(b"?", start)) if i >= 0]
    tail = hostpart[min(ends) :] if ends else b""
    if b"maddr" in tail.lower():
        tail = _without_maddr(tail)
    return ruri[: colon + 1] + user + target + tail


def _without_maddr(tail: bytes) -> bytes:
    """``tail`` (a URI's ``;params?headers`` after its host) without its ``maddr``
    parameters: ``maddr`` overrides the host as the address a request is sent
    to (RFC 3261 §19.1.1), so a caller's ``;maddr=`` in the Request-URI would
    send the SBC that follows the 302 somewhere other than ``target``."""
    q = tail.find(b"?")
    params, headers = (tail, b"") if q < 0 else (tail[:q], tail[q:])
    kept = [p for p in params.split(b";")[1:] if p.split(b"=", 1)[0].strip().lower() != b"maddr"]
    return b"".join(b";" + p for p in kept) + headers


class RedirectCore(ProxyCore):
    """Answers every request itself (module docstring); never forwards."""

    def __init__(
        self, config: CoreConfig, screen: Screen, redirect: RedirectConfig | None = None
    ) -> None:
        super().__init__(config, screen)
        self.redirect = redirect or RedirectConfig()
        rd = self.redirect
        self._allow_status = rd.allow_status
        self._allow_reason = (
            rd.allow_reason or _PHRASES_3XX.get(rd.allow_status) or reason_phrase(rd.allow_status)
        )
        self._allow_contact = 300 <= rd.allow_status < 400
        self._target = rd.target
        self._verdict = rd.verdict_headers
        # no lean forward of in-dialog ACK/BYE to the softswitch (core._receive)
        self._lean_route = None
        self.redirected = 0  # allow answers sent (first transmissions)

    def _relay_response(self, raw: bytes, nxt: Via, cut: tuple[int, int]) -> None:
        self._drop("redirect_response")  # we send no request: no response is ours

    def _request(
        self, req: Request, src: tuple[str, int], transport: str, now: float, owned: bool
    ) -> None:
        method = req.method
        self.stats.requests_in[_METHOD_LABELS.get(method, "other")] += 1
        initial = req.to.tag is None
        key: bytes | None = None
        owner: int | None = None
        if method == b"ACK":
            # RFC 3261 §17.2.1: the ACK of a 3xx-6xx is hop-by-hop: absorbed here
            # or by the worker that holds its transaction; never forwarded
            if not self._take_ack(req, src, transport, now, owned):
                self._drop("ack_absorbed")
            return
        if self._workers > 1 and initial and (method == b"INVITE" or method == b"CANCEL"):
            key = transaction_key(req)
            if not owned and self._hand_if_not_ours(req, key, src, transport):
                return
            owner = self._index  # checked here, or before the parse / by the handing worker
        if method == b"CANCEL" and initial:
            # RFC 3261 §9.2: the INVITE is already answered (200), or unknown (481)
            tx = self._tx.get(key or transaction_key(req))
            if tx is None:
                self._reply(req, 481, reason_phrase(481), src, transport)
            else:
                self._reply(req, 200, b"OK", src, transport)
            return
        if method == b"INVITE" and initial:
            self._invite(req, src, transport, now, key, owner)
        elif method == b"OPTIONS":
            self._reply(req, 200, b"OK", src, transport, _OPTIONS_HEADERS)
        elif not initial:
            self._reply(req, 481, reason_phrase(481), src, transport)  # no dialog here
        else:
            self._reply(req, 405, reason_phrase(405), src, transport, ALLOW)

    def _invite(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        now: float,
        key: bytes | None,
        owner: int | None = None,
    ) -> None:
        st = self.stats
        if key is None:
            key = transaction_key(req)
        tx = self._tx.get(key)
        if tx is not None:
            # a retransmission: the final response again, from the transaction
            self._out.extend(self._tx.dispatch(tx, TxEvent.INVITE_RETRANSMISSION, now))
            return
        ruri = req.ruri
        if not routable_scheme(ruri):
            self._reply(req, 416, reason_phrase(416), src, transport)
            return
        answer = self._screen_invite(req, src, transport)
        try:
            verdict = self._verdict(self.screen)
        except Exception:
            verdict = b""
        tag = self._to_tag(req, key, owner)
        if type(answer) is Answer:
            st.rejected += 1
            status = answer.status
            final = build_response(req, status, answer.reason, tag, answer.extra_headers + verdict)
        else:
            status = self._allow_status
            extra = verdict
            if self._allow_contact:
                extra = b"Contact: <" + contact_uri(ruri, self._target) + b">\r\n" + extra
            final = build_response(req, status, self._allow_reason, tag, extra)
            self.redirected += 1
        self._send_final(req, key, tag, final, status, src, transport, now)
