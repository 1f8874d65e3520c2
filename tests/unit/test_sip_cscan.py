"""The C header scan (proxy/sip/_scan.c) indexes a header block as the Python one does.

``scan_headers`` may decline (None) any block; when it answers, its dict must
equal what ``message._scan_headers`` returns for the same block, and a whole
``parse`` must give the same fields (or the same error) with and without it.
Corpus: every RFC 4475 message, the benchmark's messages, line-level mutations
and random byte edits (Hypothesis), and arbitrary bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_samples import EDIT_JUNK, EDIT_MODE, SIPP_INVITE, edit

from proxy.sip import message
from proxy.sip.message import SIPError, parse

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
TORTURE = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
C_SCAN = message._C_SCAN

# the SIPp INVITE with two Route lines, a PAI and a header no table names
SAMPLE = SIPP_INVITE.replace(
    b"Max-Forwards: 70\r\n",
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:127.0.0.1;lr>\r\n"
    b"Route: <sip:127.0.0.2;lr>\r\n"
    b'P-Asserted-Identity: "C" <sip:+12027621401@carrier.example>\r\n'
    b"X-Unknown-Header: x\r\n",
)


def test_the_c_scan_is_built() -> None:
    """CI installs with a compiler: a silent fallback to Python would hide a build break."""
    if os.environ.get("SIPSCREEN_ALLOW_PURE_PYTHON"):
        pytest.skip("pure-Python install allowed by SIPSCREEN_ALLOW_PURE_PYTHON")
    assert C_SCAN is not None and message.accelerated()
    # and its parse took Request/Response/Via/NameAddr as they are (init checks every slot)
    assert message._C_PARSE is not None and message._C_RESPONSE is not None


needs_c = pytest.mark.skipif(C_SCAN is None, reason="proxy/sip/_scan.c not built")


def _blocks(data: bytes) -> tuple[bytes, int, int] | None:
    eol = data.find(b"\r\n")
    if eol <= 0:
        return None
    hend = data.find(b"\r\n\r\n", eol)
    if hend < 0:
        hend = len(data) - 2 if data.endswith(b"\r\n") else len(data)
    if eol + 2 >= hend:
        return None
    return data[:hend], eol + 2, hend


def _python_scan(buf: bytes, pos: int, hend: int) -> object:
    try:
        return message._scan_headers(buf, pos, hend, True)
    except message._Folded:
        return "folded"
    except SIPError as exc:
        return ("error", exc.kind)


def check_scan(data: bytes) -> bool:
    """Compare both scans on ``data``'s header block; True when C answered."""
    got = _blocks(data)
    if got is None or C_SCAN is None:
        return False
    buf, pos, hend = got
    c = C_SCAN(buf, pos, hend, message._FAST)
    if c is None:
        return False
    assert c == _python_scan(buf, pos, hend), data
    return True


def _slots(obj: object) -> object:
    """Every __slots__ field of a parsed message, Via or NameAddr, recursively."""
    if isinstance(obj, list):
        return [_slots(x) for x in obj]
    if not isinstance(obj, message._Message | message.Via | message.NameAddr):
        return obj
    names = [n for cls in type(obj).__mro__ for n in getattr(cls, "__slots__", ())]
    return (type(obj).__name__, {n: _slots(getattr(obj, n, "<unset>")) for n in names})


def _fields(data: bytes) -> object:
    try:
        m = parse(data)
    except SIPError as exc:
        return ("error", exc.status, exc.kind)
    fields = _slots(m)
    # what is read later, on demand, from the offsets the parse kept
    lazy = [m.header(b"route"), m.header(b"p-asserted-identity"), m.header(b"x-unknown-header")]
    return fields, lazy


def c_parse_answers(data: bytes) -> bool:
    """True when the C parse takes ``data`` (rather than declining it to Python)."""
    return message._C_PARSE is not None and message._C_PARSE(data) is not None


def check_parse(data: bytes) -> bool:
    """Parse ``data`` with and without C: the same message or the same error.

    Returns True when the C parse answered (did not decline)."""
    old = message.set_accelerated(True)
    try:
        answered = c_parse_answers(data)
        with_c = _fields(data)
        message.set_accelerated(False)
        without = _fields(data)
    finally:
        message.set_accelerated(old)
    assert with_c == without, data
    return answered


