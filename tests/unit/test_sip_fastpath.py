"""The parser's fast paths give exactly what its general code gives.

The hot path of proxy.sip.message takes shortcuts (a regex for the common
From/To shapes, a header scan that detects folding only when a line
looks odd, a full header index built on demand). Each test here runs the same
input through the shortcut and through the general code (the shortcut regex
replaced by one that never matches) and compares every field.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from proxy.metrics import Metrics
from proxy.sip import message
from proxy.sip.core import CoreConfig, ProxyCore
from proxy.sip.message import (
    NameAddr,
    Request,
    Response,
    SIPError,
    Via,
    parse,
    parse_name_addr,
    split_commas,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
_NEVER = re.compile(rb"(?!)")


def _na(v: bytes) -> tuple[object, ...]:
    try:
        n: NameAddr = parse_name_addr(v)
    except SIPError as exc:
        return ("error", exc.status, exc.kind)
    return (n.display, n.uri, n.user, n.scheme, n.params, n.tag, n.raw)


def _via(v: bytes) -> tuple[object, ...]:
    try:
        x: Via = message.parse_via(v, 0, len(v), (0, len(v)))
    except SIPError as exc:
        return ("error", exc.status, exc.kind)
    return (x.transport, x.host, x.port, x.sent_by, x.params, x.branch, x.rport, x.span)


NAME_ADDRS = [
    b'"Caller Name" <sip:+13035551111@10.20.30.40:5060;user=phone>;tag=12345SIPpTag001',
    b"<sip:+12025550123@10.0.0.2:5060;user=phone>",
    b"sipp  <sip:sipp@127.0.0.1:5061>;tag=1",
    b"  <sip:a@b>;tag=",
    b"<sip:a@b>;TAG=x",
    b"<sip:a@b>;tag=x;foo",
    b"<sip:a@b> ;tag=x",
    b'"A \\"B\\"" <sip:a@b>;tag=x',
    b'"unbalanced <sip:a@b>',
    b"<sip:a b@c>",
    b"<sipab>",
    b"sip:a@b;tag=x",
    b"Bad\x0bName <sip:a@b>",
    b"<<sip:a@b>>",
]

VIAS = [
    b"SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK-1;rport",
    b"SIP/2.0/TCP host.example.com;branch=z9hG4bK-2;received=1.2.3.4",
    b"SIP/2.0/UDP 1.2.3.4:0;branch=x",
    b"SIP/2.0/UDP 1.2.3.4:65536;branch=x",
    b"SIP/2.0/UDP 1.2.3.4:5060;",
    b"SIP/2.0/UDP 1.2.3.4:5060;;branch=x",
    b"SIP/2.0/udp 1.2.3.4",
    b"SIP / 2.0 / UDP 1.2.3.4",
    b"SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK-3",
    b"SIP/2.0/UDP  1.2.3.4",
    b"SIP/2.0/UDP 1.2.3.4 ;branch=x",
    b"SIP/2.0/UDP 1.2.3.4;Branch=X;RPORT=7",
]


@pytest.mark.parametrize("value", NAME_ADDRS)
def test_name_addr_fast_path_matches_general_code(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _na(value)
    monkeypatch.setattr(message, "_NAME_ADDR_RE", _NEVER)
    assert _na(value) == fast


@pytest.mark.parametrize("value", VIAS)
def test_via_c_mirror_matches_reference(value: bytes) -> None:
    """One Python Via reader (the reference) and its C mirror, which may decline."""
    ref = _via(value)
    c_via = message.PARSER.c_via
    got = None if c_via is None else c_via(value, 0, len(value), 0)
    if got is not None:
        assert (
            got.transport,
            got.host,
            got.port,
            got.sent_by,
            got.params,
            got.branch,
            got.rport,
            got.span,
        ) == ref
    else:
        assert ref == _via(value)  # deterministic: the reference answers alone


def test_fast_paths_agree_on_every_torture_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def fields(data: bytes) -> object:
        try:
            m = parse(data)
        except SIPError as exc:
            return ("error", exc.status, exc.kind)
        return (
            [(v.transport, v.host, v.port, v.params, v.span, v.line) for v in m.vias],
            (m.from_.display, m.from_.uri, m.from_.params),
            (m.to.display, m.to.uri, m.to.params),
            m.call_id,
            m.cseq,
            m.raw,
        )

    samples = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
    assert len(samples) == 49
    fast = [fields(d) for d in samples]
    monkeypatch.setattr(message, "_NAME_ADDR_RE", _NEVER)
    assert [fields(d) for d in samples] == fast


BASE = (
    b"OPTIONS sip:a@b SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK-1\r\n"
    b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n"
)


def test_folding_joins_a_line_without_colon_to_its_continuation() -> None:
    # RFC 3261 §7.3.1: "X-Odd" + CRLF SP ": v" is one line "X-Odd   : v" once unfolded
    msg = parse(BASE + b"X-Odd\r\n : v\r\nContent-Length: 0\r\n\r\n")
    assert msg.header(b"x-odd") == [b"v"]
    assert msg.content_length == 0


def test_a_line_without_colon_and_no_folding_is_refused() -> None:
    with pytest.raises(SIPError) as err:
        parse(BASE + b"X-Odd\r\nContent-Length: 0\r\n\r\n")
    assert (err.value.status, err.value.kind) == (400, "bad_header")


def test_folded_first_header_line_and_spellings_with_leading_space_not_remembered() -> None:
    data = BASE.replace(b"\r\nVia:", b"\r\n X-Lead: 1\r\nVia:", 1) + b"l: 0\r\n\r\n"
    msg = parse(data)
    # the continuation joins the start line; the scan then sees " X-Lead" as a name
    assert msg.header(b" x-lead") == [b"1"]
    assert not any(k[:1] in (b" ", b"\t") for k in message._FAST)


def test_lazy_index_of_other_headers() -> None:
    msg = parse(
        BASE + b"User-Agent: a\r\nX-Trunk: t1\r\nuser-agent: b\r\nSubject: s\r\n"
        b" folded\r\nl: 0\r\n\r\n"
    )
    assert msg.header(b"USER-AGENT") == [b"a", b"b"]
    assert msg.has_header(b"x-trunk") and not msg.has_header(b"x-none")
    assert msg.header(b"s")[0].split() == [b"s", b"folded"]
    ((s, e),) = msg.header_spans(b"x-trunk")
    assert msg.raw[s:e] == b" t1"
    assert msg.header(b"via") == [b"SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK-1"]


def _split_commas_by_byte(value: bytes) -> list[bytes]:
    """The reference: RFC 3261 §7.3.1 walked one byte at a time."""
    out, start, i, inq, inangle = [], 0, 0, False, False
    while i < len(value):
        c = value[i]
        if inq:
            if c == 0x5C:
                i += 1
            elif c == 0x22:
                inq = False
        elif c == 0x22:
            inq = True
        elif c == 0x3C:
            inangle = True
        elif c == 0x3E:
            inangle = False
        elif c == 0x2C and not inangle:
            if value[start:i].strip():
                out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if value[start:].strip():
        out.append(value[start:].strip())
    return out


@given(st.lists(st.sampled_from([b'"', b"\\", b"<", b">", b",", b" ", b"a", b'\\"']), max_size=40))
def test_split_commas_agrees_with_the_byte_walk(parts: list[bytes]) -> None:
    value = b"".join(parts)
    assert split_commas(value) == _split_commas_by_byte(value)


@given(st.lists(st.sampled_from([b'"', b"\\", b",", b" ", b"a", b'\\"']), max_size=40))
def test_the_via_split_agrees_with_the_byte_walk(parts: list[bytes]) -> None:
    """Via values hold no <>: their split is the list split without them."""
    value = b"".join(parts)
    spans = message._split_via_values(value, 0, len(value))
    assert [value[a:b].strip() for a, b in spans if value[a:b].strip()] == (
        _split_commas_by_byte(value)
    )


def test_split_commas_single_value_fast_path() -> None:
    assert split_commas(b" <sip:10.0.0.1:5060;lr> ") == [b"<sip:10.0.0.1:5060;lr>"]
    assert split_commas(b'"a" <sip:x>') == [b'"a" <sip:x>']
    assert split_commas(b"  ") == []


RESP = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsc0011\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-1;received=192.0.2.7\r\n"
    b"From: %s\r\nTo: %s\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("value", NAME_ADDRS)
def test_response_from_to_decoded_on_access_like_a_request(value: bytes) -> None:
    # a response's From/To are parsed on first access (RFC 3261 §16.7: relayed by Via);
    # the result is what parse_name_addr gives, and a broken value is SIPError(0)
    resp = parse(RESP % (value, b"<sip:a@b>;tag=t"))
    assert isinstance(resp, Response)
    assert resp.to.tag == b"t"
    want = _na(value)
    try:
        got: tuple[object, ...] = _na(resp.from_.raw)
        assert resp.from_ is resp.from_  # decoded once
    except SIPError as exc:
        assert exc.status == 0
        got = ("error", 400, exc.kind)
    assert got == want
    # the same value in a request is still validated by parse() itself (answered 400)
    req = BASE.replace(b"From: <sip:x@y>;tag=1", b"From: " + value) + b"l: 0\r\n\r\n"
    if want[0] == "error":
        with pytest.raises(SIPError) as err:
            parse(req)
        assert (err.value.status, err.value.kind) == (400, want[2])
    else:
        parsed = parse(req)
        assert isinstance(parsed, Request)
        assert _na(parsed.from_.raw) == want


def test_response_with_broken_from_and_foreign_via_still_dropped() -> None:
    core = ProxyCore(CoreConfig("127.0.0.1", 5060, ("127.0.0.1", 5070)), lambda r, s, t: None)
    data = (RESP % (b'"unbalanced <sip:a@b>', b"<sip:a@b>")).replace(
        b"z9hG4bKsc0011", b"z9hG4bKxx0011"
    )
    core.datagram_received(data, ("127.0.0.1", 5070), "udp", 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["foreign_via"] == 1


def _value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_metrics_hot_counts_are_plain_ints_flushed_by_the_periodic_sync() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, worker=3)
    for data in (
        b"INVITE sip:a@b SIP/2.0\r\n",
        b"INVITE sip:a@b SIP/2.0\r\n",
        b"SIP/2.0 603 Decline\r\n",
        b"SIP/2.0 180 Ringing\r\n",
        b"FOO sip:a@b SIP/2.0\r\n",
        b"SIP/2.0 999 Odd\r\n",
        b"\r\n\r\n",
    ):
        m.count_out(data)
    m.datagrams_in += 5
    out = "sipscreen_sip_messages_total"
    # nothing reaches Prometheus on the hot path
    assert _value(reg, out, direction="out", kind="INVITE") == 0
    assert _value(reg, "sipscreen_worker_datagrams_total", worker="3") == 0
    m.sync_core_stats(None)
    assert _value(reg, out, direction="out", kind="INVITE") == 2
    assert _value(reg, out, direction="out", kind="6xx") == 1
    assert _value(reg, out, direction="out", kind="1xx") == 1
    assert _value(reg, out, direction="out", kind="OTHER") == 3
    assert _value(reg, "sipscreen_worker_datagrams_total", worker="3") == 5
    # a second sync adds only what was counted since
    m.count_out(b"SIP/2.0 603 Decline\r\n")
    m.datagrams_in += 1
    m.sync_core_stats(None)
    m.sync_core_stats(None)
    assert _value(reg, out, direction="out", kind="6xx") == 2
    assert _value(reg, out, direction="out", kind="INVITE") == 2
    assert _value(reg, "sipscreen_worker_datagrams_total", worker="3") == 6
