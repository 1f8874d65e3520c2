"""SIP message parsing and response building (sans-I/O).

How this works:

- ``parse(data)`` takes one SIP message (a UDP datagram, or one message framed
  by ``frame_stream`` on TCP) and returns a ``Request`` or a ``Response``.
  The start line is split with ``bytes.find``; the header block is scanned
  once, line by line, and only the *offsets* of each header value are kept in
  a small dict keyed by the lower-case full header name (compact forms are
  mapped to their full names, RFC 3261 §7.3.3).  Line folding (RFC 3261
  §7.3.1) is undone by replacing ``CRLF SP`` with three spaces, which keeps
  every offset identical to the raw bytes: the core can then rewrite the
  message (add ``received``/``rport``, drop our Via) by splicing the raw
  bytes at those offsets without re-serialising anything.
- The fields a proxy needs on every message (Via list, Call-ID, CSeq,
  Max-Forwards, Content-Length, and From/To of a request) are decoded and
  validated up front; a response's From/To are decoded on first access
  (a proxy relays responses by their Via alone, RFC 3261 §16.7);
  P-Asserted-Identity, Identity, Privacy and any other header are decoded on
  first access (``msg.header(b"route")``).
- Every error is a ``SIPError`` carrying the status to answer with (400, 505
  ...) and a short ``kind`` for metrics; ``status == 0`` means "do not
  answer, drop and count" (keep-alives, anything wrong with a response).
- ``build_response`` copies Via/From/To/Call-ID/CSeq per RFC 3261 §8.2.6.2;
  ``build_error_response`` does the same from raw bytes that failed to parse.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Literal

__all__ = [
    "SIPError",
    "Via",
    "NameAddr",
    "parse_name_addr",
    "name_addr_parts",
    "uri_user",
    "index_header",
    "is_service_urn",
    "Request",
    "Response",
    "parse",
    "frame_stream",
    "build_response",
    "build_error_response",
    "split_commas",
    "reason_phrase",
    "status_line",
    "MAX_MESSAGE",
]

MAX_MESSAGE = 65535  # largest message we accept on a stream (RFC 3261 §18.1.1 UDP bound)

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_ALNUM = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN = _ALNUM + b"-.!%*_+`'~"
_TOKEN_LWS = _TOKEN + b" \t"
# RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME = _ALNUM + b"+-."
_DIGITS = b"0123456789"
_WS = b" \t"
# octets never allowed unescaped in a Request-URI (RFC 3261 §25.1: no LWS, no CTLs)
_URI_FORBIDDEN = bytes(range(0, 33)) + b'\x7f<>"'

# RFC 3261 §7.3.3 and the IANA header registry: compact forms.
_COMPACT: dict[bytes, bytes] = {
    b"v": b"via",
    b"i": b"call-id",
    b"f": b"from",
    b"t": b"to",
    b"l": b"content-length",
    b"m": b"contact",
    b"c": b"content-type",
    b"e": b"content-encoding",
    b"k": b"supported",
    b"s": b"subject",
    b"r": b"refer-to",
    b"o": b"event",
    b"u": b"allow-events",
    b"x": b"session-expires",
    b"a": b"accept-contact",
    b"j": b"reject-contact",
    b"d": b"request-disposition",
    b"b": b"referred-by",
    b"y": b"identity",  # RFC 8224 §4
}

# Header fields that may appear at most once (RFC 3261 §7.3.1, table in §20).
# RFC 3261 §8.1.1 mandatory headers (requests and responses alike), and §7.3.1
# single-value headers, at most once (RFC 4475 §3.3.7 multi01, mcl01)
_MANDATORY = (b"via", b"from", b"to", b"call-id", b"cseq")
_SINGLE = (b"from", b"to", b"call-id", b"cseq", b"max-forwards", b"content-length")

# Headers whose offsets the one pass over the header block records (what the
# proxy core and the screen read on every message); any other header is
# indexed on first access by ``header()`` with a second pass.
_EAGER = frozenset(
    (
        b"via",
        b"from",
        b"to",
        b"call-id",
        b"cseq",
        b"max-forwards",
        b"content-length",
        b"route",
        b"proxy-require",
        b"contact",
        b"date",
        b"p-asserted-identity",
        b"identity",
        b"privacy",
        b"content-type",  # the screen looks for an ISUP body (proxy/sip/isup.py)
    )
)


def _canonical_name(name: bytes) -> bytes:
    """Lower-case full header name of ``name`` as found before the colon (RFC 3261 §7.3.1).

    Raises SIPError(400) for an empty or space-holding name followed by LWS.
    """
    if name[-1] in _WS:
        name = name.rstrip(b" \t")
        if not name or b" " in name:
            raise _bad("bad_header", "bad header name")
    name = name.lower()
    return _COMPACT.get(name, name)


# The exact spellings seen on the wire, mapped once to their canonical name:
# the per-line work of the parser is then one dict lookup (a miss falls back to
# ``_canonical_name`` and is remembered; at _NAMES_MAX spellings the learned
# ones are forgotten, ``_forget_learned``).
# ``_FAST`` maps to the canonical name for the _EAGER headers and to b"" for
# the others; ``_CANON`` maps every spelling to its canonical name.
_NAMES_MAX = 4096
_COMMON_NAMES = (
    b"Via",
    b"From",
    b"To",
    b"Call-ID",
    b"CSeq",
    b"Max-Forwards",
    b"Content-Length",
    b"Route",
    b"Record-Route",
    b"Proxy-Require",
    b"Contact",
    b"Date",
    b"P-Asserted-Identity",
    b"P-Preferred-Identity",
    b"Identity",
    b"Identity-Info",
    b"Privacy",
    b"Content-Type",
    b"Content-Encoding",
    b"Content-Disposition",
    b"Allow",
    b"Allow-Events",
    b"Supported",
    b"Require",
    b"Unsupported",
    b"User-Agent",
    b"Server",
    b"Subject",
    b"Session-Expires",
    b"Min-SE",
    b"Expires",
    b"Event",
    b"Accept",
    b"Accept-Encoding",
    b"Accept-Language",
    b"Authorization",
    b"Proxy-Authorization",
    b"WWW-Authenticate",
    b"Proxy-Authenticate",
    b"Reason",
    b"Call-Info",
    b"Diversion",
    b"History-Info",
    b"Remote-Party-ID",
    b"P-Charging-Vector",
    b"Refer-To",
    b"Referred-By",
    b"RSeq",
    b"RAck",
    b"Timestamp",
    b"Warning",
    b"Organization",
    b"Priority",
    b"Retry-After",
)
_CANON: dict[bytes, bytes] = {}
_FAST: dict[bytes, bytes] = {}


def _remember(spelling: bytes, canon: bytes) -> None:
    if len(_CANON) >= _NAMES_MAX:
        _forget_learned()
    _CANON[spelling] = canon
    _FAST[spelling] = canon if canon in _EAGER else b""


def _forget_learned() -> None:
    """Back to the seeded spellings when _NAMES_MAX are remembered: made-up names
    would otherwise fill the table for good, and every message with a name
    learned too late would take the slow path (the C parse declines unknown
    spellings) forever. ``_FAST`` is rebuilt from ``_CANON`` and ``_EAGER``, so
    the headers ``index_header`` made eager stay eager. The C name table may
    keep answers for forgotten spellings: still right (a spelling's canonical
    name never changes, and ``index_header`` empties it)."""
    _CANON.clear()
    _CANON.update(_SEEDED)
    _FAST.clear()
    for spelling, canon in _CANON.items():
        _FAST[spelling] = canon if canon in _EAGER else b""


for _n in (*_COMMON_NAMES, *_COMPACT):
    for _sp in (_n, _n.lower(), _n.upper(), _n.title()):
        _remember(_sp, _canonical_name(_sp))
del _n, _sp
_SEEDED: dict[bytes, bytes] = dict(_CANON)

_CSEQ_MAX = 2**31 - 1  # RFC 3261 §8.1.1.5: "MUST be ... less than 2**31"
_MF_MAX = 255  # RFC 3261 §20.22 (RFC 4475 §3.1.2.4 scalar02)
_CL_MAX = MAX_MESSAGE

_REASONS: dict[int, bytes] = {
    100: b"Trying",
    180: b"Ringing",
    183: b"Session Progress",
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Request Entity Too Large",
    416: b"Unsupported URI Scheme",
    420: b"Bad Extension",
    480: b"Temporarily Unavailable",
    481: b"Call/Transaction Does Not Exist",
    483: b"Too Many Hops",
    486: b"Busy Here",
    487: b"Request Terminated",
    488: b"Not Acceptable Here",
    500: b"Server Internal Error",
    503: b"Service Unavailable",
    505: b"Version Not Supported",
    513: b"Message Too Large",
    600: b"Busy Everywhere",
    603: b"Decline",
    604: b"Does Not Exist Anywhere",
    606: b"Not Acceptable",
    607: b"Unwanted",
    608: b"Rejected",
}
# Status lines precomputed once (uvicorn style).
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {
    (code, reason): b"SIP/2.0 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}


def reason_phrase(status: int) -> bytes:
    """The default reason phrase of ``status`` (RFC 3261 §21)."""
    return _REASONS.get(status, b"Unknown")


def status_line(status: int, reason: bytes) -> bytes:
    """``SIP/2.0 <status> <reason>CRLF``, precomputed for the common codes."""
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"SIP/2.0 %d %s\r\n" % (status, reason)
    return line


class SIPError(Exception):
    """A message we cannot process: ``status`` is the answer (0 = drop)."""

    def __init__(self, status: int, kind: str, detail: str = "", reason: str = "") -> None:
        self.status = status
        self.kind = kind
        self.reason = reason or (reason_phrase(status).decode() if status else "")
        self.detail = detail
        super().__init__(f"{status} {kind}: {detail}" if detail else f"{status} {kind}")


def _bad(kind: str, detail: str = "") -> SIPError:
    return SIPError(400, kind, detail)


class Via:
    """One Via value (RFC 3261 §20.42) with its offsets in the raw message."""

    __slots__ = (
        "transport",
        "host",
        "port",
        "branch",
        "received",
        "rport",
        "params",
        "span",
        "line",
        "sent_by",
    )

    def __init__(
        self,
        transport: bytes,
        host: bytes,
        port: int | None,
        sent_by: bytes,
        params: dict[bytes, bytes | None],
        span: tuple[int, int],
        line: tuple[int, int],
    ) -> None:
        self.transport = transport  # upper case: b"UDP", b"TCP", b"TLS" ...
        self.host = host  # IPv6 without brackets
        self.port = port
        self.sent_by = sent_by  # as on the wire: host[:port]
        self.params = params
        self.branch = params.get(b"branch")
        self.received = params.get(b"received")
        # RFC 3581 §3: rport present (b"" when bare, the value when filled) or None
        if b"rport" in params:
            rp = params[b"rport"]
            self.rport: bytes | None = b"" if rp is None else rp
        else:
            self.rport = None
        self.span = span  # [start, end) of this value in raw
        self.line = line  # [start, end) of the whole header line incl. CRLF

    def __repr__(self) -> str:
        return f"Via({self.transport!r}, {self.sent_by!r}, branch={self.branch!r})"


class NameAddr:
    """From/To/P-Asserted-Identity value: ``[display] <uri>;params`` (RFC 3261 §20.20)."""

    __slots__ = ("display", "uri", "params", "tag", "raw", "_su")

    def __init__(
        self,
        display: bytes,
        uri: bytes,
        params: dict[bytes, bytes | None],
        raw: bytes,
    ) -> None:
        self.display = display
        self.uri = uri
        self.params = params
        self.tag = params.get(b"tag")
        self.raw = raw
        self._su: tuple[bytes, bytes] | None = None  # (scheme, user), decoded on first use

    @property
    def scheme(self) -> bytes:
        """Lower-case URI scheme (``sip``, ``sips``, ``tel`` ...)."""
        su = self._su
        if su is None:
            su = self._su = _uri_user(self.uri)
        return su[0]

    @property
    def user(self) -> bytes:
        """User part of a sip:/sips: URI, number of a tel: URI, else b""."""
        su = self._su
        if su is None:
            su = self._su = _uri_user(self.uri)
        return su[1]

    def __repr__(self) -> str:
        return f"NameAddr({self.uri!r}, tag={self.tag!r})"


def _uri_user(uri: bytes) -> tuple[bytes, bytes]:
    """(lower-case scheme, user part) of a sip:/sips:/tel: URI (RFC 3261 §19.1.1, RFC 3966)."""
    colon = uri.find(b":")
    if colon <= 0:
        return b"", b""
    scheme = uri[:colon].lower()
    rest = uri[colon + 1 :]
    if scheme == b"sip" or scheme == b"sips":
        at = rest.find(b"@")
        if at < 0:
            return scheme, b""
        user = rest[:at]
        pw = user.find(b":")  # userinfo = user [":" password]
        return scheme, user if pw < 0 else user[:pw]
    if scheme == b"tel":
        semi = rest.find(b";")
        return scheme, rest if semi < 0 else rest[:semi]
    return scheme, b""


# RFC 5031 §4.2: service = top-level *("." sub-service), let-dig-hyp labels
_SERVICE_CHARS = _ALNUM + b"-."


def is_service_urn(uri: bytes) -> bool:
    """True for an RFC 5031 service URN: ``urn:service:`` then a service name.

    The scheme and the namespace id are case-insensitive (RFC 8141 §3.1);
    the service is dot-separated labels of letters, digits and ``-``
    (``sos``, ``sos.police``, ``counseling.children``). Any other ``urn:``
    (or an empty or malformed service) is False: the core answers it 416.
    """
    if len(uri) <= 12 or uri[:12].lower() != b"urn:service:":
        return False
    service = uri[12:]
    if service.translate(None, _SERVICE_CHARS):
        return False
    return all(label and label[:1] != b"-" and label[-1:] != b"-" for label in service.split(b"."))


uri_user = _uri_user  # public: proxy/screen.py reads the Request-URI user this way too


# What the comma walk (``_comma_spans``) visits in a list header: quotes,
# backslashes (quoted-pair), <> and commas; in a Via value, where no <> stand,
# quotes, backslashes and commas
_LIST_SPECIALS = re.compile(rb'[",<>\\]')
_VIA_SPECIALS = re.compile(rb'[",\\]')


def _comma_spans(buf: bytes, s: int, e: int, specials: re.Pattern[bytes]) -> list[tuple[int, int]]:
    """Offsets of the comma-separated values in ``buf[s:e]``: a comma inside a
    quoted string (or inside <>, when ``specials`` finds them) separates
    nothing (RFC 3261 §7.3.1). Only what ``specials`` finds is visited: a
    value of thousands of entries costs their count, not its length in
    Python steps."""
    out: list[tuple[int, int]] = []
    start = s
    skip = -1  # the octet a quoted-pair's backslash escapes
    inq = False
    inangle = False
    for m in specials.finditer(buf, s, e):
        i = m.start()
        if i == skip:
            continue
        c = buf[i]
        if inq:
            if c == 0x5C:  # backslash: quoted-pair
                skip = i + 1
            elif c == 0x22:
                inq = False
        elif c == 0x22:
            inq = True
        elif c == 0x3C:
            inangle = True
        elif c == 0x3E:
            inangle = False
        elif c == 0x2C and not inangle:
            out.append((start, i))
            start = i + 1
    out.append((start, e))
    return out


def split_commas(value: bytes) -> list[bytes]:
    """Split a header value on commas outside quotes and <> (RFC 3261 §7.3.1)."""
    if value.find(b",") < 0:  # one value: the common case
        value = value.strip()
        return [value] if value else []
    if b'"' not in value and b"<" not in value:
        return [p.strip() for p in value.split(b",") if p.strip()]
    spans = _comma_spans(value, 0, len(value), _LIST_SPECIALS)
    return [p for a, b in spans if (p := value[a:b].strip())]


def _params(text: bytes, kind: str) -> dict[bytes, bytes | None]:
    """``*( SEMI generic-param )`` -> dict (RFC 3261 §25.1); empty params are errors."""
    out: dict[bytes, bytes | None] = {}
    if not text:
        return out
    for p in text.split(b";"):
        name, eq, value = p.partition(b"=")
        name = name.strip()
        if not name:
            raise _bad(kind, "empty parameter name" if eq else "empty parameter")
        out[name.lower()] = value.strip() if eq else None
    return out


def _close_quote(v: bytes, start: int) -> int:
    """Index of the quote closing the quoted-string opened at ``start`` (RFC 3261 §25.1)."""
    i = start + 1
    n = len(v)
    while i < n:
        q = v.find(b'"', i)
        if q < 0:
            return -1
        bs = v.find(b"\\", i, q)
        if bs < 0:
            return q
        i = bs + 2  # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
    return -1


# The common shapes of a From/To value in one regex: an optional quoted display
# name (no quoted-pair) or token display name, <URI> without LWS, at most a
# ";tag=" parameter. A match gives exactly what the general code below would
# (same display, uri, params); anything else takes the general code.
# It stays beside the reference (unlike Via's, which _scan.c mirrors) because
# the screen reads every P-Asserted-Identity entry with ``name_addr_parts`` in
# Python, C or not: 2.5 times the general code's time without it (tests/unit/
# test_sip_fastpath.py checks both give the same answer).
_NAME_ADDR_RE = re.compile(
    rb'(?:("[^"\\]*")[ \t]*|([-A-Za-z0-9.!%*_+`\'~ \t]*))'
    rb'<([^<>" \t:]*:[^<>" \t]*)>(?:;tag=([-A-Za-z0-9.!%*_+`\'~]*))?\Z'
)
# What no From/To parameter may hold outside a quoted string (RFC 3261 §25.1:
# gen-value = token / host / quoted-string): a comma, <, > or a quote would let a
# reader that splits the header at the comma take a second URI from it; a space
# ends the value. Other odd octets (a vendor's unquoted URI with '@' or '/')
# are left as they were, for interop.
_PARAM_BREAKS = re.compile(rb'[,<>"\s]')


def parse_name_addr(v: bytes, kind: str = "bad_header") -> NameAddr:
    """Parse ``name-addr / addr-spec *( SEMI param )`` (RFC 3261 §20.10, §20.20)."""
    v = v.strip()
    m = _NAME_ADDR_RE.match(v)
    if m is not None:
        quoted, token, uri, tag = m.groups()
        return NameAddr(
            token.strip() if quoted is None else quoted,
            uri,
            {} if tag is None else {b"tag": tag},
            v,
        )
    display = b""
    pos = 0
    if v[:1] == b'"':
        q = v.find(b'"', 1)
        if q < 0 or v.find(b"\\", 1, q) >= 0:
            q = _close_quote(v, 0)  # quoted-pairs inside: the slow walk
        if q < 0:
            raise _bad(kind, "unbalanced quotes")  # RFC 4475 §3.1.2.6 quotbal
        display = v[: q + 1]
        pos = q + 1
    lt = v.find(b"<", pos)
    if lt >= 0:
        if not display:
            display = v[:lt].strip()
            # RFC 3261 §25.1: display-name = *(token LWS) / quoted-string (baddn)
            if display and display.translate(None, _TOKEN_LWS):
                raise _bad(kind, "display name must be tokens or quoted")
        elif v[pos:lt].strip():
            raise _bad(kind, "junk after display name")
        gt = v.find(b">", lt)
        if gt < 0:
            raise _bad(kind, "unterminated <")
        uri = v[lt + 1 : gt]
        # RFC 4475 §3.1.2.13 badaspec: no LWS inside the addr-spec
        if not uri or b" " in uri or b"\t" in uri:
            raise _bad(kind, "whitespace in addr-spec")
        rest = v[gt + 1 :].strip()
    else:
        if display:
            raise _bad(kind, "quoted display name without <uri>")
        semi = v.find(b";")
        uri = v if semi < 0 else v[:semi]
        uri = uri.strip()
        rest = b"" if semi < 0 else v[semi:]
        if not uri or b" " in uri or b"\t" in uri:
            raise _bad(kind, "whitespace in addr-spec")
        # RFC 3261 §20.10: a URI with ',', '?' or ';' must be enclosed in <>
        if b"?" in uri or b"," in uri:
            raise _bad(kind, "addr-spec with '?' or ',' outside <>")
    if b":" not in uri:
        raise _bad(kind, "URI without scheme")
    if rest:
        if rest[:5] == b";tag=" and rest.find(b";", 5) < 0:
            params: dict[bytes, bytes | None] = {b"tag": rest[5:].strip()}  # the common case
        elif rest[:1] != b";":
            raise _bad(kind, "junk after URI")
        else:
            params = _params(rest[1:], kind)
        for pname, pvalue in params.items():
            if _PARAM_BREAKS.search(pname) or (
                pvalue
                and _PARAM_BREAKS.search(pvalue)
                and not (
                    len(pvalue) > 1
                    and pvalue[:1] == b'"'
                    and _close_quote(pvalue, 0) == len(pvalue) - 1
                )
            ):
                # RFC 3261 §20.10/§20.20 and §25.1: e.g. ";tag=1, <sip:...>" is one
                # header with two URIs to a reader that splits at the comma
                raise _bad(kind, "parameter value with a comma, <, >, quote or space")
    else:
        params = {}
    return NameAddr(display, uri, params, v)


def name_addr_parts(v: bytes) -> tuple[bytes, bytes] | None:
    """(display name, URI) as ``parse_name_addr(v)`` reads them (``NameAddr.display``,
    ``NameAddr.uri``); None when ``v`` does not parse. The P-Asserted-Identity
    entries are read with it, so they are read exactly as From is; the common
    shape skips building a NameAddr."""
    m = _NAME_ADDR_RE.match(v)
    if m is not None:
        quoted, token, uri, _tag = m.groups()
        return (token.strip() if quoted is None else quoted), uri
    try:
        na = parse_name_addr(v)
    except SIPError:
        return None
    return na.display, na.uri


def _parse_sent_by(sb: bytes) -> tuple[bytes, int | None]:
    if sb[:1] == b"[":  # RFC 3261 §25.1 IPv6reference
        rb = sb.find(b"]")
        if rb < 0:
            raise _bad("bad_via", "bad IPv6 reference")
        host = sb[1:rb]
        tail = sb[rb + 1 :]
        if not tail:
            return host, None
        if tail[:1] != b":":
            raise _bad("bad_via", "junk after IPv6 reference")
        ps = tail[1:].strip()
    else:
        colon = sb.find(b":")
        if colon < 0:
            host = sb
            if not host:
                raise _bad("bad_via", "empty host")
            return host, None
        host = sb[:colon].strip()
        ps = sb[colon + 1 :].strip()
    if not host:
        raise _bad("bad_via", "empty host")
    if len(ps) > 5 or not ps.isdigit():  # bytes.isdigit: ASCII digits, non-empty
        raise _bad("bad_via", "bad port")
    port = int(ps)
    if port == 0 or port > 65535:
        raise _bad("bad_via", "bad port")
    return host, port


_TRANSPORTS = frozenset((b"UDP", b"TCP", b"TLS", b"SCTP", b"WS", b"WSS"))


def parse_via(buf: bytes, s: int, e: int, line: tuple[int, int]) -> Via:
    """One via-parm (RFC 3261 §20.42): sent-protocol LWS sent-by *( SEMI via-params ).

    The reference reader of a Via value; _scan.c's ``parse_via`` mirrors it for
    the common shapes (and the C ``parse`` for whole messages), so this runs on
    the hot path only without the C accelerator."""
    # trim to exact value offsets (SP / HTAB only)
    v = buf[s:e]
    lv = v.lstrip(b" \t")
    if len(lv) != len(v):
        s = e - len(lv)
    v = lv.rstrip(b" \t")
    e = s + len(v)
    if not v:
        raise _bad("bad_via", "empty Via value")  # RFC 4475 §3.1.2.1 badinv01
    head, semi, ptext = v.partition(b";")
    if head[:8] == b"SIP/2.0/":
        rest = head[8:]
    else:
        parts = head.split(b"/")
        if len(parts) != 3:
            raise _bad("bad_via", "bad sent-protocol")
        if parts[0].strip().upper() != b"SIP" or parts[1].strip() != b"2.0":
            raise _bad("bad_via", "bad sent-protocol")
        rest = parts[2].strip()
    # transport LWS sent-by
    if b"\t" in rest:
        sp = rest.find(b" ")
        tab = rest.find(b"\t")
        if tab >= 0 and (sp < 0 or tab < sp):
            sp = tab
        if sp <= 0:
            raise _bad("bad_via", "missing sent-by")
        transport = rest[:sp].upper()
        sent_by = rest[sp:].strip()
    else:
        t, sep, sb = rest.partition(b" ")
        if not sep or not t:
            raise _bad("bad_via", "missing sent-by")
        transport = t.upper()
        sent_by = sb.strip()
    if (
        not sent_by
        or b" " in sent_by
        or b"\t" in sent_by
        or (transport not in _TRANSPORTS and transport.translate(None, _TOKEN))
    ):
        raise _bad("bad_via", "bad sent-by")
    if sent_by[:1] == b"[":
        host, port = _parse_sent_by(sent_by)
    else:
        # RFC 3261 §20.42 sent-by = host [ COLON port ]
        host, colon, ps = sent_by.partition(b":")
        if colon:
            host = host.strip()
            ps = ps.strip()
            if not host:
                raise _bad("bad_via", "empty host")
            if len(ps) > 5 or not ps.isdigit():
                raise _bad("bad_via", "bad port")
            port = int(ps)
            if port == 0 or port > 65535:
                raise _bad("bad_via", "bad port")
        else:
            port = None
    if semi:
        params = _params(ptext, "bad_via")
        if not params:
            raise _bad("bad_via", "empty parameter")
    else:
        params = {}
    return Via(transport, host, port, sent_by, params, (s, e), line)


def _split_via_values(buf: bytes, s: int, e: int) -> list[tuple[int, int]]:
    """Offsets of each comma-separated value in buf[s:e] (quotes respected)."""
    comma = buf.find(b",", s, e)
    if comma < 0:
        return [(s, e)]
    if buf.find(b'"', s, e) < 0:
        out: list[tuple[int, int]] = []
        start = s
        while comma >= 0:
            out.append((start, comma))
            start = comma + 1
            comma = buf.find(b",", start, e)
        out.append((start, e))
        return out
    return _comma_spans(buf, s, e, _VIA_SPECIALS)


def _digits(v: bytes, kind: str, limit: int) -> int:
    if len(v) > 12 or not v.isdigit():  # bytes.isdigit: ASCII digits only, non-empty
        raise _bad(kind, "not a number")
    n = int(v)
    if n > limit:
        raise _bad(kind, "number out of range")
    return n


class _Message:
    """Fields shared by requests and responses."""

    __slots__ = (
        "raw",
        "vias",
        "call_id",
        "cseq",
        "max_forwards",
        "content_length",
        "body",
        "headers_end",
        "header_block",
        "indexed",
        "_all",
        "headers_start",
        "_cache",
    )

    raw: bytes
    vias: list[Via]
    call_id: bytes
    cseq: tuple[int, bytes]
    max_forwards: int | None
    content_length: int | None
    body: bytes
    headers_end: int  # offset of the CRLF CRLF ending the header block
    # The public span API (what code outside this module reads of the header
    # block): a span is the [start, end) offsets of one header line's value
    # (after the colon, up to its CRLF, untrimmed) in ``raw`` and ``header_block``.
    # ``raw`` up to headers_end, folded lines (RFC 3261 §7.3.1) joined by spaces
    # at the same offsets: the text the spans index
    header_block: bytes
    # the spans of the headers the one pass indexes (_EAGER and those named by
    # index_header), by canonical name; the message's own dict: do not mutate
    indexed: dict[bytes, list[tuple[int, int]]]
    _all: dict[bytes, list[tuple[int, int]]] | None  # every header, built on demand
    headers_start: int  # offset of the first header line (past the start line's CRLF)
    _cache: dict[bytes, list[bytes]] | None

    def _spans(self, key: bytes) -> list[tuple[int, int]] | None:
        """Spans of canonical header ``key``: eager index, else the lazily built full one."""
        if key in _EAGER:
            return self.indexed.get(key)
        idx = self._all
        if idx is None:
            idx = self._all = self._index_all()
        return idx.get(key)

    def _index_all(self) -> dict[bytes, list[tuple[int, int]]]:
        # second pass over the (already validated) header block, RFC 3261 §7.3
        idx: dict[bytes, list[tuple[int, int]]] = {}
        pos = self.headers_start
        hend = self.headers_end
        if pos >= hend:
            return idx
        canon_of = _CANON
        for hline in self.header_block[pos:hend].split(b"\r\n"):
            colon = hline.find(b":")
            spelling = hline[:colon]
            name = canon_of.get(spelling)
            if name is None:
                name = _canonical_name(spelling)
            end = pos + len(hline)
            got = idx.get(name)
            if got is None:
                idx[name] = [(pos + colon + 1, end)]
            else:
                got.append((pos + colon + 1, end))
            pos = end + 2
        return idx

    def header(self, name: bytes) -> list[bytes]:
        """All values of header ``name`` (case-insensitive, compact forms), one per line."""
        key = name.lower()
        key = _COMPACT.get(key, key)
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        got = cache.get(key)
        if got is None:
            buf = self.header_block
            got = [buf[s:e].strip() for s, e in self._spans(key) or ()]
            cache[key] = got
        return got

    def spans(self, key: bytes) -> list[tuple[int, int]] | None:
        """Spans of header ``key``, a canonical name (lower-case full form, as
        ``index_header`` returns), or None when absent: the message's own list, not
        a copy (do not mutate); for the indexed headers a dict lookup."""
        if key in _EAGER:
            return self.indexed.get(key)
        return self._spans(key)

    def header_spans(self, name: bytes) -> list[tuple[int, int]]:
        """[start, end) of each line value of header ``name`` in ``raw`` (untrimmed)."""
        key = name.lower()
        return list(self._spans(_COMPACT.get(key, key)) or ())

    def has_header(self, name: bytes) -> bool:
        key = name.lower()
        return self._spans(_COMPACT.get(key, key)) is not None

    def header_line_start(self, value_start: int) -> int:
        """Offset of the first octet of the header line holding ``value_start``."""
        return self.header_block.rfind(b"\r\n", 0, value_start) + 2

    def _one(self, key: bytes) -> bytes:
        spans = self.indexed[key]
        s, e = spans[0]
        return self.header_block[s:e].strip()

    @property
    def pai(self) -> list[bytes]:
        """P-Asserted-Identity values (RFC 3325 §9.1), one per comma-separated entry."""
        spans = self.indexed.get(b"p-asserted-identity")  # eager: no second pass
        if spans is None:
            return []
        buf = self.header_block
        out: list[bytes] = []
        for s, e in spans:
            out.extend(split_commas(buf[s:e].strip()))
        return out

    @property
    def identity(self) -> bytes | None:
        """The first Identity header value (RFC 8224 §4), or None."""
        vals = self.header(b"identity")
        return vals[0] if vals else None

    @property
    def privacy(self) -> bytes | None:
        """The Privacy header value (RFC 3323 §4.2), or None."""
        spans = self.indexed.get(b"privacy")  # eager: no second pass
        if spans is None:
            return None
        buf = self.header_block
        return b";".join(buf[s:e].strip() for s, e in spans)


class Request(_Message):
    """A parsed SIP request; all fields are bytes slices of ``raw``."""

    __slots__ = ("method", "ruri", "version", "from_", "to")

    method: bytes
    ruri: bytes
    version: bytes
    from_: NameAddr
    to: NameAddr

    def __repr__(self) -> str:
        return f"<Request {self.method!r} {self.ruri!r}>"


class Response(_Message):
    """A parsed SIP response."""

    __slots__ = ("status", "reason", "_from", "_to", "_from_span", "_to_span")

    status: int
    reason: bytes
    _from: NameAddr | None
    _to: NameAddr | None
    _from_span: tuple[int, int]
    _to_span: tuple[int, int]

    def _name_addr(self, span: tuple[int, int]) -> NameAddr:
        try:
            return parse_name_addr(self.header_block[span[0] : span[1]])
        except SIPError as exc:
            exc.status = 0  # RFC 3261 §16.7: a broken response is dropped, never answered
            raise

    @property
    def from_(self) -> NameAddr:
        """The From value (RFC 3261 §20.20), parsed on first access; SIPError(0) if broken."""
        f = self._from
        if f is None:
            f = self._from = self._name_addr(self._from_span)
        return f

    @property
    def to(self) -> NameAddr:
        """The To value (RFC 3261 §20.39), parsed on first access; SIPError(0) if broken."""
        t = self._to
        if t is None:
            t = self._to = self._name_addr(self._to_span)
        return t

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason!r}>"


def _strip_leading_crlf(data: bytes) -> bytes:
    # RFC 5626 §3.5.1 keep-alives, RFC 3261 §7.5: ignore CRLFs before the start line
    i = 0
    n = len(data)
    while i < n and data[i] in b"\r\n":
        i += 1
    if i == n:
        raise SIPError(0, "keepalive", "only CRLF")
    return data[i:]


# Methods of RFC 3261 and its extensions (also the core's metric labels).
METHODS = frozenset(
    (
        b"INVITE",
        b"ACK",
        b"BYE",
        b"CANCEL",
        b"OPTIONS",
        b"REGISTER",
        b"PRACK",
        b"UPDATE",
        b"INFO",
        b"SUBSCRIBE",
        b"NOTIFY",
        b"REFER",
        b"MESSAGE",
        b"PUBLISH",
    )
)


def _request_line(line: bytes) -> Request:
    """Method SP Request-URI SP SIP-Version (RFC 3261 §7.1, §25.1)."""
    parts = line.split(b" ")
    if len(parts) == 3 and parts[0]:
        method, ruri, version = parts
    else:
        sp1 = line.find(b" ")
        sp2 = line.find(b" ", sp1 + 1)
        if sp1 <= 0 or sp2 < 0:
            raise _bad("bad_request_line", "need Method SP Request-URI SP SIP-Version")
        method = line[:sp1]
        ruri = line[sp1 + 1 : sp2]
        version = line[sp2 + 1 :]
    if method not in METHODS:
        if method.translate(None, _TOKEN):
            raise _bad("bad_request_line", "method is not a token")
        if method.upper() in METHODS:
            # RFC 3261 §7.1: methods are case-sensitive, so ``invite`` is an
            # extension method here, forwarded unscreened, while Kamailio
            # (strncasecmp) and other parsers read an INVITE
            raise _bad("bad_request_line", "a standard method in another case")
    if version != b"SIP/2.0":
        # RFC 3261 §8.2.2... badvers: a well-formed other version is 505
        if (
            version[:4].upper() == b"SIP/"
            and not version.translate(None, _DIGITS + b"SIPsip/.")
            and version.upper() != b"SIP/2.0"
        ):
            raise SIPError(505, "version", version.decode("latin-1"))
        raise _bad("bad_request_line", "bad SIP-Version (LWS in Request-URI?)")
    # RFC 3261 §25.1: Request-URI has no LWS, scheme ":" ... (ltgtruri, lwsruri)
    if ruri[:4] == b"sip:":
        colon = 3
        sip = True
    else:
        colon = ruri.find(b":")
        if (
            colon <= 0
            or ruri[:1].translate(None, _ALNUM[:52])
            or ruri[:colon].translate(None, _SCHEME)
        ):
            raise _bad("bad_request_line", "bad Request-URI")
        scheme = ruri[:colon].lower()
        sip = scheme == b"sip" or scheme == b"sips"
    if ruri.translate(None, _URI_FORBIDDEN) != ruri:
        raise _bad("bad_request_line", "bad Request-URI")
    if sip and ruri.find(b"?") >= 0:
        # RFC 3261 §19.1.5: headers are not allowed in a Request-URI (escruri)
        at = ruri.rfind(b"@")
        if ruri.find(b"?", at + 1 if at >= 0 else colon) >= 0:
            raise _bad("bad_request_line", "headers in Request-URI")
    req = Request()
    req.method = method
    req.ruri = ruri
    req.version = version
    return req


def _status_line(line: bytes) -> Response:
    """SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §7.2)."""
    if line[:8] != b"SIP/2.0 ":
        raise SIPError(0, "version", "response version")
    code = line[8:11]
    if len(code) != 3 or not code.isdigit() or line[11:12] not in (b" ", b""):
        raise SIPError(0, "bad_status_line", "status code is not 3 digits")  # bigcode
    status = int(code)
    if status < 100 or status > 699:
        raise SIPError(0, "bad_status_line", "status code out of range")
    resp = Response()
    resp.status = status
    resp.reason = line[12:]
    return resp


class _Folded(Exception):
    """Raised by ``_scan_headers`` when the header block uses line folding."""


def _has_folding(buf: bytes) -> bool:
    """Whether ``buf`` holds a continuation line (RFC 3261 §7.3.1: CRLF then SP/HTAB)."""
    return buf.find(b"\r\n ") >= 0 or buf.find(b"\r\n\t") >= 0


def _odd_line(hline: bytes, colon: int) -> bytes:
    """A header line whose name is not a remembered spelling (or that has no colon).

    A continuation line (RFC 3261 §7.3.1 folding) always lands here too, as no
    remembered spelling starts with SP/HTAB: ``_scan_headers`` looks for
    folding in the whole block at the first such line, once per message.
    """
    if colon <= 0:
        raise _bad("bad_header", "header line without name or colon")
    spelling = hline[:colon]
    canon = _canonical_name(spelling)
    if spelling[:1] != b" " and spelling[:1] != b"\t":
        _remember(spelling, canon)
    return canon if canon in _EAGER else b""


def _scan_headers(
    buf: bytes, pos: int, hend: int, detect: bool
) -> dict[bytes, list[tuple[int, int]]]:
    """One pass over the header lines: every name is validated (RFC 3261 §7.3.1),
    the offsets of the _EAGER headers' values are recorded."""
    hdrs: dict[bytes, list[tuple[int, int]]] = {}
    fast = _FAST
    for hline in buf[pos:hend].split(b"\r\n"):
        colon = hline.find(b":")
        name = fast.get(hline[:colon]) if colon > 0 else None
        if name is None:
            if detect:
                # with ``detect`` set, any folding in the block restarts the scan
                # on the unfolded block, exactly as if it had been unfolded up
                # front; looked for once (per line, a block of made-up names
                # cost its length times its lines)
                if _has_folding(buf):
                    raise _Folded
                detect = False
            name = _odd_line(hline, colon)
        end = pos + len(hline)
        if name:
            got = hdrs.get(name)
            if got is None:
                hdrs[name] = [(pos + colon + 1, end)]
            else:
                got.append((pos + colon + 1, end))
        pos = end + 2
    return hdrs