def _line_mutations(msg: bytes) -> Iterator[bytes]:
    head, _, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(b":")
        for other in (name.lower(), name.upper(), name + b" ", b" " + name, b"", name + b"\t"):
            yield b"\r\n".join(lines[:i] + [other + colon + value] + lines[i + 1 :]) + (
                b"\r\n\r\n" + body
            )
        yield b"\r\n".join(lines[:i] + [name + value] + lines[i + 1 :]) + b"\r\n\r\n" + body
        yield b"\r\n".join(lines[:i] + [b" folded"] + lines[i:]) + b"\r\n\r\n" + body
        yield b"\r\n".join(lines[: i + 1] + lines[i:]) + b"\r\n\r\n" + body


@needs_c
def test_torture_messages() -> None:
    answered = 0
    for data in TORTURE:
        answered += check_scan(data)
        check_parse(data)
    assert answered >= 30  # the C scan takes most of them


@needs_c
def test_sample_and_its_mutations() -> None:
    parse(SAMPLE)  # remembers X-Unknown-Header: the C scan knows remembered spellings only
    assert check_scan(SAMPLE)
    for data in _line_mutations(SAMPLE):
        check_scan(data)
        check_parse(data)
    for data in TORTURE:
        for m in _line_mutations(data):
            check_scan(m)


@needs_c
def test_a_raw_nul_in_the_header_block_is_a_400_with_and_without_c() -> None:
    """A NUL byte in the start line or a header outside a quoted string (RFC 3261
    §25.1: only a quoted-pair holds one): the C parse declines it and both
    readers answer 400 bad_header; as a quoted-pair in a display name (RFC 4475
    "intmeth") it parses; in the body (any octets, RFC 3261 §7.4) it is data."""
    parse(SAMPLE)  # remembers X-Unknown-Header: the C scan knows remembered spellings only
    head, _, body = SAMPLE.partition(b"\r\n\r\n")
    for i in (head.find(b"From:") + 12, head.find(b"Call-ID:") + 10, 8):
        data = head[:i] + b"\0" + head[i:] + b"\r\n\r\n" + body
        assert not c_parse_answers(data)
        check_parse(data)
        with pytest.raises(SIPError) as exc:
            parse(data)
        assert (exc.value.status, exc.value.kind) == (400, "bad_header")
    for quoted, ok in ((b'"a\\\0b" <sip:', True), (b'"a\0b" <sip:', False), (b"\\\0<sip:", False)):
        data = head.replace(b"<sip:", quoted, 1) + b"\r\n\r\n" + body
        check_parse(data)
        if ok:
            assert parse(data).from_.uri.startswith(b"sip:")
        else:
            with pytest.raises(SIPError):
                parse(data)
    binary = head.replace(b"Content-Length: ", b"Subject: ") + b"\r\nContent-Length: 3\r\n\r\na\0b"
    assert check_parse(binary) and parse(binary).body == b"a\0b"


@needs_c
@pytest.mark.parametrize("method", [b"invite", b"Invite", b"bYE", b"ack", b"Options"])
def test_a_standard_method_in_another_case_is_a_400_with_and_without_c(method: bytes) -> None:
    """RFC 3261 §7.1: methods are case-sensitive, so ``invite`` would be an
    extension method, forwarded unscreened, while Kamailio and others read an
    INVITE. The C parse declines a method with a lower-case letter and the
    Python reader answers 400 bad_request_line; an extension method in any
    case still parses."""
    parse(SAMPLE)
    first, rest = SAMPLE.split(b" ", 1)
    data = method + b" " + rest.replace(b"CSeq: 1 " + first, b"CSeq: 1 " + method, 1)
    assert not c_parse_answers(data)
    check_parse(data)
    with pytest.raises(SIPError) as exc:
        parse(data)
    assert (exc.value.status, exc.value.kind) == (400, "bad_request_line")
    ext = b"xPing " + rest.replace(b"CSeq: 1 " + first, b"CSeq: 1 xPing", 1)
    check_parse(ext)  # C declines it (a lower-case letter), Python parses it
    assert parse(ext).method == b"xPing"


