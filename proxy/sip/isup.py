"""The calling numbers of an ISUP IAM a SIP-T / SIP-I INVITE carries (sans-I/O).

How this works: a softswitch that interworks with the PSTN (SIP-T, RFC 3372;
SIP-I, ITU-T Q.1912.5) may receive, next to the SDP, the ISUP Initial
Address Message the call would have on a TDM trunk, as an
``application/ISUP`` body (RFC 3204), usually one part of a
``multipart/mixed`` body (RFC 2046 §5.1). Such a softswitch builds the IAM
it sends on from the encapsulated one, so the Calling Party Number there is
the number the called party's phone shows, whatever the SIP headers say: a
blocked number in it, behind a clean ``From`` and ``P-Asserted-Identity``,
would pass a screen that reads only the headers.

``calling_numbers(content_type, body)`` returns the calling numbers of every
IAM in the body as ``(nature_of_address, digits)`` pairs: the Calling Party
Number (parameter 0x0A, ITU-T Q.763 §3.10, ANSI T1.113) and each Generic
Number / Generic Address (0xC0, Q.763 §3.26) whose qualifier names a calling
number (2 and 3: supplemental user-provided calling number; 6: additional
calling party number). A body that is not ISUP, a multipart body that never
names ISUP, or an ISUP message that is not an IAM, gives ``[]``. A body
the reader cannot follow raises ``BadIsup``: an IAM cut short, an optional
part that does not end, a multipart body that names ISUP (``isup``
anywhere in it, any case) without its boundary or where no ISUP part was
found (a part this reader cannot delimit, e.g. one with bare-LF lines, that
a lenient softswitch may still read), nesting deeper than ``_MAX_DEPTH``,
a part encoding other than binary/7bit/8bit/base64. The screen refuses what it cannot read
rather than skip it (proxy/screen.py).

The layouts: RFC 3204 §4 encapsulates the message from its message type code
(no routing label, no CIC). An IAM (type 0x01) has a mandatory fixed part of
five octets (ITU: nature of connection, forward call indicators (2), calling
party's category, transmission medium requirement) or four (ANSI: no
transmission medium requirement) followed by the pointers of its mandatory
variable part (ITU: the Called Party Number; ANSI: the User Service
Information and the Called Party Number), so in both the pointer to the
optional part is octet 7: each pointer counts from its own octet, and a
zero pointer means no optional part. The optional part is a list of
(code, length, value) ending in a zero code. A number parameter is one
octet of odd/even indicator (bit 8) and nature of address (bits 7-1), one
octet of numbering plan and presentation, then the address digits as BCD,
two per octet, the low nibble first; an odd count leaves the last high
nibble as filler. Generic numbers have their qualifier octet first.
"""

from __future__ import annotations

import binascii

__all__ = ["BadIsup", "calling_numbers", "may_carry_isup"]

IAM = 0x01
_CALLING_PARTY_NUMBER = 0x0A
_GENERIC_NUMBER = 0xC0
# Q.763 §3.26 number qualifier / T1.113 type of address: the calling numbers
_CALLING_QUALIFIERS = frozenset((0x02, 0x03, 0x06))
_MAX_DEPTH = 4  # multipart nesting (RFC 5621 allows nesting; SIP-T uses one level)
_BCD = "0123456789"


class BadIsup(Exception):
    """An ISUP body (or the multipart body around it) the reader cannot follow."""


def may_carry_isup(content_type: bytes) -> bool:
    """A Content-Type value under which the body may hold an ISUP IAM: ``application/ISUP``
    or any ``multipart/*`` (case-insensitive; RFC 2045 §5.1)."""
    low = content_type.lower()
    return b"isup" in low or b"multipart" in low


