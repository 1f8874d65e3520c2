"""The sans-I/O SIP proxy core: one softswitch behind, the world in front.

How this works (aioquic style, no I/O, no clock):

- The adapter calls ``datagram_received(data, src, transport, now)`` for every
  UDP datagram or framed TCP message, then drains ``datagrams_to_send()``
  (``(data, dest, transport)`` tuples) and re-arms its one timer from
  ``get_timer()``; when that fires it calls ``handle_timer(now)``.
- Mostly stateless proxy (RFC 3261 §16.11). Requests from anyone but the
  softswitch go to the softswitch; requests from the softswitch are routed by
  their next Route, else their Request-URI (loose routing, §16.4, §16.12),
  after our own Route entry is removed. We add our Via on top with a
  deterministic branch (``z9hG4bKsc`` + keyed BLAKE2s of the incoming top Via
  branch, sent-by, Call-ID and CSeq number, so the CANCEL and non-2xx ACK of an
  INVITE get the INVITE's branch), ``received``/``rport`` on the incoming top
  Via (§18.2.1, RFC 3581), decrement Max-Forwards (§16.6 step 3) and
  Record-Route dialog-creating requests (§16.6 step 4): once, or twice when
  the request arrived over one transport and leaves over another (RFC 5658
  §3.2 double Record-Route: the top entry names the outgoing transport, the
  second the incoming one, e.g. ``;transport=tcp`` towards a TCP caller); a
  Route entry is ours by host and port (any transport), so both are removed
  from the dialog's requests. Forwarding splices
  the raw bytes at the offsets the parser recorded; nothing is re-serialised.
- Responses (§16.7): the top Via must be ours, we pop it and send to the next
  Via's ``received``/``rport``/sent-by (RFC 3581 §4, §18.2.2). No DNS: a
  hostname without ``received`` is dropped as "unroutable"; broadcast,
  multicast and unspecified addresses are never sent to.
- Locally answered: parse errors (400/505 ...), 416 unsupported URI scheme
  (sip:, sips:, tel: and the RFC 5031 ``urn:service:...`` URNs of emergency
  calls, RFC 6881 §6.2.1, are relayed),
  483 Max-Forwards exhausted, 420 with ``Unsupported`` for any Proxy-Require,
  ``200 OK`` to OPTIONS addressed to the proxy. Initial INVITEs go to
  ``screen(req, src, transport)``; an ``Answer`` starts an INVITE server
  transaction (transaction.py) that retransmits the final response on timer
  G, absorbs the ACK and answers a CANCEL with 200; a ``Forward`` forwards it
  with the screen's byte edits applied along with the core's own (``[shaken]``
  verstat); None forwards it as it is.
- Per-source limits (issue 10.8, off unless configured): an ``INVITE``
  datagram from the network is counted per source IP in fixed windows before
  any parsing (``_over_limit``, one dict update); over the limit it is dropped
  or answered 503 + Retry-After, counted in ``stats.rate_limited``. Rejections
  whose destination never ACKs lose their timer G retransmissions
  (transaction.py, ``stats.retransmit_suppressed``).
- A request received over TCP/TLS and forwarded over UDP is retransmitted
  by the proxy on RFC 3261 timer A/E, its sender running none (§17.1.1.2,
  §17.1.2.2); an INVITE without any response by timer B is answered 408
  (proxy/sip/retransmit.py). Nothing changes for requests received over UDP.
- ``screen`` is the core's ``Screen`` (a typed Protocol, its contract):
  ``ScreenError`` is the failure it may raise, answered with the error's
  ``answer`` or, when None, forwarded (fail open: a screening fault must not
  drop lawful traffic), counted in ``stats.screen_errors``; any other
  exception is a bug: also counted in ``stats.screen_bugs`` and handed to
  ``CoreConfig.on_screen_bug`` for the adapter to log, and the call fails open.
- The trusted provider header (``CoreConfig.trusted_header``) is indexed in
  the parser's one pass (``message.index_header``) and its lines are cut from
  any request a caller that is not ``is_trusted_source`` sends to the
  softswitch (the lean ACK/BYE forward declines such a request to this path).
- Multi-worker handoff (``workers > 1``): any worker may receive any
  datagram, so the requests that touch transaction state go to the *owner*
  worker, ``crc32(transaction key) % workers``: initial INVITEs (before
  screening, so a call is screened exactly once), CANCELs without a To tag,
  and ACKs whose To tag is ours (the tag carries the owner index). A
  non-owner emits ``(wrap_handoff(raw, src, transport), ("worker", owner),
  "handoff")``; the adapter delivers those bytes to worker ``owner``, which
  calls ``datagram_received_handoff(data, now)``. Framing, one ASCII line:
  ``SIPSCREEN-HANDOFF <transport> <ip> <port>\\n`` then the original message.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from operator import itemgetter
from typing import Protocol

from .message import (
    METHODS,
    PARSER,
    Parser,
    Request,
    Response,
    SIPError,
    Via,
    build_error_response,
    build_response,
    index_header,
    is_service_urn,
    reason_phrase,
    split_commas,
)
from .relay import initial_key, initial_via, scan_request, scan_response, top_key
from .retransmit import RetransmitTable
from .steer import key_owner
from .transaction import (
    MAGIC_COOKIE,
    Out,
    TransactionTable,
    TxEvent,
    transaction_key,
)

__all__ = [
    "Answer",
    "Forward",
    "CoreConfig",
    "CoreStats",
    "ProxyCore",
    "Screen",
    "Out",
    "BRANCH_PREFIX",
    "HANDOFF_MAGIC",
    "RETRY_AFTER",
    "wrap_handoff",
    "unwrap_handoff",
]

BRANCH_PREFIX = MAGIC_COOKIE + b"sc"  # RFC 3261 §8.1.1.7 magic cookie + our mark
HANDOFF_MAGIC = b"SIPSCREEN-HANDOFF "
ERROR_TO_TAG = b"sc-err"  # To tag of answers to unparseable requests
RETRY_AFTER = b"Retry-After: 5\r\n"  # on every 503 we send (RFC 3261 §21.5.4, §20.33)
_CLASS_LABELS = ("", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx")
_SCHEMES = frozenset((b"sip", b"sips", b"tel"))
_DIALOG_CREATING = frozenset((b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY"))
_METHOD_LABELS = {m: m.decode() for m in sorted(METHODS)}
_ALLOW = b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, PRACK, UPDATE, INFO, REFER, NOTIFY\r\n"
_OPTIONS_HEADERS = _ALLOW + b"Accept: application/sdp\r\nSupported: \r\n"
_DEFAULT_SECRET = b"sipscreen-default-secret-change-me"
# The URI parameter of our Record-Route entries that names the dialog: a request
# inside a dialog we admitted carries it back in its Route (ProxyCore._stamped).
# _scan.c scan_request skips it (and its 16 hex digits) before an entry's ">".
STAMP_PARAM = b";sdt="
_span = itemgetter(0, 1)  # edits in order; an insertion before a cut at the same offset


def _splice(raw: bytes, edits: list[tuple[int, int, bytes]], parts: list[bytes], pos: int) -> bytes:
    """``raw`` from ``pos`` with each edit ``(start, end, replacement)`` applied
    (none overlapping another), after ``parts``."""
    if len(edits) > 1:
        edits.sort(key=_span)
    for s, e, rep in edits:
        parts.append(raw[pos:s])
        parts.append(rep)
        pos = e
    parts.append(raw[pos:])
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Answer:
    """How the screen wants an INVITE answered (e.g. 603 Decline + Reason)."""

    status: int
    reason: bytes
    extra_headers: bytes = b""  # complete header lines, each ending in CRLF


@dataclass(frozen=True, slots=True)
class Forward:
    """The screen passes the INVITE with edits of its raw bytes: ``(start, end,
    replacement)`` spans of ``req.raw``, disjoint from the core's own (Via,
    Max-Forwards, Route, the trusted header); e.g. ATIS-1000074 ``verstat``."""

    edits: tuple[tuple[int, int, bytes], ...]


class ScreenError(Exception):
    """The screen could not decide: the failure its contract allows (``Screen``).

    ``answer`` None fails open (the INVITE goes on as it is: a screening fault
    must not drop lawful traffic), an ``Answer`` fails closed (e.g. 503 +
    Retry-After). Counted in ``CoreStats.screen_errors``. Any other exception
    out of a screen is a bug: counted in ``screen_errors`` and ``screen_bugs``,
    handed to ``CoreConfig.on_screen_bug`` (the adapter logs it with its
    traceback), and the call fails open.
    """

    def __init__(self, detail: str, answer: Answer | None = None) -> None:
        super().__init__(detail)
        self.answer = answer


class Screen(Protocol):
    """The screening step of the core's contract (docs/DESIGN.md "The core's contract").

    Called once per initial INVITE (never for in-dialog requests), after the
    core's own checks (RFC 3261 §16.3) and routing (§16.4, §16.5), in the same
    synchronous call as ``datagram_received`` (the decision is in memory).
    Returns an ``Answer`` (the INVITE is answered with it from an INVITE server
    transaction), a ``Forward`` (forwarded with its byte edits), or None
    (forwarded as it is); raises ``ScreenError`` when it cannot decide.
    ``proxy/screen.py``'s ``Screener`` is the production one.

    Optionally, ``update(req, src, transport) -> Answer | None``: called for an
    in-dialog UPDATE from a caller (not the softswitch) whose Route does not
    prove, by our dialog stamp, that the call was admitted with its identities
    and upstream (``ProxyCore._stamped``); an ``Answer`` refuses the UPDATE
    (answered, not forwarded), None forwards it. A screen without it leaves
    UPDATEs unscreened.
    """

    def __call__(
        self, req: Request, src: tuple[str, int], transport: str, /
    ) -> Answer | Forward | None: ...


@dataclass
class CoreConfig:
    listen_host: str
    listen_port: int
    softswitch: tuple[str, int]
    record_route: bool = True
    advertised_host: str | None = None
    worker_index: int = 0
    workers: int = 1
    secret: bytes = _DEFAULT_SECRET
    proxy_aliases: frozenset[str] = field(default_factory=frozenset)
    # UDP port this worker puts in the Via of what it relays (RFC 3261
    # §18.2.1 sent-by), so the responses of a transaction come back to the
    # worker that forwarded it, in order; None = listen_port (one worker).
    relay_port: int | None = None
    # TCP listen port, when it differs from listen_port: named in the
    # Record-Route entry facing a TCP peer (None = listen_port)
    tcp_port: int | None = None
    # TLS listen port (None: no TLS): named in the entry facing a TLS peer
    tls_port: int | None = None
    # How the softswitch is reached: "udp", or "tls" (on a connection the
    # adapter opens, RFC 3261 §18.1.1; its requests come back on it)
    softswitch_transport: str = "udp"
    # Relay responses in their common shape, and hand initial INVITEs/CANCELs
    # to their owner worker, without the full parse (proxy/sip/relay.py);
    # False = full parse of every message.
    lean_relay: bool = True
    # Per-source INVITE limit (pike style, issue 10.8): at most invite_limit
    # INVITEs per source IP per invite_window seconds (0 = no limit); sources
    # for which trunk_of(ip) is not None get trunk_invite_limit (0 = exempt).
    # Over the limit: dropped, or answered 503 + Retry-After (over_limit_503).
    invite_limit: int = 0
    invite_window: float = 1.0
    trunk_invite_limit: int = 0
    trunk_of: Callable[[str], object] | None = None
    over_limit_503: bool = False
    # Final-response retransmission budget per destination IP (transaction.py)
    unacked_per_source: int = 0
    no_ack_hold: float = 300.0
    # The trusted provider header (config [trusted_header] name): honoured by
    # the screen only from `is_trusted_source`, and removed from any request a
    # caller that is not trusted sends towards the softswitch, so that no
    # caller can stamp it for the softswitch; None = nothing to remove.
    trusted_header: str | None = None
    # A header no source may send towards the softswitch because the proxy
    # alone sets it (the STIR/SHAKEN mark, [shaken] mark_header): cut from every
    # request forwarded there, in-dialog ones included (the screen cuts it from
    # initial INVITEs with its own edits; the same line is cut once). None = none.
    strip_header: str | None = None
    # Caller identity headers the screen does not read (config [proxy]
    # strip_identity_headers: Remote-Party-ID, P-Preferred-Identity): cut from
    # every request forwarded to the softswitch, from every source, so that the
    # softswitch cannot show a caller ID the screen did not decide on.
    strip_identity: tuple[str, ...] = ()
    is_trusted_source: Callable[[str], bool] = field(default=lambda ip: False)
    # At most this many requests retransmitted at once for reliable senders whose
    # request leaves over UDP (proxy/sip/retransmit.py); more go out untracked
    relay_retransmit_cap: int = 4096
    # Told each exception out of the screen other than ScreenError (a bug: the
    # call fails open, stats.screen_bugs counts it); the adapter logs it with
    # its traceback (the core does no logging). None = counted only.
    on_screen_bug: Callable[[Exception], None] | None = None


class CoreStats:
    """Plain counters the adapter exports as metrics (fixed label sets)."""

    __slots__ = (
        "received",
        "sent",
        "requests_in",
        "responses_in",
        "forwarded_requests",
        "forwarded_responses",
        "local_responses",
        "parse_errors",
        "dropped",
        "screened",
        "rejected",
        "screen_errors",
        "screen_bugs",
        "handoffs_out",
        "handoffs_in",
        "shed",
        "rate_limited",
        "retransmit_suppressed",
        "ack_timeouts",
        "in_dialog_screened",
        "updates_screened",
        "updates_refused",
        "relay_retransmit",
        "relay_retransmit_last",
    )

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0
        self.requests_in: dict[str, int] = dict.fromkeys([*_METHOD_LABELS.values(), "other"], 0)
        self.responses_in: dict[str, int] = dict.fromkeys(
            ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx"), 0
        )
        self.forwarded_requests = 0
        self.forwarded_responses = 0
        self.local_responses: dict[int, int] = {}
        self.parse_errors: dict[str, int] = {}
        self.dropped: dict[str, int] = dict.fromkeys(
            (
                "keepalive",
                "bad_response",
                "bad_ack",
                "foreign_via",
                "no_next_via",
                "unroutable",
                "broadcast",
                "loop",
                "no_via",
                "ack_absorbed",
                "unsupported_transport",
                "bad_handoff",
            ),
            0,
        )
        self.screened = 0
        self.rejected = 0
        self.screen_errors = 0  # ScreenError and bugs: the call failed open (or closed)
        self.screen_bugs = 0  # any other exception out of the screen (logged)
        self.handoffs_out = 0
        self.handoffs_in = 0
        self.shed = 0  # initial INVITEs answered 503 while overloaded
        self.rate_limited = 0  # INVITEs over their source's limit (dropped or 503)
        # copies of TransactionTable.suppressed / .ack_timeouts (for the metrics)
        self.retransmit_suppressed = 0
        self.ack_timeouts = 0
        # INVITEs with a To tag whose Route did not carry our stamp: screened
        self.in_dialog_screened = 0
        # in-dialog UPDATEs from a caller whose stamp did not prove their
        # identities: screened on them (Screen.update), and refused
        self.updates_screened = 0
        self.updates_refused = 0
        # requests retransmitted over UDP for a reliable sender (retransmit.py):
        # copies sent again, INVITEs answered 408 (timer B), non-INVITEs expired
        # (timer F), requests not tracked because the table was full
        self.relay_retransmit: dict[str, int] = dict.fromkeys(
            ("sent", "timeout_408", "timeout_non_invite", "refused"), 0
        )
        self.relay_retransmit_last = ""  # the last expiry in words (logged by the adapter)


def wrap_handoff(data: bytes, src: tuple[str, int], transport: str) -> bytes:
    """Frame ``data`` for another worker: one header line, then the message."""
    return b"%s%s %s %d\n%s" % (HANDOFF_MAGIC, transport.encode(), src[0].encode(), src[1], data)


def unwrap_handoff(data: bytes) -> tuple[bytes, tuple[str, int], str]:
    """Inverse of ``wrap_handoff``; raises ValueError on a bad frame."""
    if not data.startswith(HANDOFF_MAGIC):
        raise ValueError("not a handoff frame")
    nl = data.find(b"\n")
    if nl < 0:
        raise ValueError("no header line")
    parts = data[len(HANDOFF_MAGIC) : nl].split(b" ")
    if len(parts) != 3:
        raise ValueError("bad header line")
    return data[nl + 1 :], (parts[1].decode(), int(parts[2])), parts[0].decode()


# --- addresses --------------------------------------------------------------


def source_key(ip: str) -> str | bytes:
    """What the per-source limits count ``ip`` under: an IPv4 address as it is;
    an IPv6 address by its /64, the network one subscriber's host is given
    (RFC 7421). A host may send from any of its 2**64 addresses (RFC 4941
    temporary addresses; a flooder, one per INVITE): counted one by one, each
    would be under every limit. (The /64 as packed octets: any spelling of
    the address gives the same key.)"""
    if ":" not in ip:
        return ip
    return _prefix64(ip)


@lru_cache(maxsize=4096)
def _prefix64(ip: str) -> str | bytes:
    try:
        return ipaddress.IPv6Address(ip.partition("%")[0]).packed[:8]
    except ValueError:
        return ip


def _classify_host(host: bytes) -> tuple[str | None, bool]:
    """(normalised IP text or None for a hostname, forbidden destination?)."""
    try:
        ip = ipaddress.ip_address(host.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        res: tuple[str | None, bool] = (None, False)
    else:
        # never send to limited broadcast, multicast (224.0.0.0/4, ff00::/8) or unspecified
        bad = ip.is_multicast or ip.is_unspecified
        if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
            bad = True
        res = (str(ip), bad)
    return res


def _plain_length(data: bytes) -> bool:
    """``data`` (a whole message) carries its body's length in a header line spelt
    ``Content-Length: N``: what a stream needs (``ProxyCore._stream_length``);
    else the lean relay leaves a response bound for a stream to the full path."""
    end = data.find(b"\r\n\r\n")
    line = b"\r\nContent-Length: %d\r\n" % (len(data) - end - 4)
    return end >= 0 and data.find(line, 0, end + 2) >= 0


def _uri_hostport(uri: bytes) -> tuple[bytes, int | None, bytes | None]:
    """(lower-case host, port, transport param) of a sip:/sips: URI (RFC 3261 §19.1.1)."""
    colon = uri.find(b":")
    rest = uri[colon + 1 :]
    q = rest.find(b"?")
    if q >= 0:
        rest = rest[:q]
    at = rest.rfind(b"@")
    if at >= 0:
        rest = rest[at + 1 :]
    semi = rest.find(b";")
    hostport = rest if semi < 0 else rest[:semi]
    transport: bytes | None = None
    if semi >= 0:
        lp = rest[semi:].lower()
        t = lp.find(b";transport=")
        if t >= 0:
            tv = lp[t + 11 :]
            e = tv.find(b";")
            transport = tv if e < 0 else tv[:e]
    port: int | None = None
    if hostport[:1] == b"[":
        rb = hostport.find(b"]")
        host = hostport[1:rb] if rb > 0 else hostport
        ps = hostport[rb + 2 :] if rb > 0 and hostport[rb + 1 : rb + 2] == b":" else b""
    else:
        c = hostport.find(b":")
        host = hostport if c < 0 else hostport[:c]
        ps = b"" if c < 0 else hostport[c + 1 :]
    if ps.isdigit() and len(ps) <= 5:
        port = int(ps)
    if colon == 4 and uri[:4].lower() == b"sips":
        # RFC 3261 §19.1.2, §26.2.2, RFC 5630 §3.1.3: a sips: URI is reached over
        # TLS, port 5061, whatever transport parameter it carries
        transport = b"tls"
        if port is None:
            port = 5061
    return host.lower(), port, transport


def _route_uri(entry: bytes) -> bytes:
    lt = entry.find(b"<")
    if lt < 0:
        return entry
    gt = entry.find(b">", lt)
    return entry[lt + 1 : gt if gt > 0 else len(entry)]


def _route_target(entry: bytes) -> tuple[bytes, int | None, bytes | None]:
    """(host, port, transport) of one Route entry (RFC 3261 §20.34)."""
    return _uri_hostport(_route_uri(entry))


def routable_scheme(ruri: bytes) -> bool:
    """A Request-URI whose scheme the proxy routes (RFC 3261 §16.3 step 2: sip,
    sips, tel), or an RFC 5031 service URN (urn:service:sos, RFC 6881 §6.2.1);
    any other is answered 416."""
    return (
        ruri[:4] == b"sip:" or ruri[: ruri.find(b":")].lower() in _SCHEMES or is_service_urn(ruri)
    )


class Addresses:
    """What ``_classify_host`` and ``_route_target`` answered, remembered by the
    core that asks (each bounded: cleared past ``limit`` entries). The same few
    hosts and Route entries (our own Record-Route, the softswitch's) recur on
    every call."""

    __slots__ = ("hosts", "routes", "limit")

    def __init__(self, limit: int = 4096) -> None:
        self.hosts: dict[bytes, tuple[str | None, bool]] = {}
        self.routes: dict[bytes, tuple[bytes, int | None, bytes | None]] = {}
        self.limit = limit

    def classify_host(self, host: bytes) -> tuple[str | None, bool]:
        """(normalised IP text or None for a hostname, forbidden destination?)."""
        got = self.hosts.get(host)
        if got is None:
            got = _classify_host(host)
            if len(self.hosts) > self.limit:
                self.hosts.clear()
            self.hosts[host] = got
        return got

    def route_target(self, entry: bytes) -> tuple[bytes, int | None, bytes | None]:
        """(host, port, transport) of one Route entry (RFC 3261 §20.34)."""
        got = self.routes.get(entry)
        if got is None:
            got = _route_target(entry)
            if len(self.routes) > self.limit:
                self.routes.clear()
            self.routes[entry] = got
        return got


class ProxyCore:
    """RFC 3261 proxy core in front of one softswitch (see module docstring)."""

    # Slots: 30 attributes are past what CPython 3.11 keeps fast in an instance
    # dict (measured: some 1,800 instructions per forwarded INVITE).
    __slots__ = (
        "config",
        "screen",
        "parser",
        "_addr",
        "stats",
        "_out",
        "_tx",
        "_rate",
        "_rate_end",
        "_rate_window",
        "_rate_floor",
        "_secret",
        "_branch_mac",
        "_tag_mac",
        "_stamp_mac",
        "_record_route",
        "_index",
        "_workers",
        "_sent_by",
        "_via_host",
        "_via",
        "_rr",
        "_selves",
        "_ss",
        "_ss_t",
        "_lean",
        "overloaded",
        "_our_via",
        "_lean_route",
        "_rtx",
        "_rtx_pending",
        "_th",
        "_strip_more",
        "_cut_always",
        "_is_trusted",
        "_screen_update",
    )

    def __init__(self, config: CoreConfig, screen: Screen, parser: Parser | None = None) -> None:
        self.config = config
        self.screen = screen
        # the contract's optional second call: an in-dialog UPDATE's identities
        # (Screen; proxy/screen.py Screener.update); None: UPDATEs pass unscreened
        self._screen_update = getattr(screen, "update", None)
        # the parser (C or the Python reference, message.Parser) and the
        # decoded-address caches are this core's own state
        self.parser = PARSER if parser is None else parser
        self._addr = Addresses()
        self.stats = CoreStats()
        self._out: list[Out] = []
        self._tx = TransactionTable(config.unacked_per_source, config.no_ack_hold)
        # requests retransmitted for reliable senders; its dict is tested for
        # emptiness alone on the response path and in get_timer (retransmit.py)
        self._rtx = RetransmitTable(config.relay_retransmit_cap)
        self._rtx_pending = self._rtx.pending
        # Per-source INVITE counts of the current fixed window (cleared at its end,
        # so the dict holds one window's sources at most)
        self._rate: dict[str | bytes, int] = {}  # source_key -> INVITEs this window
        self._rate_end = 0.0
        self._rate_window = config.invite_window
        lim = [n for n in (config.invite_limit, config.trunk_invite_limit) if n > 0]
        # INVITEs up to this count per window pass without looking at the trunk map
        self._rate_floor = min(lim) if lim else 0
        secret = config.secret
        self._secret = secret if len(secret) <= 32 else hashlib.blake2s(secret).digest()
        # keyed BLAKE2s with the key block absorbed once; each branch copies it
        self._branch_mac = hashlib.blake2s(digest_size=8, key=self._secret)
        self._tag_mac = hashlib.blake2s(digest_size=5, key=self._secret)  # _to_tag's
        # the dialog stamp of our Record-Route entries (_stamp)
        self._stamp_mac = hashlib.blake2s(digest_size=8, key=self._secret, person=b"rrstamp")
        self._record_route = config.record_route
        self._index = config.worker_index
        self._workers = max(1, config.workers)
        adv = config.advertised_host or config.listen_host
        host_b = adv.encode()
        uri_host = b"[" + host_b + b"]" if b":" in host_b else host_b
        self._sent_by = b"%s:%d" % (uri_host, config.listen_port)
        # Our Via names this worker's relay port; a response is ours when its
        # top Via names our host (any of our ports) and carries our branch mark.
        self._via_host = uri_host.lower() + b":"
        via_sent_by = b"%s:%d" % (uri_host, config.relay_port or config.listen_port)
        self._via = {
            t: b"Via: SIP/2.0/%s %s;branch=%s" % (t.upper().encode(), via_sent_by, BRANCH_PREFIX)
            for t in ("udp", "tcp", "tls")
        }
        tcp_sent_by = b"%s:%d" % (uri_host, config.tcp_port or config.listen_port)
        tls_sent_by = b"%s:%d" % (uri_host, config.tls_port or config.listen_port)
        # Our Record-Route entry per transport, cut where the dialog stamp goes
        # (before the closing ">": _record_route_lines)
        self._rr = {
            "udp": (b"Record-Route: <sip:%s;lr" % self._sent_by, b">\r\n"),
            "tcp": (b"Record-Route: <sip:%s;transport=tcp;lr" % tcp_sent_by, b">\r\n"),
            # RFC 3261 §16.6 step 4, RFC 5630 §4.3: the entry facing a TLS peer is a
            # sips: URI (transport=tls is deprecated, RFC 3261 §26.2.2); entries of
            # dialogs set up before, <sip:...;transport=tls;lr>, stay ours (_is_self
            # compares host and port only)
            "tls": (b"Record-Route: <sips:%s;lr" % tls_sent_by, b">\r\n"),
        }
        selves: set[tuple[bytes, int]] = set()
        ports = {config.listen_port, config.tcp_port or config.listen_port}
        if config.tls_port:
            ports.add(config.tls_port)
        for name in (config.listen_host, adv, *config.proxy_aliases):
            h, _, p = name.rpartition(":") if name.count(":") == 1 else ("", "", "")
            if h and p.isdigit():
                selves.add((h.lower().encode(), int(p)))
            else:
                for port in ports:
                    selves.add((name.strip("[]").lower().encode(), port))
        self._selves = frozenset(selves)
        self._ss = (config.softswitch[0], int(config.softswitch[1]))
        self._ss_t = config.softswitch_transport
        self._lean = config.lean_relay
        # Set by the adapter while its receive queue is backed up (load
        # shedding): new INVITEs are then answered 503 before any parsing.
        self.overloaded = False
        self._our_via = self._via[self._ss_t]
        # the Route entries UDP callers echo from our Record-Route: the lean forward
        # of their in-dialog ACK/BYE (relay.scan_request) removes exactly this Route
        # line: our UDP entry, then (RFC 5658 double Record-Route towards a TLS
        # softswitch) our sips: entry, both ours (_is_self)
        # (without their dialog stamps, which scan_request skips before each ">")
        rr = self._rr["udp"][0][14:] + b">"
        if self._ss_t != "udp":
            rr += b", " + self._rr[self._ss_t][0][14:] + b">"
        ours = all(self._is_self(*_route_target(e)[:2]) for e in split_commas(rr))
        self._lean_route = rr if self._lean and ours else None
        # indexed in the parser's one pass: its presence costs a dict lookup
        th = config.trusted_header
        self._th = index_header(th.encode("ascii")) if th else None
        self._is_trusted = config.is_trusted_source
        sh = config.strip_header
        self._strip_more = index_header(sh.encode("ascii")) if sh else None
        self._cut_always = self._always_cut(config)

    # --- adapter API -------------------------------------------------------

    def _always_cut(self, config: CoreConfig) -> tuple[bytes, ...]:
        """The canonical names of the headers cut from every request forwarded to
        the softswitch, from every source: the mark header, then the identity
        headers the screen does not read but the trusted provider header (cut
        from untrusted sources only); each once."""
        mark = self._strip_more
        ids = [index_header(h.encode("ascii")) for h in config.strip_identity]
        ids = [n for n in dict.fromkeys(ids) if n not in (self._th, mark)]
        return (mark, *ids) if mark is not None else tuple(ids)

    def set_limits(self, config: CoreConfig) -> None:
        """Take the per-source limits and the trusted provider header (name and
        trusted sources) of ``config`` (a configuration reload); transactions and
        counts in progress are kept."""
        self.config = replace(
            self.config,
            invite_limit=config.invite_limit,
            invite_window=config.invite_window,
            trunk_invite_limit=config.trunk_invite_limit,
            trunk_of=config.trunk_of,
            over_limit_503=config.over_limit_503,
            unacked_per_source=config.unacked_per_source,
            no_ack_hold=config.no_ack_hold,
            trusted_header=config.trusted_header,
            is_trusted_source=config.is_trusted_source,
            strip_header=config.strip_header,
            strip_identity=config.strip_identity,
        )
        # the header cut from untrusted sources follows the screen's (reloaded) one
        th = config.trusted_header
        self._th = index_header(th.encode("ascii")) if th else None
        sh = config.strip_header
        self._strip_more = index_header(sh.encode("ascii")) if sh else None
        self._cut_always = self._always_cut(config)
        self._is_trusted = config.is_trusted_source
        self._rate_window = config.invite_window
        lim = [n for n in (config.invite_limit, config.trunk_invite_limit) if n > 0]
        self._rate_floor = min(lim) if lim else 0
        self._tx.unacked_limit = config.unacked_per_source
        self._tx.no_ack_hold = config.no_ack_hold

    def datagrams_to_send(self) -> list[Out]:
        out = self._out
        self._out = []
        self.stats.sent += len(out)
        return out

    def get_timer(self) -> float | None:
        at = self._tx.next_deadline()
        if self._rtx_pending:
            rt = self._rtx.next_deadline()
            if rt is not None and (at is None or rt < at):
                return rt
        return at

    def handle_timer(self, now: float) -> None:
        self._out.extend(self._tx.fire(now))
        self.stats.ack_timeouts = self._tx.ack_timeouts
        if self._rtx_pending:
            self._retransmit_timer(now)

    @property
    def transactions(self) -> TransactionTable:
        return self._tx

    @property
    def retransmissions(self) -> RetransmitTable:
        return self._rtx

    def datagram_received(
        self, data: bytes, src: tuple[str, int], transport: str, now: float
    ) -> None:
        self.stats.received += 1
        self._receive(data, src, transport, now, False)

    def datagram_received_handoff(self, data: bytes, now: float) -> None:
        """A message another worker handed to us (we are its owner)."""
        try:
            msg, src, transport = unwrap_handoff(data)
        except (ValueError, UnicodeDecodeError):
            self._drop("bad_handoff")
            return
        self.stats.handoffs_in += 1
        self._receive(msg, src, transport, now, True)

    # --- internals ---------------------------------------------------------

    def _drop(self, reason: str) -> None:
        d = self.stats.dropped
        d[reason] = d.get(reason, 0) + 1

    def _receive(
        self, data: bytes, src: tuple[str, int], transport: str, now: float, owned: bool
    ) -> None:
        """``owned``: this worker is known to own the message's transaction (it was
        handed here, or the check before the parse said so)."""
        if self._rate_floor and data[:7] == b"INVITE " and not owned:
            # counted by the worker that received it from the network, before the parse
            if self._over_limit(src[0], now):
                self._rate_limit(data, src, transport)
                return
        if (
            data[:4] == b"ACK "
            and self._tx.live
            # one of our To tags (not an end-to-end ACK of a 2xx), or any once an
            # INVITE with a tag of its own was answered here (_answer_invite)
            and (b"tag=sc" in data or self.stats.in_dialog_screened)
            and self._absorb_ack(data, now)
        ):
            return
        if data[:4] == b"SIP/":
            if self._lean:
                # proxy/sip/relay.py: a response in its common shape, relayed unparsed
                r = scan_response(data, self._our_via)
                if (
                    r is not None
                    and not (self._rtx_pending and self._rtx_branch(data))
                    and (r[1].transport == b"UDP" or _plain_length(data))
                ):
                    status, nxt, cut = r
                    self.stats.responses_in[_CLASS_LABELS[status // 100]] += 1
                    self._relay_response(data, nxt, cut)
                    return
        elif (
            not owned
            and (self.overloaded or self._lean and self._workers > 1)
            and (data[:7] == b"INVITE " or data[:7] == b"CANCEL ")
        ):
            # Before the parse, from the top Via line (proxy/sip/relay.py): shed a
            # new INVITE when overloaded; hand an initial INVITE/CANCEL to the
            # worker that owns its transaction, whose parse then settles it.
            if self.overloaded and data[:1] == b"I":
                top = initial_via(data)
                if top is not None:
                    self._shed(data, top, src, transport)
                    return
            elif self._lean and self._workers > 1:
                key = initial_key(data)  # in C, without a Via object (relay.py)
                if key is not None:
                    owner = self._owner(key)
                    if owner != self._index:
                        self.stats.requests_in[_METHOD_LABELS[data[:6]]] += 1
                        self._hand_over(data, owner, src, transport)
                        return
                    owned = True
        elif (
            (data[:4] == b"ACK " or data[:4] == b"BYE ")
            and self._lean_route is not None
            and transport == "udp"
            and (src[1] != self._ss[1] or src[0] != self._ss[0])
            # towards a stream only with a plain Content-Length line (_stream_length)
            and (self._ss_t == "udp" or _plain_length(data))
        ):
            # proxy/sip/relay.py: the caller's in-dialog ACK/BYE, forwarded to the
            # softswitch unparsed; the same bytes _request/_forward_bytes send
            fwd = scan_request(data, src[0], src[1], self._lean_route, self._th, self._strip_more)
            if fwd is not None:
                material, hstart, tail = fwd
                st = self.stats
                st.requests_in[_METHOD_LABELS[data[:3]]] += 1
                st.forwarded_requests += 1
                branch = self._branch_of(material)
                out = b"".join((data[:hstart], self._our_via, branch, b"\r\n", tail))
                self._out.append((out, self._ss, self._ss_t))
                return
        try:
            msg = self.parser.parse(data)
        except SIPError as exc:
            self._parse_error(data, exc, src, transport)
            return
        if isinstance(msg, Response):
            self._response(msg, now)
        else:
            self._request(msg, src, transport, now, owned)

    def _absorb_ack(self, data: bytes, now: float) -> bool:
        """Before the parse: the ACK of one of our 3xx-6xx answers held here,
        absorbed by its INVITE server transaction (RFC 3261 §17.2.1). It matches
        by the top Via's branch and sent-by (§17.2.3) and names the To tag of our
        answer (ours, ``sc...``, or the one the INVITE came with). False: not
        recognised here (the full path decides: another worker's, not ours, an
        end-to-end ACK of a 2xx, or not in the common shape)."""
        key = top_key(data)  # in C, without a Via object (relay.py)
        tx = self._tx.live.get(key) if key is not None else None
        if tx is None or not tx.to_tag or data.find(b"tag=" + tx.to_tag) < 0:
            return False
        self.stats.requests_in["ACK"] += 1
        self._tx.ack(tx, now)
        self._drop("ack_absorbed")
        return True

    def _shed(self, data: bytes, top: Via, src: tuple[str, int], transport: str) -> None:
        """Overload: answer a new INVITE 503 with Retry-After (RFC 3261 §21.5.4) from its
        raw lines, unparsed and unscreened, so the calls already set up go on."""
        resp = build_error_response(
            data,
            SIPError(503, "overload"),
            ERROR_TO_TAG,
            RETRY_AFTER,
        )
        if resp is None:
            self._drop("no_via")
            return
        self.stats.shed += 1
        self._emit_local(resp, self._local_dest(top, src, transport), transport, 503)

    def _over_limit(self, ip: str, now: float) -> bool:
        """Count one INVITE from ``ip``; True when that is over its limit (fixed
        windows of ``invite_window`` seconds, like Kamailio's pike module)."""
        if now >= self._rate_end:
            self._rate.clear()
            self._rate_end = now + self._rate_window
        rate = self._rate
        key = ip if ":" not in ip else source_key(ip)  # an IPv6 source: its /64
        n = rate.get(key, 0) + 1
        rate[key] = n
        if n <= self._rate_floor:
            return False
        cfg = self.config
        trunk_of = cfg.trunk_of
        limit = (
            cfg.trunk_invite_limit
            if trunk_of is not None and trunk_of(ip) is not None
            else cfg.invite_limit
        )
        return limit > 0 and n > limit

    def _rate_limit(self, data: bytes, src: tuple[str, int], transport: str) -> None:
        """An INVITE over its source's limit: dropped, or 503 + Retry-After (RFC 3261
        §21.5.4) built from its raw lines when configured so."""
        self.stats.rate_limited += 1
        if not self.config.over_limit_503:
            return
        top = initial_via(data)
        resp = build_error_response(data, SIPError(503, "rate limit"), ERROR_TO_TAG, RETRY_AFTER)
        if top is None or resp is None:
            self._drop("no_via")
            return
        self._emit_local(resp, self._local_dest(top, src, transport), transport, 503)

    def _parse_error(
        self, data: bytes, exc: SIPError, src: tuple[str, int], transport: str
    ) -> None:
        if exc.kind == "keepalive":
            self._drop("keepalive")
            return
        pe = self.stats.parse_errors
        pe[exc.kind] = pe.get(exc.kind, 0) + 1
        if exc.status == 0:
            self._drop("bad_response" if data.lstrip(b"\r\n")[:4] == b"SIP/" else "no_via")
            return
        if data.lstrip(b"\r\n")[:4] == b"ACK ":
            self._drop("bad_ack")  # RFC 3261 §17: an ACK is never answered
            return
        resp = build_error_response(data, exc, ERROR_TO_TAG)
        if resp is None:
            self._drop("no_via")
            return
        # No usable parsed Via: answer the source address (RFC 3581 §4 behaviour).
        self._emit_local(resp, src, transport, exc.status)

    def _emit_local(self, data: bytes, dest: tuple[str, int], transport: str, status: int) -> None:
        ip, bad = self._addr.classify_host(dest[0].encode())
        if bad:
            self._drop("broadcast")
            return
        lr = self.stats.local_responses
        lr[status] = lr.get(status, 0) + 1
        self._out.append((data, dest, transport))

    def _owner(self, key: bytes) -> int:
        # the hash the kernel's steering program computes (steer.py): no handoff
        return key_owner(key, self._workers)

    def _hand_over(self, data: bytes, owner: int, src: tuple[str, int], transport: str) -> None:
        """Hand a message to the worker ``owner`` that holds its transaction."""
        self.stats.handoffs_out += 1
        self._out.append((wrap_handoff(data, src, transport), ("worker", owner), "handoff"))

    def _hand_if_not_ours(
        self, req: Request, key: bytes, src: tuple[str, int], transport: str
    ) -> bool:
        """An initial INVITE/CANCEL received from the network: handed to the worker
        that owns transaction ``key`` when that is not this one (True)."""
        owner = self._owner(key)
        if owner == self._index:
            return False
        self._hand_over(req.raw, owner, src, transport)
        return True

    def _to_tag(self, req: Request, key: bytes, owner: int | None = None) -> bytes:
        """Deterministic To tag: owner index + short keyed hash (any worker agrees)."""
        if owner is None:
            owner = self._owner(key)
        mac = self._tag_mac.copy()  # the key block already absorbed
        mac.update(req.call_id + b"|" + key)
        return b"sc%d.%s" % (owner, mac.hexdigest().encode())

    def _stamp(self, material: bytes) -> bytes:
        """The dialog stamp our Record-Route entries carry (``;sdt=``): a keyed hash
        of ``material`` (``_stamp_material``), 16 hex digits."""
        mac = self._stamp_mac.copy()
        mac.update(material)
        return mac.hexdigest().encode()

    def _stamp_material(self, req: Request, src: tuple[str, int], from_ss: bool) -> bytes:
        """What a dialog's stamp binds, read from the request that set it up or
        from an INVITE inside it coming from the caller's side.

        A dialog a caller set up (``from_ss`` False): its Call-ID, the caller's
        From tag, From URI and display name and P-Asserted-Identity values (the
        identities the screen decided on), and the address it came from
        (stricter than its provider: the RMD gate and the orders judge
        providers), so that a stamp
        copied from an allowed call cannot carry another caller ID or another
        provider's traffic past the screen. A dialog the softswitch set up
        (``from_ss``): its Call-ID, the softswitch's From tag and the To URI (the
        far side), which the far side's requests carry as their To tag and From
        URI (RFC 3261 §12.1.1, §12.2.1.1; ``_softswitch_material``)."""
        if from_ss:
            return self._softswitch_material(req.call_id, req.from_.tag, req.to.uri)
        frm = req.from_
        return b"|".join(
            (
                b"up",
                req.call_id,
                frm.tag or b"",
                frm.uri,
                frm.display,  # a phone shows it (a number there is screened)
                b"\n".join(req.header(b"p-asserted-identity")),  # its lines, as sent
                src[0].encode(),
            )
        )

    @staticmethod
    def _softswitch_material(call_id: bytes, tag: bytes | None, far: bytes) -> bytes:
        return b"|".join((b"ss", call_id, tag or b"", far))

    def _from_softswitch(self, src: tuple[str, int], transport: str) -> bool:
        """The request came from the softswitch (reached over UDP or TLS,
        CoreConfig.softswitch): over its transport, from its very address and port
        (over TLS: on our connection to it). Decided once per request."""
        ss = self._ss
        return transport == self._ss_t and src[1] == ss[1] and src[0] == ss[0]

    def _record_route_lines(
        self,
        req: Request,
        src: tuple[str, int],
        out_transport: str,
        transport: str,
        from_ss: bool,
    ) -> bytes:
        """Our Record-Route line(s) for a dialog-creating request (RFC 3261 §16.6
        step 4), each entry stamped with the dialog (``_stamp``), so that a
        request inside the dialog proves, by its Route, that we admitted the
        dialog (``_stamped``). RFC 5658 §3.2: two entries when the two sides use
        different transports, the top one facing the next hop (the outgoing
        transport), the second the sender (the incoming one), so each side's
        route set starts with an entry it can reach."""
        stamp = STAMP_PARAM + self._stamp(self._stamp_material(req, src, from_ss))
        head, tail = self._rr[out_transport]
        lines = head + stamp + tail
        if transport != out_transport:
            head, tail = self._rr[transport]
            lines += head + stamp + tail
        return lines

    def _stamped(
        self, req: Request, src: tuple[str, int], routes: list[bytes], n_ours: int
    ) -> bool:
        """One of the Route entries that name us (the first ``n_ours``) carries the
        stamp of ``req``'s dialog (``_stamp_material``): one a caller set up, with
        the same identities and upstream; or one the softswitch set up, whose
        From tag ``req`` names in its To tag."""
        if not n_ours:
            return False
        wants = [STAMP_PARAM + self._stamp(self._stamp_material(req, src, False)) + b">"]
        tag = req.to.tag
        if tag is not None:
            ss = self._softswitch_material(req.call_id, tag, req.from_.uri)
            wants.append(STAMP_PARAM + self._stamp(ss) + b">")
        for entry in routes[:n_ours]:
            at = entry.rfind(STAMP_PARAM)
            if at < 0:
                continue
            got = entry[at:]
            for want in wants:
                if hmac.compare_digest(got[: len(want)], want):
                    return True
        return False

    def _our_tag_owner(self, req: Request) -> int | None:
        """Owner index if the To tag is one we minted for this transaction."""
        tag = req.to.tag
        if tag is None:
            return None
        if tag == ERROR_TO_TAG:
            return self._index
        if not tag.startswith(b"sc"):
            return None
        key = transaction_key(req)
        owner = self._owner(key)
        if tag != self._to_tag(req, key, owner):
            return None
        return owner

    def _take_ack(
        self, req: Request, src: tuple[str, int], transport: str, now: float, owned: bool
    ) -> bool:
        """An ACK whose To tag may be one we minted (``sc...``): the ACK of our own
        3xx-6xx answer is hop-by-hop (RFC 3261 §17.2.1): absorbed by the INVITE
        server transaction, or handed to the worker that holds it. False: not ours.
        The transaction here, naming its To tag, answers it without the keyed hash."""
        key = transaction_key(req)
        tx = self._tx.get(key)
        if tx is not None and tx.to_tag == req.to.tag:
            self._tx.ack(tx, now)
            self._drop("ack_absorbed")
            return True
        owner = self._our_tag_owner(req)
        if owner is None:
            return False
        if owner != self._index and self._workers > 1 and not owned:
            self._hand_over(req.raw, owner, src, transport)
            return True
        if tx is not None:  # ours, with another tag (ERROR_TO_TAG): the same transaction
            self._tx.ack(tx, now)
        self._drop("ack_absorbed")
        return True

    def _local_dest(self, via: Via, src: tuple[str, int], transport: str) -> tuple[str, int]:
        """Where a locally generated response goes (RFC 3261 §18.2.2, RFC 3581 §4)."""
        if transport != "udp" or via.rport is not None:
            return src  # the connection, or the rport'ed source
        return (src[0], via.port or 5060)

    def _reply(
        self,
        req: Request,
        status: int,
        reason: bytes,
        src: tuple[str, int],
        transport: str,
        extra: bytes = b"",
    ) -> None:
        if req.method == b"ACK":
            self._drop("ack_absorbed")  # never answer an ACK
            return
        key = transaction_key(req)
        data = build_response(req, status, reason, self._to_tag(req, key), extra)
        self._emit_local(data, self._local_dest(req.vias[0], src, transport), transport, status)

    def _is_self(self, host: bytes, port: int | None) -> bool:
        return (host, port or 5060) in self._selves

    def _request(
        self, req: Request, src: tuple[str, int], transport: str, now: float, owned: bool
    ) -> None:
        method = req.method
        st = self.stats
        label = _METHOD_LABELS.get(method, "other")
        st.requests_in[label] += 1
        to_tag = req.to.tag
        initial = to_tag is None

        # The transaction key of an initial INVITE/CANCEL, computed once
        key: bytes | None = None

        # Multi-worker: stateful requests are handled by their owner worker.
        if self._workers > 1 and not owned and initial:
            if method == b"INVITE" or method == b"CANCEL":
                key = transaction_key(req)
                if self._hand_if_not_ours(req, key, src, transport):
                    return

        if (
            method == b"ACK"
            and to_tag is not None
            and (to_tag[:2] == b"sc" or self._tx.live)  # our tag, or an INVITE's own
        ):
            # RFC 3261 §17.2.1: the ACK to our final response is absorbed, never forwarded
            if self._take_ack(req, src, transport, now, owned):
                return

        if self._tx.live and (method == b"INVITE" or (initial and method == b"CANCEL")):
            if key is None:
                key = transaction_key(req)
            tx = self._tx.get(key)
            if tx is not None:
                if method == b"INVITE":
                    self._out.extend(self._tx.dispatch(tx, TxEvent.INVITE_RETRANSMISSION, now))
                else:
                    # RFC 3261 §9.2: 200 to the CANCEL; the INVITE is already answered
                    self._reply(req, 200, b"OK", src, transport)
                return

        # RFC 3261 §16.4 first: §16.3 step 3 answers an OPTIONS for us, which the
        # Route entries say; it has no side effect, so the order of answers holds
        routes: list[bytes]
        if b"route" in req.indexed:
            routes, n_ours = self._preprocess_route(req)
        else:  # no Route (an initial INVITE): nothing to preprocess, no call
            routes, n_ours = [], 0
        if not self._validate(req, src, transport, routes, n_ours):  # §16.3
            return
        from_ss = self._from_softswitch(src, transport)
        target = self._determine_target(req, src, transport, from_ss, routes, n_ours)  # §16.5
        if target is None:
            return
        dest, out_transport, strip = target

        # Screening: initial INVITEs, and an INVITE with a To tag that does not prove
        # it belongs to a dialog we admitted (RFC 3261 §12.2.2 lets a UAS take a
        # request whose To tag matches no dialog as a new one): from anyone but the
        # softswitch, whose Route lacks our stamp for its Call-ID and From tag.
        # Other in-dialog requests are never screened.
        fwd: Forward | None = None
        if method == b"INVITE" and (
            initial or self._unproven_in_dialog(req, src, from_ss, routes, n_ours)
        ):
            answer = self._screen_invite(req, src, transport)
            if type(answer) is Forward:
                fwd, answer = answer, None
            if answer is not None:
                assert type(answer) is Answer
                self._answer_invite(req, answer, src, transport, now, key)
                return
        elif (
            method == b"UPDATE"
            and not initial
            and not from_ss
            and self._screen_update is not None
            and not self._stamped(req, src, routes, n_ours)
        ):
            # An UPDATE can change the caller ID the callee's phone shows (RFC
            # 4916 §4; P-Asserted-Identity): one whose identities or upstream
            # differ from those its dialog was admitted with (no stamp proves
            # them) is screened on them; a refusal leaves the call as it was
            # (RFC 3311 §5.2).
            refusal = self._screen_update_identities(req, src, transport)
            if refusal is not None:
                self._reply(
                    req, refusal.status, refusal.reason, src, transport, refusal.extra_headers
                )
                return

        # RFC 3261 §16.6: forward (the request processing of each target)
        data = self._forward_bytes(req, src, transport, out_transport, n_ours, from_ss, strip, fwd)
        self._out.append((data, dest, out_transport))
        st.forwarded_requests += 1
        if transport != "udp" and out_transport == "udp" and method != b"ACK":
            # a reliable sender runs no timer A/E (RFC 3261 §17.1.1.2, §17.1.2.2):
            # on UDP the proxy retransmits for it (proxy/sip/retransmit.py)
            self._rtx_track(req, data, dest, src, transport, now)

    def _unproven_in_dialog(
        self, req: Request, src: tuple[str, int], from_ss: bool, routes: list[bytes], n_ours: int
    ) -> bool:
        """An INVITE with a To tag, not from the softswitch, without our dialog
        stamp (``_stamped``): screened as a new call, and counted."""
        if from_ss:
            return False
        if self._stamped(req, src, routes, n_ours):
            return False
        self.stats.in_dialog_screened += 1
        return True

    def _preprocess_route(self, req: Request) -> tuple[list[bytes], int]:
        """RFC 3261 §16.4 route information preprocessing: the Route entries, and
        how many at the top name us (removed when the request is forwarded)."""
        # Route entries (RFC 3261 §16.4): remove the top ones that name us
        routes: list[bytes] = []
        route_spans = req.indexed.get(b"route")
        n_ours = 0
        if route_spans is not None:
            buf = req.header_block
            for rs, re_ in route_spans:
                routes.extend(split_commas(buf[rs:re_].strip()))
            while n_ours < len(routes):
                h, p, _ = self._addr.route_target(routes[n_ours])
                if not self._is_self(h, p):
                    break
                n_ours += 1
        return routes, n_ours

    def _validate(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        routes: list[bytes],
        n_ours: int,
    ) -> bool:
        """RFC 3261 §16.3 request validation; False when the request was answered."""
        method = req.method
        # RFC 3261 §16.3 step 2: URI scheme; RFC 5031 service URNs (urn:service:sos,
        # RFC 6881 §6.2.1 emergency calls) are relayed to the softswitch too
        ruri = req.ruri
        if not routable_scheme(ruri):
            self._reply(req, 416, reason_phrase(416), src, transport)
            return False

        # RFC 3261 §11 / §16.3 step 3: OPTIONS to the proxy itself is answered here
        if method == b"OPTIONS" and n_ours == len(routes):
            rtarget = self._ruri_target(ruri)
            if self._is_self(rtarget[0], rtarget[1]):
                self._reply(req, 200, b"OK", src, transport, _OPTIONS_HEADERS)
                return False

        if req.max_forwards == 0:  # RFC 3261 §16.3 step 3
            self._reply(req, 483, reason_phrase(483), src, transport)
            return False

        # RFC 3261 §16.3 step 5: we support no extension: every Proxy-Require is unsupported
        if (
            method != b"ACK"
            and method != b"CANCEL"
            and req.indexed.get(b"proxy-require") is not None
        ):
            opts: list[bytes] = []
            for v in req.header(b"proxy-require"):
                opts.extend(split_commas(v))
            if opts:
                self._reply(
                    req,
                    420,
                    reason_phrase(420),
                    src,
                    transport,
                    b"Unsupported: " + b", ".join(opts) + b"\r\n",
                )
                return False

        return True

    def _determine_target(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        from_ss: bool,
        routes: list[bytes],
        n_ours: int,
    ) -> tuple[tuple[str, int], str, list[tuple[int, int]] | None] | None:
        """RFC 3261 §16.5 determining request targets (one: no DNS, no forking):
        (destination, outgoing transport, trusted-header spans to cut), or None
        when the request was dropped."""
        # Where does it go? Anything not from the softswitch (``_from_softswitch``),
        # TCP callers included, goes to it.
        out_transport = transport
        strip: list[tuple[int, int]] | None = None
        if not from_ss:
            dest: tuple[str, int] = self._ss
            out_transport = self._ss_t
            th = self._th
            if th is not None:
                strip = req.indexed.get(th)
                if strip is not None and self._is_trusted(src[0]):
                    strip = None  # the trusted SBC's own stamp goes through
            # the proxy's own mark header and the identities the screen did not
            # read: from no one
            for name in self._cut_always:
                cut = req.indexed.get(name)
                if cut is not None:
                    strip = cut if strip is None else sorted(strip + cut)
        else:
            if n_ours < len(routes):
                nh, np_, nt = self._addr.route_target(routes[n_ours])
            else:  # the Request-URI, decoded only when routing needs it
                nh, np_, nt = self._ruri_target(req.ruri)
            ip, bad = self._addr.classify_host(nh)
            if ip is None:
                self._drop("unroutable")  # no DNS here
                return None
            if bad:
                self._drop("broadcast")
                return None
            dest = (ip, np_ or 5060)
            if nt is not None:
                if nt not in (b"udp", b"tcp", b"tls"):
                    self._drop("unsupported_transport")
                    return None
                out_transport = nt.decode()
            else:  # a sip: URI of an address, no transport: UDP (RFC 3263 §4.1)
                out_transport = "udp"
            if self._is_self(nh, np_):
                self._drop("loop")
                return None

        return dest, out_transport, strip

    def _answer_invite(
        self,
        req: Request,
        answer: Answer,
        src: tuple[str, int],
        transport: str,
        now: float,
        key: bytes | None,
    ) -> None:
        """The screen's Answer to an INVITE, from an INVITE server transaction
        (RFC 3261 §17.2.1: retransmitted on timer G until the ACK)."""
        st = self.stats
        st.rejected += 1
        if key is None:
            key = transaction_key(req)
        # an INVITE that came with a To tag keeps it (RFC 3261 §8.2.6.2); its ACK
        # names that tag (_take_ack)
        tag = req.to.tag or self._to_tag(req, key)
        final = build_response(req, answer.status, answer.reason, tag, answer.extra_headers)
        self._send_final(req, key, tag, final, answer.status, src, transport, now)

    def _send_final(
        self,
        req: Request,
        key: bytes,
        tag: bytes,
        final: bytes,
        status: int,
        src: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        """Our final answer ``final`` (To tag ``tag``) to an INVITE, sent from a new
        INVITE server transaction (RFC 3261 §17.2.1: again on timer G until the
        ACK) to where the top Via says (§18.2.2); never to a broadcast address."""
        st = self.stats
        rdest = self._local_dest(req.vias[0], src, transport)
        _, bad = self._addr.classify_host(rdest[0].encode())
        if bad:
            self._drop("broadcast")
            return
        lr = st.local_responses
        lr[status] = lr.get(status, 0) + 1
        self._out.extend(self._tx.start(key, final, rdest, transport, now, tag))
        st.retransmit_suppressed = self._tx.suppressed

    def _screen_invite(
        self, req: Request, src: tuple[str, int], transport: str
    ) -> Answer | Forward | None:
        """The screen's answer to an initial INVITE (the ``Screen`` contract: a
        ``ScreenError`` or a bug is settled by ``_screen_failed``)."""
        self.stats.screened += 1
        try:
            return self.screen(req, src, transport)
        except Exception as exc:  # the contract's ScreenError, or a bug (Screen)
            return self._screen_failed(exc)

    def _screen_update_identities(
        self, req: Request, src: tuple[str, int], transport: str
    ) -> Answer | None:
        """The screen's answer to an in-dialog UPDATE's identities (``Screen``):
        an ``Answer`` refuses it; None, a ``ScreenError`` or a bug forwards it (a
        fault never refuses an UPDATE: the call was admitted; counted)."""
        st = self.stats
        st.updates_screened += 1
        try:
            answer = self._screen_update(req, src, transport)  # type: ignore[misc]
        except Exception as exc:
            self._screen_failed(exc)
            return None
        if type(answer) is Answer:
            st.updates_refused += 1
            return answer
        return None

    def _screen_failed(self, exc: Exception) -> Answer | None:
        """What the core does when the screen raised (``Screen``, ``ScreenError``):
        the error's answer (None: fail open); any other exception is a bug,
        counted and logged, and the call fails open."""
        st = self.stats
        st.screen_errors += 1
        if isinstance(exc, ScreenError):
            return exc.answer
        st.screen_bugs += 1
        report = self.config.on_screen_bug
        if report is not None:
            report(exc)  # the adapter logs it (CoreConfig.on_screen_bug)
        return None

    @staticmethod
    def _ruri_target(ruri: bytes) -> tuple[bytes, int | None, bytes | None]:
        """(host, port, transport) of a sip:/sips: Request-URI; (b"", None, None) else."""
        if ruri[:1] == b"s" or ruri[:1] == b"S":
            return _uri_hostport(ruri)
        return (b"", None, None)

    def _branch_of(self, material: bytes) -> bytes:
        """Our branch tail for ``material`` (RFC 3261 §16.11, as ``_forward_bytes``
        computes it inline; relay.scan_request gives the material of the requests
        it forwards): keyed BLAKE2s, key block already absorbed."""
        h = self._branch_mac.copy()
        h.update(material)
        return h.hexdigest().encode()

    def _forward_bytes(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        out_transport: str,
        n_ours: int,
        from_ss: bool,
        strip: list[tuple[int, int]] | None = None,
        fwd: Forward | None = None,
    ) -> bytes:
        raw = req.raw
        eol = req.headers_start  # just past the start line's CRLF
        edits: list[tuple[int, int, bytes]] = [] if fwd is None else list(fwd.edits)
        if strip is not None:
            # whole header lines (a folded value included) with their CRLF; a
            # line the screen's edits already cut (the mark) is cut once
            cut = {s for s, _, r in edits if not r} if edits else ()
            for s, e in strip:
                start = req.header_line_start(s)
                if start not in cut:
                    edits.append((start, e + 2, b""))

        # RFC 3261 §18.2.1 received, RFC 3581 §4 rport on the incoming top Via
        top = req.vias[0]
        src_ip = src[0]
        host = top.host.decode("latin-1")
        need_received = host != src_ip and host.lower() != src_ip.lower()
        s0, e0 = top.span
        if (
            top.rport == b""
            and not need_received
            and top.received is None
            and transport == "udp"
            and (r := raw.find(b";rport", s0, e0)) >= 0
            and (r + 6 == e0 or raw[r + 6] == 0x3B)  # ";rport" then ";" or the end
            and raw.count(b";", s0, e0) == len(top.params)  # no parameter twice
        ):
            # the common case (SIPp, pjsua): fill the bare rport in place
            edits.append((r + 6, r + 6, b"=%d" % src[1]))
        elif top.rport is not None or top.received is not None or transport != "udp":
            tail = b""
            for pk, pv in top.params.items():
                if pk != b"received" and pk != b"rport":
                    tail += b";" + pk if pv is None else b";" + pk + b"=" + pv
            if need_received or transport != "udp":
                tail += b";received=" + src_ip.encode()
            if top.rport is not None or transport != "udp":
                tail += b";rport=%d" % src[1]
            edits.append((s0, e0, b"SIP/2.0/" + top.transport + b" " + top.sent_by + tail))
        elif need_received:
            edits.append((e0, e0, b";received=" + src_ip.encode()))

        # RFC 3261 §16.11 stateless branch: same input -> same branch on any worker
        # (inline: a call costs some 900 instructions on the INVITE path)
        top = req.vias[0]
        b = top.branch
        if b is not None and b[:7] == MAGIC_COOKIE:
            material = b"%s|%s|%s|%d" % (b, top.sent_by, req.call_id, req.cseq[0])
        else:
            # RFC 2543 peers: the §17.2.3 fields (To tag left out so ACK/CANCEL match)
            material = b"%s|%s|%s|%s|%d|%s" % (
                req.ruri,
                req.from_.tag or b"",
                req.call_id,
                top.sent_by,
                req.cseq[0],
                b or b"",
            )
        # _branch_of, inlined: no call on the INVITE path
        h = self._branch_mac.copy()
        h.update(material)
        branch = h.hexdigest().encode()
        added = self._via[out_transport] + branch + b"\r\n"

        # RFC 3261 §16.6 step 3: Max-Forwards
        mf = req.max_forwards
        if mf is None:
            added += b"Max-Forwards: 70\r\n"
        else:
            s, e = req.indexed[b"max-forwards"][0]
            edits.append((s, e, b" %d" % (mf - 1)))

        # RFC 3261 §18.3, §20.14: a request over UDP may come without
        # Content-Length (its body is the rest of the datagram), one on a
        # stream must carry it. Sent on to a TCP/TLS softswitch without one, the
        # body was read there as the next message on the connection: a request
        # (an INVITE with a blocked caller) that nobody screened. So is a body
        # whose length a stream reader reads otherwise than we did: the line
        # goes on a stream in one plain spelling (not folded, not compact ``l``,
        # no space before the colon, no leading zeros).
        if out_transport != "udp":
            raw = self._stream_length(req, edits)

        # RFC 3261 §16.4: remove our own Route entries
        if n_ours:
            removed = 0
            for s, e in req.indexed[b"route"]:
                if removed == n_ours:
                    break
                entries = split_commas(raw[s:e])
                if len(entries) + removed <= n_ours:
                    edits.append((req.header_line_start(s), e + 2, b""))
                    removed += len(entries)
                else:
                    # remove only the first entries of this line: up to the k-th comma
                    k = n_ours - removed
                    pos = s
                    for _ in range(k):
                        gt = raw.find(b">", pos, e)
                        pos = raw.find(b",", gt if gt >= 0 else pos, e) + 1
                    edits.append((s, pos, b" "))
                    removed = n_ours

        # RFC 3261 §16.6 step 4: Record-Route dialog-creating requests
        # (RFC 5658 §3.2: twice when the transports of the two sides differ;
        # both entries are ours, so both are removed from the Route of the
        # dialog's requests by the loop above)
        if self._record_route and req.to.tag is None and req.method in _DIALOG_CREATING:
            added += self._record_route_lines(req, src, out_transport, transport, from_ss)

        # RFC 3261 §16.6 step 8: our Via on top (first header line)
        return _splice(raw, edits, [raw[:eol], added], eol)

    @staticmethod
    def _stream_length(msg: Request | Response, edits: list[tuple[int, int, bytes]]) -> bytes:
        """``msg`` made ready for a stream (``_forward_bytes``, ``_response``): its
        raw bytes, with the blank line that ends its headers completed when a
        datagram ended with its last header line (else the reader would take
        the next message on the connection for more headers), and in ``edits``
        the edit that makes its Content-Length line ``Content-Length: N`` (N the
        length of its body) when it is not that already."""
        raw = msg.raw
        hend = msg.headers_end
        if raw[hend : hend + 4] != b"\r\n\r\n":  # appended: no offset moves
            raw += b"\r\n" if raw.endswith(b"\r\n") else b"\r\n\r\n"
        line = b"Content-Length: %d\r\n" % len(msg.body)
        spans = msg.indexed.get(b"content-length")
        if spans is None:
            edits.append((hend + 2, hend + 2, line))  # the last header line
        else:
            s, e = spans[0]  # the parser refuses a second one
            start = msg.header_line_start(s)
            if raw[start : e + 2] != line:
                edits.append((start, e + 2, line))
        return raw

    def _response(self, resp: Response, now: float) -> None:
        st = self.stats
        st.responses_in[_CLASS_LABELS[resp.status // 100]] += 1
        vias = resp.vias
        top = vias[0]
        # RFC 3261 §16.7 step 1: the top Via must be ours
        sent_by = top.sent_by
        branch = top.branch
        if (
            sent_by != self._sent_by
            and not sent_by.lower().startswith(self._via_host)
            or not (branch is not None and branch[:9] == BRANCH_PREFIX)
        ):
            self._drop("foreign_via")
            return
        if len(vias) < 2:
            self._drop("no_next_via")
            return
        if self._rtx_pending:
            self._rtx.response(branch[9:], resp.cseq[1], resp.status, now)
        nxt = vias[1]
        if nxt.line == top.line:
            cut = (top.span[0], nxt.span[0])
        else:
            cut = top.line
        raw = resp.raw
        if nxt.transport != b"UDP":
            # towards a stream (the softswitch over TLS, a TCP caller): one plain
            # Content-Length line, as for requests (_forward_bytes). A far end that
            # answered over UDP with none could put a request on that connection.
            edits = [(cut[0], cut[1], b"")]
            stream = self._stream_length(resp, edits)
            if len(edits) > 1 or stream is not raw:
                raw, cut = _splice(stream, edits, [], 0), (0, 0)
        self._relay_response(raw, nxt, cut)

    def _relay_response(self, raw: bytes, nxt: Via, cut: tuple[int, int]) -> None:
        """Send ``raw`` without ``raw[cut]`` (our Via) to the next Via (RFC 3261 §16.7)."""
        # RFC 3581 §4 / RFC 3261 §18.2.2: received, rport, else sent-by
        host = nxt.received or nxt.host
        ip, bad = self._addr.classify_host(host)
        if ip is None:
            self._drop("unroutable")
            return
        if bad:
            self._drop("broadcast")  # RFC 4475 §3.3.15 bcast
            return
        if nxt.rport:
            port = int(nxt.rport) if nxt.rport.isdigit() else (nxt.port or 5060)
        else:
            port = nxt.port or 5060
        t = nxt.transport
        if t == b"UDP":
            transport = "udp"
        elif t == b"TCP":
            transport = "tcp"
        elif t == b"TLS":
            transport = "tls"
        else:
            self._drop("unsupported_transport")
            return
        self.stats.forwarded_responses += 1
        self._out.append((raw[: cut[0]] + raw[cut[1] :], (ip, port), transport))

    # --- retransmission for reliable senders (proxy/sip/retransmit.py) ---------

    def _rtx_track(
        self,
        req: Request,
        data: bytes,
        dest: tuple[str, int],
        src: tuple[str, int],
        transport: str,
        now: float,
    ) -> None:
        # our Via is the first header line of what we forwarded: its branch tail
        # (the 16 hex digits after BRANCH_PREFIX) keys the entry
        s = data.find(b"\r\n") + 2 + len(self._via["udp"])
        rtx = self._rtx
        if not rtx.track(data[s : s + 16], req.method, data, dest, req, src, transport, now):
            self.stats.relay_retransmit["refused"] = rtx.refused

    def _rtx_branch(self, data: bytes) -> bool:
        """A response the lean relay took (our Via the first header line) whose
        branch is one we retransmit for: the full parse then matches it."""
        s = data.find(b"\r\n") + 2 + len(self._our_via)
        return data[s : s + 16] in self._rtx_pending

    def _retransmit_timer(self, now: float) -> None:
        rtx = self._rtx
        out, expired = rtx.fire(now)
        self._out.extend(out)
        for p in expired:
            if p.req is not None:
                # RFC 3261 §16.8: timer B fired without any response: as if the
                # client transaction had received a 408, which goes to the caller
                self._reply(p.req, 408, reason_phrase(408), p.src, p.transport)
        rr = self.stats.relay_retransmit
        rr["sent"] = rtx.retransmitted
        rr["timeout_408"] = rtx.timeouts_invite
        rr["timeout_non_invite"] = rtx.timeouts_non_invite
        self.stats.relay_retransmit_last = rtx.last_timeout