@needs_c
def test_a_bare_cr_or_lf_in_the_header_block_is_a_400_with_and_without_c() -> None:
    """RFC 3261 §25.1: CR and LF only as the CRLF that ends a line (a quoted-pair
    holds neither). A bare one inside a header value is a line end to a reader
    that ends lines at LF, which would then find a header (a
    P-Asserted-Identity) the screen read as part of another: the C parse and
    the lean relays decline, and the Python reader answers 400 bad_header. In
    the body (any octets, §7.4) they are data."""
    parse(SAMPLE)
    head, _, body = SAMPLE.partition(b"\r\n\r\n")
    for junk in (b"\n", b"\r", b"\n\r", b"\r\r\n"):
        for i in (head.find(b"Subject:") + 10, head.find(b"Call-ID:") + 10, 8):
            data = head[:i] + junk + head[i:] + b"\r\n\r\n" + body
            assert not c_parse_answers(data)
            check_parse(data)
            with pytest.raises(SIPError) as exc:
                parse(data)
            assert (exc.value.status, exc.value.kind) == (400, "bad_header"), (junk, i)
    quoted = head.replace(b'"', b'"a\\\n', 1) + b"\r\n\r\n" + body  # "a\<LF>: not a quoted-pair
    with pytest.raises(SIPError):
        parse(quoted)
    binary = head.replace(b"Content-Length: ", b"Subject: ") + b"\r\nContent-Length: 3\r\n\r\na\nb"
    assert check_parse(binary) and parse(binary).body == b"a\nb"


@needs_c
@pytest.mark.parametrize("header", [b"From:", b"To:"])
def test_a_from_or_to_parameter_that_is_no_gen_value_is_a_400_with_and_without_c(
    header: bytes,
) -> None:
    """RFC 3261 §25.1: a From/To parameter's value is a token, a host or a quoted
    string. ``;tag=1, <sip:+1...@h>`` (or another parameter holding ``<``, ``>``,
    a quote or a space) is a second URI to a reader that splits at the comma:
    400 bad_header, the C parse declining it; quoted strings, IPv6 references
    and other odd octets (a vendor's unquoted URI) still parse, the same with
    and without C."""
    parse(SAMPLE)
    head, _, body = SAMPLE.partition(b"\r\n\r\n")
    start = head.find(b"\r\n" + header) + 2
    end = head.find(b"\r\n", start)
    line = head[start:end]
    cut = line.find(b";tag=")
    base = line if cut < 0 else line[:cut]
    for params, ok in (
        (b";tag=a1, <sip:+12127369999@h>", False),
        (b";tag=a1,<sip:+12127369999@h>", False),
        (b";tag=a1 <sip:+12127369999@h>", False),
        (b";tag=a1;x=<sip:+12127369999@h>", False),
        (b";tag=a<b", False),
        (b';x=a"b', False),
        (b';tag=a1;x="a, <sip:+1@h>"', True),
        (b";tag=a1;maddr=[2001:db8::1]", True),
        (b";tag=a1-B.2!%*_+`'~", True),
        (b";tag=a1 ; x = y", True),
        # odd but harmless octets stay accepted (a vendor's unquoted URI, braces)
        (b";tag={a1};x-orig=sip:+13015551234@h", True),
    ):
        data = head[:start] + base + params + head[end:] + b"\r\n\r\n" + body
        check_parse(data)
        if ok:
            parse(data)
        else:
            assert not c_parse_answers(data)
            with pytest.raises(SIPError) as exc:
                parse(data)
            assert (exc.value.status, exc.value.kind) == (400, "bad_header"), params


@needs_c
def test_bounds_are_clamped() -> None:
    buf = b"INVITE sip:a SIP/2.0\r\nVia: x"
    assert C_SCAN(buf, 22, 10_000, message._FAST) is None
    assert C_SCAN(buf, -1, 5, message._FAST) is None
    assert C_SCAN(buf, 30, 20, message._FAST) is None
    assert C_SCAN(b"", 0, 0, message._FAST) is None
    with pytest.raises(TypeError):
        C_SCAN(bytearray(buf), 22, len(buf), message._FAST)


@needs_c
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([SAMPLE, *TORTURE[:12]]),
    pos=st.integers(min_value=0, max_value=2000),
    junk=EDIT_JUNK,
    mode=EDIT_MODE,
)
def test_random_edits(base: bytes, pos: int, junk: bytes, mode: str) -> None:
    data = edit(base, pos, junk, mode)
    check_scan(data)
    check_parse(data)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for d in (data, b"OPTIONS sip:a SIP/2.0\r\n" + data):
        check_scan(d)
        check_parse(d)