_ScanFn = Callable[[bytes, int, int, dict[bytes, bytes]], dict[bytes, list[tuple[int, int]]] | None]
_ParseFn = Callable[[bytes], "Request | Response | None"]
_ViaFn = Callable[[bytes, int, int, int], "Via | None"]
_ResponseFn = Callable[[bytes, bytes], "tuple[int, Via, tuple[int, int]] | None"]
_RequestFn = Callable[
    ..., "tuple[bytes, int, bytes] | None"
]  # (data, host, port, route[, decline[, decline2]])
_KeyFn = Callable[[bytes, bool], "bytes | Literal[False] | None"]  # relay.top_key / initial_key
try:  # built from _scan.c by pip install; the pure-Python code is the reference
    if os.environ.get("SIPSCREEN_NO_C"):  # read once, at import: CI's leg without C
        raise ImportError("SIPSCREEN_NO_C is set: the pure-Python parser runs")
    from . import _scan as _built
except ImportError:  # pragma: no cover - no compiler at install time
    _C_SCAN: _ScanFn | None = None
    _C_PARSE: _ParseFn | None = None
    _C_VIA: _ViaFn | None = None
    _C_RESPONSE: _ResponseFn | None = None
    _C_REQUEST: _RequestFn | None = None
    _C_KEY: _KeyFn | None = None
