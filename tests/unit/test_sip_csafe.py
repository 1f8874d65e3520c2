"""proxy/sip/_scan.c fails safe: bad calls raise, set-up swaps atomically, nothing leaks.

The C code answers only for input the Python parser would treat the same way
(test_sip_cscan.py, test_sip_differential.py); these tests are about the C
itself: ``edited()`` (the rewrite of a lean in-dialog forward) refuses edits
that overlap or lie outside the message instead of writing past its buffer;
``init()`` checks every slot before it replaces anything, so a failed call
leaves the working set-up and a repeated call releases what the last one held;
and a long loop over every entry point, answering and declining paths alike,
allocates nothing it does not free (tracemalloc).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from wire_samples import SIPP_INVITE

from proxy.sip import message, relay
from proxy.sip.message import NameAddr, Request, Response, SIPError, Via, parse

try:
    from proxy.sip import _scan
except ImportError:  # pragma: no cover - no compiler at install time
    _scan = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    _scan is None or message._C_PARSE is None, reason="proxy/sip/_scan.c not built or disabled"
)

TORTURE = [
    p.read_bytes()
    for p in sorted((Path(__file__).parent.parent / "data" / "rfc4475").glob("*.dat"))
]

ROUTE = b"<sip:127.0.0.1;lr>"
ACK = (
    b"ACK sip:+13037621499@127.0.0.2:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-5;rport\r\n"
    b"Route: " + ROUTE + b"\r\n"
    b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
    b"To: <sip:+13037621499@127.0.0.1:5060>;tag=callee42\r\n"
    b"Call-ID: 1-6874@127.0.0.3\r\n"
    b"CSeq: 1 ACK\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OUR_VIA = b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"
OK = (
    b"SIP/2.0 200 OK\r\n" + OUR_VIA + b"0123456789abcdef\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0;received=127.0.0.3;rport=5061\r\n"
    b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
    b"To: <sip:+13037621499@127.0.0.1:5060>;tag=callee42\r\n"
    b"Call-ID: 1-6874@127.0.0.3\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _init_args() -> tuple[object, ...]:
    return (
        Request,
        Response,
        Via,
        NameAddr,
        message._FAST,
        message._CSEQ_MAX,
        message._MF_MAX,
        message._CL_MAX,
    )


@pytest.fixture
def restore_init() -> Iterator[None]:
    """Whatever a test hands init(), the module's own set-up is back afterwards."""
    yield
    _scan.init(*_init_args())
    assert isinstance(_scan.parse(SIPP_INVITE), Request)


# --- edited(): the rewrite of a lean forward ---------------------------------------