# One line of the SIPp INVITE swapped for each variant: the shapes the C parse
# takes and the ones next to them it must decline or read exactly as Python.
_VARIANTS: dict[bytes, list[bytes]] = {
    b"INVITE sip:+13037621499@127.0.0.1:5060 SIP/2.0": [
        b"INVITE sips:+13037621499@127.0.0.1:5060 SIP/2.0",
        b"INVITE tel:+13037621499 SIP/2.0",
        b"INVITE sip:+13037621499@127.0.0.1:5060?subject=x SIP/2.0",
        b"INVITE sip:a@b?x@c SIP/2.0",
        b"INVITE  sip:+13037621499@127.0.0.1 SIP/2.0",
        b"INVITE sip:+13037621499@127.0.0.1  SIP/2.0",
        b"INVITE sip:+13037621499@127.0.0.1 SIP/2.0 ",
        b"INVITE sip:+13037621499@127.0.0.1 SIP/2.1",
        b"INVITE sip:+13037621499@127.0.0.1 sip/2.0",
        b"INVITE <sip:+13037621499@127.0.0.1> SIP/2.0",
        b"INVITE 1sip:a@b SIP/2.0",
        b"INVITE :a@b SIP/2.0",
        b"INVITE sip:a@\x80b SIP/2.0",
        b"INV\xc9TE sip:a@b SIP/2.0",
        b"INVITE sip:a@b\x7f SIP/2.0",
        # RFC 5031 service URNs (relayed by the core) and escaped digits
        b"INVITE urn:service:sos SIP/2.0",
        b"INVITE URN:Service:SOS.police SIP/2.0",
        b"INVITE urn:service:sos?x SIP/2.0",
        b"INVITE urn:isbn:0451450523 SIP/2.0",
        b"INVITE sip:+1%33037621499@127.0.0.1:5060 SIP/2.0",
        b"INVITE sip:%2B%31%33%30%33%37%36%32%31%34%39%39@127.0.0.1 SIP/2.0",
    ],
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0": [
        b"Via: SIP/2.0/TCP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/WS host.example;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/WSS h:1;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/SCTP h;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/WS h",
        b"Via: SIP/2.0/udp 127.0.0.3:5061;branch=z9hG4bK-6874-1-0",
        b"Via:SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0 \t",
        b"Via: \tSIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP  127.0.0.3:5061;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3 :5061;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:0;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:65535;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:65536;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:123456;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP [::1]:5061;branch=z9hG4bK-6874-1-0",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;;branch=x",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;BRANCH = z9hG4bK-6874-1-0 ;RPort",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=a;branch=b;rport=5;received=1.2.3.4",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0;rport",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=\x0bz\x0c;=x",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=x, SIP/2.0/UDP 10.0.0.1;branch=y",
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0\r\n"
        b"v: SIP/2.0/UDP 10.0.0.1;branch=y;received=10.0.0.9",
        b"Via: SIP / 2.0 / UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0",
    ],
    b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001": [
        b'From: "Alice" <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001',
        b'From: "Al\\"ice" <sip:+12027621401@127.0.0.3:5061>;tag=1',
        b'From: "Alice"<sip:+12027621401@127.0.0.3:5061>;tag=1',
        b'From: "Alice" x <sip:+12027621401@127.0.0.3:5061>;tag=1',
        b'From: "Alice <sip:+12027621401@127.0.0.3:5061>;tag=1',
        b"From: Alice  Smith <sip:+12027621401@127.0.0.3:5061>;tag=1",
        b"From: Al@ce <sip:+12027621401@127.0.0.3:5061>;tag=1",
        b"From: <sip:+12027621401@127.0.0.3:5061>",
        b"From: <sip:+12027621401@127.0.0.3:5061>;tag=",
        b"From: <sip:+12027621401@127.0.0.3:5061>;TAG=1",
        b"From: <sip:+12027621401@127.0.0.3:5061>;tag=1;x=y",
        b"From: <sip:+12027621401@127.0.0.3:5061> ;tag=1",
        b"From: <sip:+12027621401@127.0.0.3:5061>;tag=a b",
        b"From: <sip:+12027621401 @127.0.0.3>;tag=1",
        b"From: <+12027621401>;tag=1",
        b"From: <:x>;tag=1",
        b"From: <sip:a@b\x01>;tag=1",
        b"From: sip:+12027621401@127.0.0.3;tag=1",
        b"From: <sip:a@b>>;tag=1",
        b"From: <tel:+12027621401>;tag=\x80",
        # the identity shapes proxy/screen.py reads (escapes, password, quoted < and ,)
        b"From: <sip:+1%32027621401@127.0.0.3:5061>;tag=1",
        b"From: <sip:%2B12027621401@127.0.0.3>;tag=1",
        b"From: <sip:+12027621401:x@127.0.0.3>;tag=1",
        b'From: "a<sip:+14158675309@h>" <sip:+12027621401@h>;tag=1',
        b'From: "a,<sip:+14158675309@h>" <sip:+12027621401@h>;tag=1',
        b'From: "a\\"<sip:+14158675309@h>" <sip:+12027621401@h>;tag=1',
    ],
    b"To: <sip:+13037621499@127.0.0.1:5060>": [
        b"To: <urn:service:sos>",
        b"To: <sip:911@127.0.0.1>",
        b"To: <sip:9%311@127.0.0.1>",
        b'To: "911 <sip:911@h>" <sip:+13037621499@127.0.0.1>',
    ],
    b"Call-ID: 1-6874@127.0.0.3": [
        b"Call-ID:1-6874@127.0.0.3   ",
        b"Call-ID: 1-6874 @127.0.0.3",
        b"Call-ID: 1-6874\t@127.0.0.3",
        b"Call-ID: \x0b1-6874@127.0.0.3\x0c",
        b"Call-ID:   ",
    ],
    b"CSeq: 1 INVITE": [
        b"CSeq:1\tINVITE ",
        b"CSeq: 1 ACK",
        b"CSeq: 1 INVITE x",
        b"CSeq: INVITE",
        b"CSeq: 2147483647 INVITE",
        b"CSeq: 2147483648 INVITE",
        b"CSeq: 0000000000001 INVITE",
        b"CSeq: -1 INVITE",
        b"CSeq: 1 \x0bINVITE",
    ],
    b"Max-Forwards: 70": [
        b"Max-Forwards: 0",
        b"Max-Forwards: 255",
        b"Max-Forwards: 256",
        b"Max-Forwards: 7 0",
        b"Max-Forwards: 70\r\nMax-Forwards: 70",
        b"Date: Sat, 13 Nov 2010 23:29:00 GMT",
        b"Date: Sat, 13 Nov 2010 23:29:00 PST",
        b"Contact: sip:a@b?x=y",
        b"Contact: <sip:a@b?x=y>",
    ],
    b"Content-Length:   129": [
        b"Content-Length: 0",
        b"Content-Length: 100",
        b"Content-Length: 130",
        b"Content-Length: 12 9",
        b"l: 129",
        b"Content-Length: 129\r\nContent-Length: 129",
    ],
}