else:
    _C_SCAN = _built.scan_headers
    try:  # the C parse fills these classes' slots; it checks each is a plain slot
        _built.init(Request, Response, Via, NameAddr, _FAST, _CSEQ_MAX, _MF_MAX, _CL_MAX)
    except (TypeError, AttributeError):  # pragma: no cover - a slot renamed without _scan.c
        _C_PARSE = _C_VIA = _C_RESPONSE = _C_REQUEST = _C_KEY = None  # test_sip_cscan.py fails
    else:
        _C_PARSE = _built.parse
        _C_VIA = _built.parse_via
        _C_RESPONSE = _built.scan_response
        _C_REQUEST = _built.scan_request
        _C_KEY = _built.top_key


class Parser:
    """The SIP parser: the C entry points it uses (_scan.c), each None where the
    Python reference runs, and ``parse``.

    The core holds one (``ProxyCore.parser``); ``PARSER`` is the process's
    default, which the module-level ``parse`` and proxy/sip/relay.py use.
    SIPSCREEN_NO_C (read once, at import) leaves every entry None whatever the
    switch says. ``set_accelerated`` switches a parser between the two for tests
    and benchmarks that compare them. The header-name caches (``_CANON``,
    ``_FAST``) stay module state: _scan.c keeps one process-wide name cache
    (``init``) that mirrors ``_FAST``.
    """

    __slots__ = ("c_scan", "c_parse", "c_via", "c_response", "c_request", "c_key")

    c_scan: _ScanFn | None
    c_parse: _ParseFn | None
    c_via: _ViaFn | None
    c_response: _ResponseFn | None  # relay.scan_response in C
    c_request: _RequestFn | None  # relay.scan_request (C only)
    c_key: _KeyFn | None  # relay.top_key / initial_key in C

    def __init__(self, accelerated: bool = True) -> None:
        self.c_scan = None
        self.set_accelerated(accelerated)

    @property
    def accelerated(self) -> bool:
        """True when the common path runs in C (proxy/sip/_scan.c)."""
        return self.c_scan is not None

    def set_accelerated(self, on: bool) -> bool:
        """Use the C entry points (when built) or none; returns the old setting."""
        old = self.c_scan is not None
        self.c_scan = _C_SCAN if on else None
        self.c_parse = _C_PARSE if on else None
        self.c_via = _C_VIA if on else None
        self.c_response = _C_RESPONSE if on else None
        self.c_request = _C_REQUEST if on else None
        self.c_key = _C_KEY if on else None
        return old

    def parse(self, data: bytes) -> Request | Response:
        """Parse one SIP message; raises ``SIPError`` (status 0 for responses)."""
        c_parse = self.c_parse
        if c_parse is not None:
            # the common shapes in C (_scan.c); it declines (None) anything else
            msg = c_parse(data)
            if msg is not None:
                return msg
        if data[:1] in (b"\r", b"\n") or not data:
            if not data:
                raise SIPError(0, "empty", "empty datagram")
            data = _strip_leading_crlf(data)
        if data[:4] == b"SIP/":
            try:
                return _parse(data, False, self.c_scan)
            except SIPError as exc:
                # RFC 3261 §16.7 / §18.1.2: a broken response is discarded, never answered
                exc.status = 0
                raise
        return _parse(data, True, self.c_scan)


