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
from proxy.sip.message import Request, SIPError, parse

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


def _fields(data: bytes) -> object:
    try:
        m = parse(data)
    except SIPError as exc:
        return ("error", exc.status, exc.kind)
    out: list[object] = [
        type(m).__name__,
        m.raw,
        [(v.transport, v.sent_by, v.params, v.span, v.line) for v in m.vias],
        m.call_id,
        m.cseq,
        m.max_forwards,
        m.content_length,
        m.body,
        m.headers_end,
        sorted(m._hdrs.items()),
        m.header(b"route"),
        m.header(b"p-asserted-identity"),
        m.header(b"x-unknown-header"),
    ]
    if isinstance(m, Request):
        out += [m.method, m.ruri, m.from_.uri, m.from_.tag, m.to.uri, m.to.tag]
    return out


def check_parse(data: bytes) -> None:
    old = message.set_accelerated(True)
    try:
        with_c = _fields(data)
        message.set_accelerated(False)
        without = _fields(data)
    finally:
        message.set_accelerated(old)
    assert with_c == without, data


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