def _variants() -> Iterator[bytes]:
    for line, others in _VARIANTS.items():
        assert line in SIPP_INVITE
        for other in others:
            yield SIPP_INVITE.replace(line, other)
    head, _, body = SIPP_INVITE.partition(b"\r\n\r\n")
    yield head + b"\r\n\r\n"  # no body, Content-Length says 129
    yield head.replace(b"Content-Length:   129\r\n", b"") + b"\r\n\r\n" + body
    yield head.replace(b"Content-Length:   129\r\n", b"") + b"\r\n\r\n"
    yield SIPP_INVITE + b"junk past the body"  # RFC 3261 §18.3: cut
    yield head  # no blank line
    yield SIPP_INVITE.replace(b"\r\n", b"\n")


# A 200 OK as the softswitch answers the INVITE, and status-line variants.
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p1;received=127.0.0.1;rport=5060\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0\r\n"
    b"Record-Route: <sip:127.0.0.1:5060;lr>\r\n"
    b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
    b"To: <sip:+13037621499@127.0.0.1:5060>;tag=ss-1\r\n"
    b"Call-ID: 1-6874@127.0.0.3\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:127.0.0.2:5080>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
_STATUS_VARIANTS = [
    b"SIP/2.0 180 Ringing",
    b"SIP/2.0 100",
    b"SIP/2.0 100 ",
    b"SIP/2.0 603 Decline",
    b"SIP/2.0 699 x",
    b"SIP/2.0 700 x",
    b"SIP/2.0 099 x",
    b"SIP/2.0 20 OK",
    b"SIP/2.0 2000 OK",
    b"SIP/2.0 200\tOK",
    b"SIP/2.1 200 OK",
    b"SIP/2.0  200 OK",
]