PARSER = Parser()
# parse(data): one SIP message with the default PARSER (no wrapper call)
parse = PARSER.parse


def index_header(name: bytes) -> bytes:
    """Index header ``name`` in the one pass over the header block, as the _EAGER ones.

    After this, ``msg.has_header(name)`` / ``header_spans(name)`` cost a dict
    lookup (no second pass over the block) for every message parsed from
    then on. The core calls it once at start for the trusted provider header
    it strips from untrusted callers. Every remembered spelling of the name
    is re-pointed at its canonical name and the C name cache (which mirrors
    ``_FAST``) is reset; returns the canonical name.
    """
    global _EAGER
    canon = _canonical_name(name)
    if canon in _EAGER:
        return canon
    _EAGER = _EAGER | {canon}
    for spelling, c in list(_CANON.items()):
        if c == canon:
            _FAST[spelling] = canon
    for spelling in (name, name.lower(), name.upper(), name.title()):
        if spelling in _CANON:
            _FAST[spelling] = canon
        else:
            _remember(spelling, canon)
    if _C_PARSE is not None:  # init() clears the C cache of _FAST's answers
        _built.init(Request, Response, Via, NameAddr, _FAST, _CSEQ_MAX, _MF_MAX, _CL_MAX)
    return canon


def accelerated() -> bool:
    """True when the common path of the parser runs in C (proxy/sip/_scan.c)."""
    return PARSER.accelerated


