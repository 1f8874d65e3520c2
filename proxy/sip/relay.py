"""Lean relay of responses: find our Via and the next one, parse nothing else.

How this works: three of the six messages of a call (180, 200, and the 200 to
the BYE) are responses the proxy only relays back (RFC 3261 §16.7): it checks
that the top Via is its own, removes it, and sends the rest to the address of
the next Via (``received``/``rport``, RFC 3581 §4). ``scan_response`` finds
exactly that with a handful of ``bytes`` operations when the response is in
its common shape, and returns ``None`` the moment anything is unusual; the
core then runs the full parser (proxy/sip/message.py) on the same bytes, so
an unusual response costs a little more and is treated exactly as before.

The common shape (else ``None``): status line ``SIP/2.0 NNN reason``; our own
Via as the first header line (this worker's exact prefix, then the
16-character branch tail we wrote); the next Via right after it, on the same
line after ``, `` (SIPp's ``[last_Via:]``) or alone on the next line spelled
``Via:``, one value that the parser's own ``parse_via`` reads, not
folded; Content-Length, when spelled so, equal to the body, and no body
without it (RFC 3261 §18.3).

Like Kamailio's lazy parser, the lean relay does not validate the headers it
does not read (From, To, Call-ID, CSeq, the rest): a response broken there is
passed on to the caller instead of being dropped.

The other two messages a call sends through the proxy without a decision are
the caller's in-dialog ACK and BYE. ``scan_request`` forwards them without
building a message: it exists only in C (_scan.c), because two lean scanners
in Python (one ``find`` per header; one case-insensitive regex pass) cost as
many instructions as the full parse (benchmarks/RESULTS.md, optimisation log);
without the C code the full parse takes them. Unlike the response relay it
validates everything the full parse validates, read the same way (header
names through the parser's own table), so it forwards exactly what the full
path forwards and refuses nothing itself: whatever the full path would answer
or treat in a rarer way (Max-Forwards 0, Proxy-Require, a Via to rewrite, a
Route that is not ours alone, our own To tag) it declines. The initial INVITE
always gets the full parse: it is the screening point. ``initial_via`` reads the top Via of an
initial INVITE or CANCEL (its transaction key), so that a non-owner worker
hands it to its owner without parsing it (proxy/sip/core.py). tests/unit/test_sip_relay.py checks
that the core sends exactly the same bytes with and without the lean relay,
for every RFC 4475 message and for mutations of real responses.
"""

from __future__ import annotations

from . import message
from .message import SIPError, Via, parse_via
from .transaction import via_key

__all__ = ["initial_key", "initial_via", "scan_request", "scan_response", "top_key", "top_via"]


def _via_at(data: bytes, s: int, e: int, line: tuple[int, int]) -> Via | None:
    """The one Via value on the line data[s:e], exactly as the full parser reads it
    (message.parse_via), else None: several values on the line (the parser splits
    them), the line folded onto the next one, or a value the parser refuses."""
    if data.find(b",", s, e) >= 0 or data[e + 2 : e + 3] in (b" ", b"\t"):
        return None
    c_via = message.PARSER.c_via
    if c_via is not None:
        # the common shape in C (_scan.c), which declines (None) anything else
        via = c_via(data, s, e, line[0])
        if via is not None:
            return via
    try:
        return parse_via(data, s, e, line)
    except SIPError:
        return None


def _line(data: bytes, key: bytes, start: int, hend: int) -> tuple[int, int]:
    """[start, end) of the value of the first header line ``key`` (b"\\r\\nName:"), or (-1, -1)."""
    i = data.find(key, start, hend)
    if i < 0:
        return -1, -1
    s = i + len(key)
    return s, data.find(b"\r\n", s)


def _length_ok(data: bytes, eol: int, hend: int) -> bool:
    """Content-Length, when spelled so, equals the body; a body needs it (RFC 3261 §18.3:
    octets past it are dropped, a shorter datagram is an error: the full path's work)."""
    s, e = _line(data, b"\r\nContent-Length:", eol, hend + 2)
    if s < 0:
        return len(data) == hend + 4
    v = data[s:e].strip()
    return len(v) <= 5 and v.isdigit() and int(v) == len(data) - hend - 4


def scan_response(data: bytes, our_via: bytes) -> tuple[int, Via, tuple[int, int]] | None:
    """(status, next Via, [start, end) to cut) of a response whose first header line is
    our Via (``our_via`` and a 16-character branch tail), else None.

    Runs in C (_scan.c) when built: the same answer, or None where the C Via
    reader declines a shape (the full parse then takes the response)."""
    c_scan = message.PARSER.c_response
    if c_scan is not None:
        return c_scan(data, our_via)
    return _scan_response(data, our_via)