@needs_c
def test_c_parse_takes_real_traffic() -> None:
    """The messages of a real call go through C (a silent decline would cost its speed)."""
    for data in (SIPP_INVITE, SAMPLE, OK):
        message.parse(data)  # remembers any spelling new to the tables
        assert c_parse_answers(data), data
        assert check_parse(data)


@needs_c
def test_c_parse_variants() -> None:
    answered = 0
    for data in _variants():
        answered += check_parse(data)
        for m in _line_mutations(data):
            check_parse(m)
    for line in _STATUS_VARIANTS:
        answered += check_parse(OK.replace(b"SIP/2.0 200 OK", line))
    assert answered >= 40  # the common shapes among the variants go through C


@needs_c
def test_identity_reading_agrees() -> None:
    """The Request-URI and the From/To user parts proxy/screen.py screens on are the same
    whether the C parse or the Python one read the INVITE."""
    for data in _variants():
        got = []
        for on in (True, False):
            old = message.set_accelerated(on)
            try:
                m = parse(data)
            except SIPError as exc:
                got.append(("error", exc.status, exc.kind))
                continue
            finally:
                message.set_accelerated(old)
            assert isinstance(m, message.Request)
            got.append((m.ruri, m.from_.user, m.to.user, m.from_.display))
        assert got[0] == got[1], data


@needs_c
def test_c_parse_rejects_non_bytes() -> None:
    assert message._C_PARSE is not None
    assert message._C_PARSE(bytearray(SIPP_INVITE)) is None
    with pytest.raises(TypeError):
        message._C_PARSE()  # type: ignore[call-arg]


def check_via(data: bytes, s: int, e: int, ls: int) -> bool:
    """C parse_via against message.parse_via on data[s:e]; True when C answered."""
    assert message._C_VIA is not None
    c = message._C_VIA(data, s, e, ls)
    if c is None:
        return False
    assert _slots(c) == _slots(message.parse_via(data, s, e, (ls, e + 2))), data[s:e]
    return True


@needs_c
def test_c_parse_via() -> None:
    answered = 0
    for data in [*TORTURE, *_variants(), OK]:
        pos = data.find(b"\r\n") + 2
        while 0 < pos < len(data):
            end = data.find(b"\r\n", pos)
            if end < 0:
                break
            colon = data.find(b":", pos, end)
            if colon > 0 and data[pos:colon].strip().lower() in (b"via", b"v"):
                answered += check_via(data, colon + 1, end, pos)
            pos = end + 2
    assert answered >= 40
    assert message._C_VIA is not None
    assert message._C_VIA(b"Via: SIP/2.0/UDP h", 4, 99, 0) is None  # out of bounds
    assert message._C_VIA(b"Via: SIP/2.0/UDP h", 4, 18, 5) is None  # line after value