def set_accelerated(on: bool) -> bool:
    """Switch the default PARSER to C (when built) or the Python reference; returns the old one.

    For tests and benchmarks that compare the two; both give the same message
    or the same error (tests/unit/test_sip_cscan.py).
    """
    return PARSER.set_accelerated(on)


# What _stray_nul looks at: line ends, quotes, backslashes and NULs
_NUL_WALK = re.compile(b'\r\n|["\\\\\x00]')


def _stray_nul(data: bytes, start: int, end: int) -> bool:
    """A NUL in ``data[start:end]`` that is not the second octet of a quoted-pair
    (``\\`` and one octet) inside a quoted string of its header line (RFC 3261
    §25.1). One pass that visits only line ends, quotes, backslashes and
    NULs: a line of thousands of escaped NULs costs their count, not their
    count times the line."""
    quoted = False
    skip = -1  # the octet a quoted-pair's backslash escapes
    for m in _NUL_WALK.finditer(data, start, end):
        i = m.start()
        c = data[i]
        if c == 0x0D:  # CRLF: a new header line (or a folded continuation)
            quoted = False
            skip = -1
        elif i == skip:
            continue
        elif c == 0:
            return True
        elif c == 0x22:  # DQUOTE
            quoted = not quoted
        elif quoted:  # a backslash inside a quoted string: a quoted-pair
            skip = i + 1
    return False