def _reference_edit(data: bytes, start: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    out, pos = [], start
    for s, e, rep in sorted(edits):
        out += [data[pos:s], rep]
        pos = e
    return b"".join([*out, data[pos:]])


def test_edited_applies_edits_in_any_order() -> None:
    data = b"0123456789abcdef"
    cases = [
        [],
        [(3, 3, b"<ins>")],
        [(10, 12, b""), (2, 4, b"XY"), (6, 6, b"+")],  # given unsorted
        [(4, 6, b"a"), (6, 8, b"b")],  # touching, not overlapping
        [(16, 16, b"!")],  # at the very end
    ]
    for edits in cases:
        for start in (0, 1):
            assert _scan._edited(data, start, edits) == _reference_edit(data, start, edits)


@pytest.mark.parametrize(
    ("start", "edits"),
    [
        (0, [(2, 6, b"x"), (4, 8, b"y")]),  # overlapping
        (0, [(4, 8, b"y"), (2, 6, b"x")]),  # overlapping, given unsorted
        (0, [(3, 9, b""), (5, 5, b"z")]),  # an insertion inside a cut
        (0, [(10, 20, b"x")]),  # past the end
        (0, [(17, 17, b"x")]),  # an insertion past the end
        (5, [(2, 3, b"x")]),  # before the start
        (0, [(6, 4, b"x")]),  # end before start
        (0, [(-1, 2, b"x")]),
        (-1, []),  # a start outside the buffer
        (17, []),
    ],
)
def test_edited_refuses_edits_it_cannot_apply(
    start: int, edits: list[tuple[int, int, bytes]]
) -> None:
    with pytest.raises(ValueError, match="edited"):
        _scan._edited(b"0123456789abcdef", start, edits)


def test_edited_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        _scan._edited(b"abc", 0, [(0, 1)])
    with pytest.raises(TypeError):
        _scan._edited(b"abc", 0, [(0, 1, "x")])
    with pytest.raises(ValueError):
        _scan._edited(b"abc", 0, [(0, 0, b"")] * 9)


def test_the_lean_forward_applies_its_three_edits() -> None:
    """rport filled (RFC 3581 §4), Route removed (RFC 3261 §16.4), Max-Forwards - 1 (§16.6)."""
    got = relay.scan_request(ACK, "127.0.0.3", 5061, ROUTE)
    assert got is not None
    material, hstart, tail = got
    assert material == b"z9hG4bK-6874-1-5|127.0.0.3:5061|1-6874@127.0.0.3|1"
    assert ACK[hstart:].startswith(b"Via: ")
    assert tail == (
        ACK[hstart:]
        .replace(b";rport\r\n", b";rport=5061\r\n")
        .replace(b"Route: " + ROUTE + b"\r\n", b"")
        .replace(b"Max-Forwards: 70", b"Max-Forwards: 69")
    )


# --- init(): validate, then swap ---------------------------------------------------


@pytest.mark.usefixtures("restore_init")
def test_init_twice_releases_the_old_references() -> None:
    args = _init_args()
    _scan.init(*args)
    before = [sys.getrefcount(a) for a in args[:5]]
    for _ in range(50):
        _scan.init(*args)
    assert [sys.getrefcount(a) for a in args[:5]] == before
    assert isinstance(_scan.parse(SIPP_INVITE), Request)


@pytest.mark.usefixtures("restore_init")
def test_a_failed_init_leaves_the_working_set_up() -> None:
    class NoSlots:
        pass

    args = list(_init_args())
    refs = sys.getrefcount(NoSlots)
    for k in range(4):
        with pytest.raises(AttributeError):
            _scan.init(*args[:k], NoSlots, *args[k + 1 :])
        # the classes and limits of the last good call still serve
        assert isinstance(_scan.parse(SIPP_INVITE), Request)
    assert sys.getrefcount(NoSlots) == refs  # nothing kept of a refused call
    with pytest.raises(ValueError):
        _scan.init(*args[:5], -1, 255, 65535)
    assert isinstance(_scan.parse(SIPP_INVITE), Request)


@pytest.mark.usefixtures("restore_init")
def test_init_refuses_a_slot_that_belongs_to_another_class() -> None:
    """A member descriptor is an offset into *its* class: used on another, it writes astray."""
    names = [n for cls in Request.__mro__ for n in getattr(cls, "__slots__", ())]
    body = {"__slots__": tuple(n for n in names if n != "raw"), "raw": NameAddr.display}
    stranger = type("Stranger", (), body)
    with pytest.raises(TypeError, match="raw"):
        _scan.init(stranger, *_init_args()[1:])
    assert isinstance(_scan.parse(SIPP_INVITE), Request)


# --- no leaks ----------------------------------------------------------------------


def _declines() -> list[bytes]:
    """Messages the C parse starts on and gives up part-way (its release paths)."""
    return [
        SIPP_INVITE.replace(b"From: <sip:", b"From: sip:"),  # after the Vias are built
        SIPP_INVITE.replace(b"branch=z9hG4bK-6874-1-0", b"branch=z9hG4bK-6874-1-0;;x"),
        SIPP_INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
        SIPP_INVITE.replace(b"Content-Length:   129", b"Content-Length: 999"),
        OK.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"),
    ]


def _one_round() -> None:
    assert isinstance(parse(SIPP_INVITE), Request)
    assert isinstance(parse(OK), Response)
    for data in _declines():
        try:
            parse(data)
        except SIPError:
            pass
    assert relay.scan_response(OK, OUR_VIA) is not None
    assert relay.scan_request(ACK, "127.0.0.3", 5061, ROUTE) is not None
    assert (
        relay.scan_request(ACK.replace(b";rport", b";rport;rport"), "127.0.0.3", 5061, ROUTE)
        is None
    )
    s = SIPP_INVITE.index(b"SIP/2.0/UDP")
    e = SIPP_INVITE.index(b"\r\n", s)
    assert _scan.parse_via(SIPP_INVITE, s, e, s - 5) is not None
    known = SIPP_INVITE.index(b"\r\nSubject:")  # the lines before: spellings _FAST holds
    assert _scan.scan_headers(SIPP_INVITE, SIPP_INVITE.index(b"\r\n") + 2, known, message._FAST)
    try:  # not pytest.raises: its reference cycles wait for the collector
        _scan._edited(ACK, 0, [(2, 6, b"x"), (4, 8, b"y")])
    except ValueError:
        pass
    else:
        raise AssertionError("overlapping edits accepted")


def _growth(fn: Callable[[], None], rounds: int) -> int:
    for _ in range(50):  # caches and free lists settle
        fn()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(rounds):
            fn()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(d.size_diff for d in after.compare_to(before, "filename"))


def test_no_entry_point_leaks() -> None:
    """One object lost per round would be >= 32 kB over the 1,000 rounds."""
    growth = _growth(_one_round, 1000)
    assert growth < 16_000, growth


def test_the_torture_set_does_not_leak() -> None:
    def rnd() -> None:
        for data in TORTURE:
            try:
                parse(data)
            except SIPError:
                pass
            relay.scan_response(data, OUR_VIA)
            relay.scan_request(data, "127.0.0.3", 5061, ROUTE)

    growth = _growth(rnd, 60)
    assert growth < 16_000, growth