# -- the identities the screen reads, through both parsers ---------------------
# (caller, callee) that proxy/screen.py derives; From is +13015551234 unless
# the case changes it, so a PAI the reader refuses shows as that fallback.
_FROM = b"<sip:+13015551234@h>;tag=1"
_RURI = b"sip:+13125557000@127.0.0.1"
_BLOCKED = "+12027621401"
IDENTITY_CASES: list[tuple[str, dict[str, bytes], tuple[str | None, str | None]]] = [
    ("from tel escaped", {"frm": b"<tel:+1%32027621401>;tag=1"}, (_BLOCKED, None)),
    ("from sips", {"frm": b"<sips:+12027621401@h>;tag=1"}, (_BLOCKED, None)),
    ("from user=phone, separators and escapes",
     {"frm": b"<sip:+1-202-%37%362-1401@h;user=phone>;tag=1"}, (_BLOCKED, None)),
    ("from %2B", {"frm": b"<sip:%2B12027621401@h>;tag=1"}, (_BLOCKED, None)),
    ("from %2b", {"frm": b"<sip:%2b12027621401@h>;tag=1"}, (_BLOCKED, None)),
    ("from %252B decodes once", {"frm": b"<sip:%252B12027621401@h>;tag=1"}, ("", None)),
    ("from name holding <sip:>",
     {"frm": b'"x <sip:+14158675309@h>" <sip:+12027621401@h>;tag=1'}, (_BLOCKED, None)),
    ("from upper-case scheme", {"frm": b"<SIP:+12027621401@h>;tag=1"}, (_BLOCKED, None)),
    ("from addr-spec", {"frm": b"sip:+12027621401@h;tag=1"}, (_BLOCKED, None)),
    ("from whitespace", {"frm": b"   <sip:+12027621401@h>  ;tag=1"}, (_BLOCKED, None)),
    ("compact f:", {"fname": b"f", "frm": b"<sip:+1%32027621401@h>;tag=1"}, (_BLOCKED, None)),
    ("compact t: is not the callee",
     {"tname": b"t", "ruri": b"sip:bob@127.0.0.1"}, ("+13015551234", "")),
    ("pai tel escaped", {"pai": b"<tel:+1%32027621401>"}, (_BLOCKED, None)),
    ("pai sips %2B", {"pai": b"<sips:%2B12027621401@h>"}, (_BLOCKED, None)),
    ("pai name holding <sip:> and a comma",
     {"pai": b'"a,<sip:+14158675309@h>" <sip:+12027621401@h>'}, (_BLOCKED, None)),
    ("pai user:password", {"pai": b"<sip:+12027621401:x@h>"}, (_BLOCKED, None)),
    ("pai user=phone separators",
     {"pai": b"<sip:+1(202)762-1401@h;user=phone>"}, (_BLOCKED, None)),
    ("pai tel separators and escapes", {"pai": b"<tel:+1-%32%30%32-762-1401>"}, (_BLOCKED, None)),
    ("pai %252B decodes once (From decides)",
     {"pai": b"<sip:%252B12027621401@h>"}, ("+13015551234", None)),
    ("pai whitespace", {"pai": b"\t <sip:+12027621401@h> \t"}, (_BLOCKED, None)),
    ("pai folded", {"extra": b"P-Asserted-Identity:\r\n <sip:+12027621401@h>\r\n"},
     (_BLOCKED, None)),
    ("ruri 911 phone-context", {"ruri": b"sip:911;phone-context=+1@h;user=phone"}, (None, "911")),
    ("ruri 911 user=phone", {"ruri": b"sip:911@h;user=phone"}, (None, "911")),
    ("ruri escaped 911", {"ruri": b"sip:%39%31%31@h"}, (None, "911")),
    ("ruri sips 911", {"ruri": b"SIPS:911@h"}, (None, "911")),
    ("ruri 9-1-1", {"ruri": b"sip:9-1-1@h;user=phone"}, (None, "911")),
    ("ruri tel:933", {"ruri": b"tel:933"}, (None, "933")),
    ("ruri URN:SERVICE:SOS.Police", {"ruri": b"URN:SERVICE:SOS.Police"},
     (None, "urn:service:sos.police")),
]  # fmt: skip


def _identity_invite(
    ruri: bytes = _RURI,
    frm: bytes = _FROM,
    pai: bytes | None = None,
    extra: bytes = b"",
    fname: bytes = b"From",
    tname: bytes = b"To",
) -> bytes:
    return (
        b"INVITE " + ruri + b" SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKid1\r\nMax-Forwards: 70\r\n"
        + fname + b": " + frm + b"\r\n"
        + tname + b": <sip:911@127.0.0.1>\r\nCall-ID: id1\r\nCSeq: 1 INVITE\r\n"
        + (b"P-Asserted-Identity: " + pai + b"\r\n" if pai is not None else b"")
        + extra + b"Content-Length: 0\r\n\r\n"
    )  # fmt: skip


@pytest.mark.parametrize(("kw", "want"), [c[1:] for c in IDENTITY_CASES],
                         ids=[c[0] for c in IDENTITY_CASES])  # fmt: skip