def _stray_line_end(data: bytes, end: int) -> bool:
    """A CR or LF in ``data[:end]`` (the start line and headers) that is not one
    half of a CRLF. RFC 3261 §25.1 allows them nowhere else, not in a quoted
    string or a quoted-pair either; a softswitch that ends lines at a bare LF
    (many do) would read ``Subject: x<LF>P-Asserted-Identity: <blocked>`` as a
    second header the screen read as part of the first."""
    crlf = data.count(b"\r\n", 0, end)
    return data.count(b"\n", 0, end) != crlf or data.count(b"\r", 0, end) != crlf


def _parse(data: bytes, is_request: bool, c_scan: _ScanFn | None) -> Request | Response:
    """The Python reference parse (RFC 3261 §7), one step per helper: start line
    (§7.1, §7.2), header index (§7.3), mandatory headers (§8.1.1), then each
    field's reader."""
    eol = data.find(b"\r\n")
    if eol <= 0:
        raise SIPError(0, "bad_request_line", "no CRLF after start line")
    hend = data.find(b"\r\n\r\n", eol)
    if hend < 0:
        # lenient: a datagram ending right after the last header line
        hend = len(data) - 2 if data.endswith(b"\r\n") else len(data)
        body_start = len(data)
    else:
        body_start = hend + 4
    nul = data.find(b"\0", 0, body_start)
    # RFC 3261 §25.1: a raw NUL is only a quoted-pair's second octet in a quoted
    # string (RFC 4475 §3.1.1.2 "intmeth": a display name); anywhere else a C
    # reader of the header would end the value there and read another caller
    # ID than the screen
    if nul >= 0 and _stray_nul(data, data.rfind(b"\r\n", 0, nul) + 1, body_start):
        raise _bad("bad_header", "NUL byte outside a quoted string")
    if _stray_line_end(data, body_start):
        raise _bad("bad_header", "a CR or LF that is not part of a CRLF")
    msg: Request | Response
    if is_request:
        msg = _request_line(data[:eol])
        method: bytes | None = msg.method
    else:
        msg = _status_line(data[:eol])
        method = None

    hstart = eol + 2
    block = data[:hend]
    buf, hdrs = _index_headers(block, hstart, hend, c_scan)
    if buf is not block and is_request:
        # Folded lines (RFC 3261 §7.3.1), joined by spaces at the same offsets: a
        # request is forwarded so (the RFC lets a proxy unfold), and a softswitch
        # that does not unfold and trims a continuation line's leading space
        # cannot find a header (a P-Asserted-Identity) the screen read as the
        # tail of another
        data = buf + data[hend:]
    _check_mandatory(hdrs)
    via_sp = hdrs[b"via"]
    from_sp = hdrs[b"from"]
    to_sp = hdrs[b"to"]
    cid_sp = hdrs[b"call-id"]
    cseq_sp = hdrs[b"cseq"]
    mf_sp = hdrs.get(b"max-forwards")
    cl_sp = hdrs.get(b"content-length")

    msg.raw = data
    msg.header_block = buf
    msg.indexed = hdrs
    msg._all = None
    msg.headers_start = hstart
    msg._cache = None
    msg.headers_end = hend

    msg.vias = _read_vias(buf, via_sp)
    _read_call_id_cseq(msg, buf, cid_sp[0], cseq_sp[0], method)
    _read_from_to(msg, buf, from_sp[0], to_sp[0])
    if mf_sp is None:
        msg.max_forwards = None
    else:
        s, e = mf_sp[0]
        msg.max_forwards = _digits(buf[s:e].strip(), "bad_max_forwards", _MF_MAX)

    _read_body(msg, data, buf, body_start, cl_sp)
    if method is not None:
        _check_request_headers(buf, hdrs)
    return msg


