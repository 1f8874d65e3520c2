"""proxy/sip/isup.py: the calling numbers of an encapsulated ISUP IAM (SIP-T)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sipscreen_testlib import isup_iam, sip_t_body

from proxy.sip.isup import BadIsup, calling_numbers, may_carry_isup

SDP = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n"
ISUP = b"application/ISUP; version=ansi00"


@pytest.mark.parametrize("ansi", [True, False])
def test_the_calling_party_number_and_calling_generic_numbers(ansi: bool) -> None:
    iam = isup_iam(
        "2127369999",
        ansi=ansi,
        generic=((6, "12125551234", 4), (2, "3015550000", 3), (1, "3015551111", 3)),
    )
    # qualifier 1 (additional called number) is no calling number
    assert calling_numbers(ISUP, iam) == [(3, "2127369999"), (4, "12125551234"), (3, "3015550000")]


@pytest.mark.parametrize(
    ("ctype", "body", "want"),
    [
        # an odd count loses its filler; no calling number; no optional part
        (ISUP, isup_iam("212736999"), [(3, "212736999")]),
        (ISUP, isup_iam(None), []),
        (ISUP, isup_iam(None)[:7] + b"\x00" + isup_iam(None)[8:], []),
        # not an IAM (an INF, 0x04), not ISUP
        (ISUP, b"\x04\x00\x00", []),
        (b"application/sdp", SDP, []),
        # multipart: the SDP part skipped, a preamble and an epilogue ignored,
        # quoted boundary, case of the type, nested multipart, base64 part
        (*sip_t_body(SDP, isup_iam("2127369999")), [(3, "2127369999")]),
        (
            b'Multipart/Mixed; boundary="a b"',
            b"preamble v=0\r\n--a b\r\nContent-Type: APPLICATION/isup\r\n\r\n"
            + isup_iam("2127369999")
            + b"\r\n--a b--\r\nepilogue",
            [(3, "2127369999")],
        ),
        (
            b"multipart/mixed;boundary=out",
            b"--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
            b"--in\r\nContent-Type: application/isup\r\n\r\n"
            + isup_iam("3015551234")
            + b"\r\n--in--\r\n--out--\r\n",
            [(3, "3015551234")],
        ),
        (
            b"multipart/mixed;boundary=x",
            b"--x\r\nContent-Type: application/isup\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"
            + base64.b64encode(isup_iam("2127369999"))
            + b"\r\n--x--",
            [(3, "2127369999")],
        ),
        (*sip_t_body(SDP, isup_iam(None)), []),
        # content that holds "CRLF--boundary" but no delimiter line; an empty part
        (
            b"multipart/mixed; boundary=x",
            b"--x\r\nContent-Type: application/isup\r\n\r\n"
            + isup_iam("2127369999")[:-1]
            + b"\x99\x06\r\n--xy\x00"  # a parameter whose value holds CRLF--xy
            + b"\r\n--x--",
            [(3, "2127369999")],
        ),
        (
            b"multipart/mixed; boundary=x",
            b"--x\r\n--x\r\nContent-Type: application/isup\r\n\r\n"
            + isup_iam("2127369999")
            + b"\r\n--x--",
            [(3, "2127369999")],
        ),
        # a multipart body that never names ISUP is not read (S/MIME, a vendor's)
        (b"multipart/signed; boundary=x", b"--x\nContent-Type: text/plain\n\nhi\n", []),
        (b"multipart/mixed", b"no boundary at all", []),
    ],
)
def test_calling_numbers(ctype: bytes, body: bytes, want: list[tuple[int, str]]) -> None:
    assert calling_numbers(ctype, body) == want


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        (ISUP, b""),
        (ISUP, isup_iam("2127369999")[:7]),  # shorter than the mandatory part
        (ISUP, isup_iam("2127369999")[:-1]),  # the optional part does not end
        (ISUP, isup_iam("2127369999")[:-6]),  # a parameter runs past the message
        (b"multipart/mixed", b"--x\r\nContent-Type: application/isup\r\n\r\n--x--"),
        (b"multipart/mixed; boundary=y", b"--x\r\nContent-Type: application/ISUP\r\n\r\n--x--"),
        (b"multipart/mixed; boundary=x", b"--x\r\nContent-Type: application/isup\r\n\r\nab"),
        (b"multipart/mixed; boundary=x", b"--x junk\r\nContent-Type: application/isup\r\n\r\n"),
        (b"multipart/mixed; boundary=x", b"--x\r\nContent-Type application/isup\r\n\r\n\r\n--x--"),
        (
            b"multipart/mixed; boundary=x",
            b"--x\r\nContent-Type: application/isup\r\nContent-Transfer-Encoding: quoted-printable"
            b"\r\n\r\n=01\r\n--x--",
        ),
        # ISUP named, but the part cannot be delimited here (bare LF lines)
        (b"multipart/mixed; boundary=x", b"--x\nContent-Type: application/isup\n\n\x01\n--x--\n"),
        (b'multipart/mixed; boundary="x', b"--x\r\nContent-Type: application/isup\r\n\r\n--x--"),
    ],
)
def test_a_body_the_reader_cannot_follow_is_bad(ctype: bytes, body: bytes) -> None:
    with pytest.raises(BadIsup):
        calling_numbers(ctype, body)


def test_nesting_is_bounded() -> None:
    body = isup_iam("2127369999")
    ctype = ISUP
    for depth in range(6):
        b = f"n{depth}".encode()
        body = (
            b"--" + b + b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + body + b"\r\n--" + b + b"--"
        )
        ctype = b"multipart/mixed; boundary=" + b
    with pytest.raises(BadIsup, match="nested"):
        calling_numbers(ctype, body)


def test_may_carry_isup() -> None:
    assert may_carry_isup(b"application/ISUP;version=itu-t92+")
    assert may_carry_isup(b"multipart/mixed;boundary=x")
    assert not may_carry_isup(b"application/sdp")


@given(st.binary(max_size=300), st.sampled_from([ISUP, b"multipart/mixed; boundary=x"]))
def test_any_body_gives_numbers_or_bad_isup(body: bytes, ctype: bytes) -> None:
    try:
        got = calling_numbers(ctype, body)
    except BadIsup:
        return
    assert all(isinstance(noa, int) and isinstance(d, str) for noa, d in got)


@given(st.binary(max_size=200))
def test_any_iam_tail_gives_numbers_or_bad_isup(tail: bytes) -> None:
    try:
        calling_numbers(ISUP, b"\x01" + tail)
    except BadIsup:
        pass


@pytest.mark.parametrize(
    "ctype",
    [b"application / ISUP", b"Application\t/isup; version=ansi00", b"application/ isup"],
)
def test_whitespace_around_the_slash_is_still_isup(ctype: bytes) -> None:
    """RFC 3261 §25.1: SLASH = SWS "/" SWS, so ``application / ISUP`` is an ISUP
    body to a softswitch; it was no media type the reader knew, and the
    calling number went unread. Multipart types likewise."""
    iam = isup_iam("2127369999")
    assert may_carry_isup(ctype) and calling_numbers(ctype, iam) == [(3, "2127369999")]
    mct, body = sip_t_body(b"v=0\r\n", iam)
    spaced = mct.replace(b"multipart/", b"multipart / ")
    assert calling_numbers(spaced, body.replace(b"application/ISUP", ctype)) == [(3, "2127369999")]