def test_screen_identities_agree_with_and_without_c(
    kw: dict[str, bytes], want: tuple[str | None, str | None]
) -> None:
    """Issue 10 items 1-3 through both parsers: the caller (PAI, else From,
    escapes undone once, compact forms) and the callee (the Request-URI only,
    never To) are the same with and without the C parse, and as expected."""
    from proxy.screen import _callee, caller_from_request

    data = _identity_invite(**kw)  # type: ignore[arg-type]
    check_parse(data)
    got = []
    old = message.set_accelerated(True)
    try:
        for accel in (True, False):
            message.set_accelerated(accel)
            req = parse(data)
            got.append((caller_from_request(req), _callee(req)))  # type: ignore[arg-type]
    finally:
        message.set_accelerated(old)
    assert got[0] == got[1]
    caller, callee = got[0]
    want_caller, want_callee = want
    if want_caller is not None:
        assert caller == (want_caller or None)
    if want_callee is not None:
        assert callee == (want_callee or None)
    else:
        assert callee == "+13125557000"


# --- relay.top_key / initial_key: the C key reader (_scan.c top_key) ----------

_KEY_SAMPLES = [
    SAMPLE,
    SIPP_INVITE.replace(b"INVITE ", b"ACK ", 1).replace(
        b"To: <sip:+13037621499@127.0.0.1:5060>",
        b"To: <sip:+13037621499@127.0.0.1:5060>;tag=sc0.ab",
    ),
    SIPP_INVITE.replace(b"branch=z9hG4bK-6874-1-0", b"branch=1234"),  # RFC 2543
    SIPP_INVITE.replace(b"127.0.0.3:5061;branch", b"Carrier.EXAMPLE:5061;received=1.2.3.4;branch"),
    SIPP_INVITE.replace(b"To: <sip:+13037621499@127.0.0.1:5060>", b"To: <sip:a@b>;TAG=x"),
    SIPP_INVITE.replace(b";branch=z9hG4bK-6874-1-0", b""),  # no parameters
    SIPP_INVITE.replace(b";branch=z9hG4bK-6874-1-0", b";branch"),  # a branch without a value
    SIPP_INVITE.replace(b"Via: SIP/2.0/UDP", b"Via:  SIP/2.0/UDP"),
    SIPP_INVITE.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/udp"),  # the C reader declines
    SIPP_INVITE.replace(b"\r\nTo: ", b"\r\nt: "),  # compact To: initial_via finds no To
    SIPP_INVITE.replace(b"z9hG4bK-6874-1-0\r\n", b"z9hG4bK-6874-1-0\r\n x=1\r\n"),  # folded
]


def _keys(data: bytes) -> tuple[object, object]:
    from proxy.sip.relay import initial_key, top_key

    return top_key(data), initial_key(data)


def check_key(data: bytes) -> None:
    """relay.top_key / initial_key give the same with the C reader as the Python
    reference (transaction.via_key of top_via / initial_via); the C reader itself
    answers a key, False (no key) or None (declined), never a different key."""
    from proxy.sip.relay import initial_via, top_via
    from proxy.sip.transaction import via_key

    top, init = top_via(data), initial_via(data)
    want = (via_key(top) if top else None, via_key(init) if init else None)
    assert _keys(data) == want, data
    ck = message._C_KEY
    assert ck is not None
    for initial, w in ((False, want[0]), (True, want[1])):
        got = ck(data, initial)
        assert got is None or got == (w if w is not None else False), (initial, data)
    old = message.PARSER.set_accelerated(False)
    try:
        assert _keys(data) == want, data
    finally:
        message.PARSER.set_accelerated(old)


@needs_c
def test_c_key_reader_agrees() -> None:
    taken = 0
    for data in [*_KEY_SAMPLES, *TORTURE]:
        check_key(data)
        for m in _line_mutations(data):
            check_key(m)
        taken += isinstance(message._C_KEY(data, False), bytes)  # type: ignore[misc]
    assert taken >= 5  # the common shapes are read in C


@needs_c
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(_KEY_SAMPLES),
    pos=st.integers(min_value=0, max_value=400),
    junk=EDIT_JUNK,
    mode=EDIT_MODE,
)
def test_c_key_reader_random_edits(base: bytes, pos: int, junk: bytes, mode: str) -> None:
    check_key(edit(base, pos, junk, mode))


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_c_key_reader_arbitrary_bytes(data: bytes) -> None:
    for d in (data, b"ACK sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK" + data):
        check_key(d)