def _index_headers(
    buf: bytes, hstart: int, hend: int, c_scan: _ScanFn | None
) -> tuple[bytes, dict[bytes, list[tuple[int, int]]]]:
    """RFC 3261 §7.3 header fields: (the block, folding joined, and the index of
    the eager headers' value spans)."""
    hdrs: dict[bytes, list[tuple[int, int]]]
    if hstart < hend:
        # the C scan (_scan.c) answers for blocks of remembered spellings only
        scanned = c_scan(buf, hstart, hend, _FAST) if c_scan is not None else None
        if scanned is not None:
            hdrs = scanned
        else:
            try:
                hdrs = _scan_headers(buf, hstart, hend, True)
            except _Folded:
                # RFC 3261 §7.3.1: folding is equivalent to a single SP; same length keeps offsets
                buf = buf.replace(b"\r\n ", b"   ").replace(b"\r\n\t", b"  \t")
                hdrs = _scan_headers(buf, hstart, hend, False)
    else:
        hdrs = {}

    return buf, hdrs


def _check_mandatory(hdrs: dict[bytes, list[tuple[int, int]]]) -> None:
    """RFC 3261 §8.1.1 mandatory headers, §7.3.1 single-value headers at most once."""
    for name in _MANDATORY:  # RFC 3261 §8.1.1
        if name not in hdrs:
            raise _bad("missing_header", name.decode())
    for name in _SINGLE:  # RFC 3261 §7.3.1
        got = hdrs.get(name)
        if got is not None and len(got) > 1:
            raise _bad("duplicate_header", name.decode())


def _read_vias(buf: bytes, via_sp: list[tuple[int, int]]) -> list[Via]:
    """RFC 3261 §20.42 Via, each value read by ``parse_via``."""
    # Via: all values in order, several per line allowed (RFC 3261 §7.3.1)
    vias: list[Via] = []
    for s, e in via_sp:
        ln = (buf.rfind(b"\r\n", 0, s) + 2, e + 2)  # the line's own CRLF included
        if buf.find(b",", s, e) < 0:
            vias.append(parse_via(buf, s, e, ln))
        else:
            for vs, ve in _split_via_values(buf, s, e):
                vias.append(parse_via(buf, vs, ve, ln))
    return vias


def _read_call_id_cseq(
    msg: Request | Response,
    buf: bytes,
    cid: tuple[int, int],
    cseq: tuple[int, int],
    method: bytes | None,
) -> None:
    """RFC 3261 §20.8 Call-ID, §20.16 CSeq (its method the request's)."""
    s, e = cid
    call_id = buf[s:e].strip()
    if not call_id or call_id.find(b" ") >= 0:
        raise _bad("bad_header", "bad Call-ID")
    msg.call_id = call_id

    # CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16)
    s, e = cseq
    cparts = buf[s:e].split()
    if len(cparts) != 2:
        raise _bad("bad_cseq", "CSeq needs number and method")
    cmethod = cparts[1]
    msg.cseq = (_digits(cparts[0], "bad_cseq", _CSEQ_MAX), cmethod)
    if method is not None and cmethod != method:
        raise _bad("cseq_mismatch", "CSeq method differs from request method")