def scan_request(
    data: bytes,
    src_host: str,
    src_port: int,
    route: bytes,
    decline: bytes | None = None,
    decline2: bytes | None = None,
) -> tuple[bytes, int, bytes] | None:
    """(branch material, header start, edited rest) of an in-dialog ACK or BYE from a
    caller over UDP in its common shape (see _scan.c), else None; always None
    without the C code. Forwarded as ``data[:hstart] + our Via line + rest``, where
    our branch hashes the material (ProxyCore._forward_bytes, §16.11). ``route``: our own
    Record-Route value, the one Route entry removed (RFC 3261 §16.4). ``decline``,
    ``decline2``: headers (canonical names, indexed by ``message.index_header``)
    whose presence declines, as the core strips them on the full path (the trusted
    provider header from a caller, the STIR/SHAKEN mark header from anyone)."""
    c_scan = message.PARSER.c_request
    if c_scan is None:
        return None
    if decline2 is not None:
        return c_scan(data, src_host, src_port, route, decline, decline2)
    if decline is None:  # cheaper than passing None through the argument parser
        return c_scan(data, src_host, src_port, route)
    return c_scan(data, src_host, src_port, route, decline)


def _scan_response(data: bytes, our_via: bytes) -> tuple[int, Via, tuple[int, int]] | None:
    """scan_response in Python: the reference, and the code without a compiler."""
    if data[:8] != b"SIP/2.0 " or data[11:12] != b" ":
        return None
    code = data[8:11]
    if not code.isdigit():
        return None
    status = int(code)
    if status < 100 or status > 699:
        return None
    eol = data.find(b"\r\n")
    p = eol + 2
    if not data.startswith(our_via, p):
        return None
    q = p + len(our_via) + 16
    if data[q - 16 : q].translate(None, b"0123456789abcdef"):
        return None  # not the 16 hex digits of our branch (core.ProxyCore._branch_of)
    sep = data[q : q + 2]
    if sep == b", ":
        v0 = q + 2
        cut = (p + 5, v0)  # our value and the comma; "Via: " stays for the next one
        line0 = p
    elif sep == b"\r\n" and data[q + 2 : q + 7] == b"Via: ":
        # RFC 3261 §7.3.1: the next Via on its own line, right after ours
        v0 = q + 7
        cut = (p, q + 2)  # our whole line
        line0 = q + 2
    else:
        return None
    ve = data.find(b"\r\n", v0)
    hend = data.find(b"\r\n\r\n", ve)
    if ve < 0 or hend < 0:
        return None
    if not _length_ok(data, eol, hend) or data.find(b"\0", 0, hend) >= 0:
        return None  # a raw NUL: the full parse decides
    nxt = _via_at(data, v0, ve, (line0, ve + 2))
    if nxt is None:
        return None
    return status, nxt, cut


def top_via(data: bytes) -> Via | None:
    """The top Via in the common shape (the first header line, one value, as the
    full parser reads it) with an RFC 3261 branch, else None."""
    eol = data.find(b"\r\n")
    if data[eol : eol + 7] != b"\r\nVia: ":
        return None
    ve = data.find(b"\r\n", eol + 7)
    top = _via_at(data, eol + 7, ve, (eol + 2, ve + 2))
    if top is None or top.branch is None or top.branch[:7] != b"z9hG4bK":
        return None
    return top


def initial_via(data: bytes) -> Via | None:
    """The top Via of an initial request (no To tag) in the common shape, else None.

    Its branch and sent-by give the RFC 3261 §17.2.3 transaction key
    (``transaction.via_key``). Used only before the full parse: to pick
    the worker that owns the transaction (the owner then parses the message in
    full, so a wrong guess costs one extra hop and changes nothing else), and
    to answer 503 when the worker sheds load (proxy/sip/core.py). The common
    shape: the top Via the first header line, in the parser's common shape
    with an RFC 3261 branch; a To header spelled ``To:`` without a tag.
    """
    top = top_via(data)
    if top is None:
        return None
    ve = top.line[1] - 2
    s, e = _line(data, b"\r\nTo:", ve, len(data))
    if s < 0 or data.find(b";tag=", s, e) >= 0 or data.find(b";TAG=", s, e) >= 0:
        return None
    return top


def top_key(data: bytes) -> bytes | None:
    """``transaction.via_key(top_via(data))``: the RFC 3261 §17.2.3 key of the top Via
    in the common shape, else None. In C (_scan.c ``top_key``) when built, without
    a Via object; where the C reader declines a shape, this Python code decides."""
    return _key(data, False)


def initial_key(data: bytes) -> bytes | None:
    """``transaction.via_key(initial_via(data))`` (``top_key``'s twin for an initial
    request: no To tag)."""
    return _key(data, True)


def _key(data: bytes, initial: bool) -> bytes | None:
    c_key = message.PARSER.c_key
    if c_key is not None:
        key = c_key(data, initial)
        if key is not None:
            return key or None
    top = initial_via(data) if initial else top_via(data)
    return via_key(top) if top is not None else None
