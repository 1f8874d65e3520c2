"""proxy/sip/framing.py: ``frame_common`` answers exactly as ``message.frame_stream``
whenever it answers, on every prefix of real streams, their spellings of
Content-Length and random edits of them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_samples import EDIT_JUNK, EDIT_MODE, SIPP_INVITE, edit

from proxy.sip.framing import frame_common
from proxy.sip.message import MAX_MESSAGE, SIPError, frame_stream

BYE = (
    b"BYE sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 127.0.0.1:5999;rport;branch=z9hG4bKp0x1\r\n"
    b"Route: <sips:127.0.0.1:5061;lr>\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
    b"Call-ID: p0x1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
)


def _stream(buf: bytes) -> tuple[bytes | None, int] | str:
    try:
        return frame_stream(buf)
    except SIPError as exc:
        return f"error {exc}"


def _agree(buf: bytes) -> bool:
    """frame_common(buf) is None (declined) or frame_stream's answer; True when it answered."""
    got = frame_common(buf)
    if got is None:
        return False
    assert got == _stream(buf), buf
    assert got == frame_common(bytearray(buf))  # the server passes its bytearray
    return True


@pytest.mark.parametrize(
    "cl",
    [
        b"Content-Length: 0",
        b"Content-Length:0",
        b"content-length :   0",
        b"CONTENT-LENGTH\t: 0  ",
    ],
)
def test_common_spellings_are_framed_without_the_full_read(cl: bytes) -> None:
    msg = BYE.replace(b"Content-Length: 0", cl)
    stream = msg + SIPP_INVITE + msg
    assert _agree(stream)
    assert frame_common(stream) == (msg, len(msg))
    assert frame_common(SIPP_INVITE) == (SIPP_INVITE, len(SIPP_INVITE))
    for k in range(len(stream) + 1):  # every prefix, as bytes arrive
        _agree(stream[:k])
    assert frame_common(msg[:-1]) == (None, 0)  # more octets needed


@pytest.mark.parametrize(
    "stream",
    [
        b"\r\n\r\n" + BYE,  # keep-alives first
        BYE.replace(b"Content-Length: 0", b"l: 0"),  # the compact form
        BYE.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nContent-Length: 0\r\n"),
        BYE.replace(b"Content-Length: 0\r\n", b""),  # none: frame_stream's 400
        BYE.replace(b"Content-Length: 0", b"Content-Length: x"),
        BYE.replace(b"Content-Length: 0", b"Content-Lengthy: 0"),
        BYE.replace(b"Content-Length: 0", b"Content-Length: 99999999"),
        b"X" * (MAX_MESSAGE + 1),  # no header end within the limit
    ],
)
def test_other_shapes_are_left_to_frame_stream(stream: bytes) -> None:
    assert frame_common(stream) is None


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from([BYE, SIPP_INVITE, BYE + SIPP_INVITE]),
    pos=st.integers(min_value=0, max_value=10_000),
    junk=EDIT_JUNK,
    mode=EDIT_MODE,
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_random_edits_agree_with_frame_stream(
    base: bytes, pos: int, junk: bytes, mode: str, cut: int
) -> None:
    data = edit(base, pos, junk, mode)
    _agree(data)
    _agree(data[: cut % (len(data) + 1)])