def _read_from_to(
    msg: Request | Response, buf: bytes, from_sp: tuple[int, int], to_sp: tuple[int, int]
) -> None:
    """RFC 3261 §20.20 From, §20.39 To: read now in a request, on access in a response."""
    if isinstance(msg, Request):
        # requests: From/To validated now (RFC 4475 quotbal, baddn, badaspec answer 400)
        s, e = from_sp
        msg.from_ = parse_name_addr(buf[s:e])
        s, e = to_sp
        msg.to = parse_name_addr(buf[s:e])
    else:
        # responses: a proxy never reads their From/To (RFC 3261 §16.7); decoded on access
        msg._from_span = from_sp
        msg._to_span = to_sp
        msg._from = None
        msg._to = None


def _read_body(
    msg: Request | Response,
    data: bytes,
    buf: bytes,
    body_start: int,
    cl_sp: list[tuple[int, int]] | None,
) -> None:
    """RFC 3261 §20.14 Content-Length and §18.3 framing of the body."""
    avail = len(data) - body_start
    if cl_sp is None:
        msg.content_length = None
        msg.body = data[body_start:] if avail > 0 else b""
    else:
        s, e = cl_sp[0]
        n = _digits(buf[s:e].strip(), "content_length", _CL_MAX)
        msg.content_length = n
        if n > avail:
            # RFC 4475 §3.1.2.2 clerr: Content-Length larger than the datagram
            raise _bad("content_length", "Content-Length larger than the body")
        msg.body = data[body_start : body_start + n] if n else b""
        if n < avail:
            # RFC 3261 §18.3: octets past Content-Length are discarded (dblreq)
            msg.raw = data[: body_start + n]


def _check_request_headers(buf: bytes, hdrs: dict[bytes, list[tuple[int, int]]]) -> None:
    """Request-only checks of the RFC 4475 torture tests (§20.17 Date, §20.10 Contact)."""
    # RFC 4475 §3.1.2.11 baddate: only GMT is allowed (RFC 3261 §20.17)
    got = hdrs.get(b"date")
    if got is not None:
        for s, e in got:
            if not buf[s:e].strip().endswith(b"GMT"):
                raise _bad("bad_header", "Date not in GMT")
    # RFC 4475 §3.1.2.12 regbadct: URI with '?' outside <> in Contact
    got = hdrs.get(b"contact")
    if got is not None:
        for s, e in got:
            c = buf[s:e]
            if c.find(b"?") >= 0 and c.find(b"<") < 0:
                raise _bad("bad_header", "Contact URI with headers outside <>")


def frame_stream(buf: bytes | bytearray) -> tuple[bytes | None, int]:
    """Frame one message from a stream (RFC 3261 §18.3).

    Returns (message, consumed). ``message`` is None when more octets are
    needed; ``consumed`` may still be > 0 (leading CRLF keep-alives skipped,
    RFC 5626 §3.5.1). Raises SIPError(400) without Content-Length, SIPError(0)
    when the header block exceeds ``MAX_MESSAGE``.
    """
    n = len(buf)
    i = 0
    while i < n and buf[i] in b"\r\n":
        i += 1
    if i == n:
        return None, i
    hend = buf.find(b"\r\n\r\n", i)
    if hend < 0:
        if n - i > MAX_MESSAGE:
            raise SIPError(0, "too_large", "header block too large")
        return None, i
    cl: int | None = None
    pos = buf.find(b"\r\n", i) + 2
    while pos < hend:
        nl = buf.find(b"\r\n", pos, hend)
        if nl < 0:
            nl = hend
        colon = buf.find(b":", pos, nl)
        if colon > pos:
            name = bytes(buf[pos:colon]).rstrip(b" \t").lower()
            if name == b"content-length" or name == b"l":
                v = bytes(buf[colon + 1 : nl]).strip()
                # folded continuation lines hold no digits we care about
                cl = _digits(v, "content_length", _CL_MAX)
        pos = nl + 2
    if cl is None:
        raise _bad("content_length", "no Content-Length on a stream")  # RFC 3261 §18.3
    total = hend + 4 + cl
    if total - i > MAX_MESSAGE:
        raise SIPError(0, "too_large", "message too large")
    if n < total:
        return None, i
    return bytes(buf[i:total]), total


def build_response(
    req: Request,
    status: int,
    reason: bytes,
    to_tag: bytes | None,
    extra_headers: bytes = b"",
) -> bytes:
    """A response to ``req`` per RFC 3261 §8.2.6.2 (Via, From, To, Call-ID, CSeq copied).

    ``extra_headers`` are complete header lines, each ending in CRLF.
    """
    raw = req.raw
    parts = [status_line(status, reason)]
    for via in req.vias:
        s, e = via.span
        parts.append(b"Via: " + raw[s:e] + b"\r\n")
    to = req.to
    parts.append(b"From: " + req.from_.raw + b"\r\n")
    if to.tag is None and to_tag is not None and status > 100:
        parts.append(b"To: " + to.raw + b";tag=" + to_tag + b"\r\n")
    else:
        parts.append(b"To: " + to.raw + b"\r\n")
    parts.append(b"Call-ID: " + req.call_id + b"\r\n")
    parts.append(b"CSeq: %d %s\r\n" % req.cseq)
    if extra_headers:
        parts.append(extra_headers)
    parts.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(parts)


_ERR_COPY = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")


def build_error_response(
    data: bytes, err: SIPError, to_tag: bytes | None = None, extra: bytes = b""
) -> bytes | None:
    """Answer a request that failed to parse, copying its header lines verbatim.

    RFC 3261 §8.2.6.2 asks for Via/From/To/Call-ID/CSeq copied; for a broken
    message we copy those lines as they are. Returns None when there is no
    Via line at all (nothing to route the answer by: drop and count).
    """
    if err.status == 0:
        return None
    try:
        data = _strip_leading_crlf(data)
    except SIPError:
        return None
    hend = data.find(b"\r\n\r\n")
    if hend < 0:
        hend = len(data)
    block = data[:hend].replace(b"\r\n ", b"   ").replace(b"\r\n\t", b"  \t")
    lines = block.split(b"\r\n")[1:]
    out = [status_line(err.status, err.reason.encode("latin-1", "replace"))]
    have_via = False
    seen: set[bytes] = set()
    for ln in lines:
        colon = ln.find(b":")
        if colon <= 0:
            continue
        name = ln[:colon].rstrip(b" \t").lower()
        if name not in _ERR_COPY:
            continue
        value = ln[colon + 1 :].strip()
        canon = _COMPACT.get(name, name)
        if canon == b"via":
            have_via = True
            out.append(b"Via: " + value + b"\r\n")
        elif canon in seen:
            continue  # a duplicated single-value header (multi01): copy the first
        elif canon == b"to":
            seen.add(canon)
            if to_tag is not None and b";tag=" not in value.replace(b" ", b"").lower():
                value = value + b";tag=" + to_tag
            out.append(b"To: " + value + b"\r\n")
        else:
            seen.add(canon)
            title = {b"from": b"From", b"call-id": b"Call-ID", b"cseq": b"CSeq"}[canon]
            out.append(title + b": " + value + b"\r\n")
    if not have_via:
        return None
    if err.status == 420 and err.detail:
        out.append(b"Unsupported: " + err.detail.encode("latin-1") + b"\r\n")
    out.append(extra)  # complete header lines, each ending in CRLF
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(out)