def _media(content_type: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """(type/subtype lower-cased, parameters with lower-cased names) of a
    Content-Type value (RFC 2045 §5.1; a quoted value loses its quotes). The
    type/subtype loses any whitespace: SIP's SLASH allows it on either side
    of the ``/`` (RFC 3261 §25.1), and ``application / ISUP`` is application/ISUP
    to a softswitch."""
    head, _, rest = content_type.partition(b";")
    params: dict[bytes, bytes] = {}
    while rest:
        name, eq, rest = rest.partition(b"=")
        if not eq:
            break
        rest = rest.lstrip()
        if rest[:1] == b'"':
            end = rest.find(b'"', 1)
            if end < 0:
                raise BadIsup("unterminated quoted parameter in a Content-Type")
            value, rest = rest[1:end], rest[end + 1 :]
            rest = rest.partition(b";")[2]
        else:
            value, _, rest = rest.partition(b";")
        params[name.strip().lower()] = value.strip()
    return b"".join(head.split()).lower(), params


def calling_numbers(content_type: bytes, body: bytes) -> list[tuple[int, str]]:
    """The (nature of address, digits) of every calling number of every IAM in
    ``body`` (module docstring); [] for a body that holds none; BadIsup for
    one the reader cannot follow."""
    return _numbers(content_type, body, 0)[0]


def _numbers(content_type: bytes, body: bytes, depth: int) -> tuple[list[tuple[int, str]], bool]:
    """(calling_numbers, whether an ISUP body was found) of one body."""
    media, params = _media(content_type)
    if media == b"application/isup":
        return _iam_numbers(body), True
    if not media.startswith(b"multipart/") or b"isup" not in body.lower():
        # a part's Content-Type is text even when its content is base64: a
        # multipart body that never names ISUP holds none (and is not read)
        return [], False
    if depth >= _MAX_DEPTH:
        raise BadIsup(f"multipart bodies nested more than {_MAX_DEPTH} deep")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadIsup("a multipart body without a boundary")
    found: list[tuple[int, str]] = []
    seen = False
    for headers, part in _parts(body, boundary):
        ctype = headers.get(b"content-type", b"text/plain")
        if may_carry_isup(ctype):
            more, isup = _numbers(ctype, _decoded(headers, part), depth + 1)
            found += more
            seen = seen or isup
    if not seen:
        raise BadIsup("a multipart body names ISUP but no ISUP part could be read")
    return found, seen


def _parts(body: bytes, boundary: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    """The (headers, content) of each part of a multipart body (RFC 2046 §5.1.1):
    a delimiter is a line of ``--boundary`` (then only spaces or tabs) at the
    start of the body or after a CRLF, the close delimiter ``--boundary--``;
    ``--boundary`` followed by anything else is content (binary ISUP may hold
    those octets). The preamble before the first delimiter and the epilogue
    after the close one are ignored. Header names lower-cased; a part with no
    delimiter after it is an error."""
    delim = b"--" + boundary
    pos = 0 if _delimiter_line(body, 0, delim) else _next_delimiter(body, delim, 0)
    parts: list[tuple[dict[bytes, bytes], bytes]] = []
    while True:
        if pos < 0:
            raise BadIsup("a multipart body without its close delimiter")
        end = pos + len(delim)
        if body[end : end + 2] == b"--":
            return parts  # the close delimiter
        start = body.find(b"\r\n", end) + 2
        nxt = _next_delimiter(body, delim, start)
        if nxt >= 0:
            parts.append(_part(body[start : nxt - 2]))
        pos = nxt


def _delimiter_line(body: bytes, at: int, delim: bytes) -> bool:
    """``body[at:]`` starts a delimiter line: ``delim`` then ``--``, or only
    spaces and tabs to a CRLF."""
    if not body.startswith(delim, at):
        return False
    end = at + len(delim)
    if body[end : end + 2] == b"--":
        return True
    eol = body.find(b"\r\n", end)
    return eol >= 0 and not body[end:eol].strip(b" \t")


def _next_delimiter(body: bytes, delim: bytes, start: int) -> int:
    """Where the next delimiter line after ``start`` begins (past its CRLF), or -1."""
    needle = b"\r\n" + delim
    at = body.find(needle, max(start - 2, 0))
    while at >= 0:
        if _delimiter_line(body, at + 2, delim):
            return at + 2
        at = body.find(needle, at + 2)
    return -1


def _part(raw: bytes) -> tuple[dict[bytes, bytes], bytes]:
    """One part: its header fields (RFC 2045/822 style, folded lines joined) and content."""
    if not raw:
        return {}, b""
    if raw.startswith(b"\r\n"):
        return {}, raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        raise BadIsup("a body part without the empty line after its headers")
    headers: dict[bytes, bytes] = {}
    last = b""
    for line in raw[:end].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and last:
            headers[last] += b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise BadIsup("a body part header line without a colon")
        last = name.strip().lower()
        if last in headers:
            raise BadIsup(f"a body part with two {last.decode('latin-1')} header lines")
        headers[last] = value.strip()
    return headers, raw[end + 4 :]


def _decoded(headers: dict[bytes, bytes], part: bytes) -> bytes:
    """A part's content with its Content-Transfer-Encoding undone (RFC 2045 §6)."""
    cte = headers.get(b"content-transfer-encoding", b"binary").lower()
    if cte in (b"binary", b"7bit", b"8bit"):
        return part
    if cte == b"base64":
        try:
            return binascii.a2b_base64(part)
        except binascii.Error as exc:
            raise BadIsup("a base64 ISUP part that does not decode") from exc
    raise BadIsup(f"an ISUP part in Content-Transfer-Encoding {cte.decode('latin-1')}")


def _iam_numbers(msg: bytes) -> list[tuple[int, str]]:
    """The calling numbers of one encapsulated ISUP message (module docstring)."""
    if not msg:
        raise BadIsup("an empty ISUP body")
    if msg[0] != IAM:
        return []  # no calling number in other messages an INVITE may carry
    if len(msg) < 8:
        raise BadIsup("an IAM shorter than its mandatory part")
    ptr = msg[7]
    if ptr == 0:
        return []  # no optional part
    pos = 7 + ptr
    found: list[tuple[int, str]] = []
    while True:
        if pos >= len(msg):
            raise BadIsup("an IAM whose optional part does not end")
        code = msg[pos]
        if code == 0:
            return found
        if pos + 1 >= len(msg) or pos + 2 + msg[pos + 1] > len(msg):
            raise BadIsup(f"an IAM parameter 0x{code:02X} runs past the message")
        value = msg[pos + 2 : pos + 2 + msg[pos + 1]]
        if code == _CALLING_PARTY_NUMBER:
            found.append(_number(value))
        elif code == _GENERIC_NUMBER and value[:1] and value[0] in _CALLING_QUALIFIERS:
            found.append(_number(value[1:]))
        pos += 2 + msg[pos + 1]


def _number(value: bytes) -> tuple[int, str]:
    """(nature of address, digits) of a number parameter's value: the filler of an
    odd count and trailing ST (15) nibbles dropped; another nibble that is no
    digit (11 and 12 are codes) stays as ``x`` (no number)."""
    if len(value) < 2:
        raise BadIsup("a number parameter shorter than its two indicator octets")
    nibbles: list[int] = []
    for octet in value[2:]:
        nibbles.append(octet & 0x0F)
        nibbles.append(octet >> 4)
    if value[0] & 0x80 and nibbles:
        nibbles.pop()  # the filler of an odd count
    while nibbles and nibbles[-1] == 0x0F:
        nibbles.pop()
    return value[0] & 0x7F, "".join(_BCD[n] if n < 10 else "x" for n in nibbles)
