"""Parser, framing and response building of proxy.sip.message."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip import message
from proxy.sip.message import (
    Request,
    Response,
    SIPError,
    build_error_response,
    build_response,
    frame_stream,
    parse,
    split_commas,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

INV = (
    b"INVITE sip:+12025550123@10.0.0.2;user=phone SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport, SIP/2.0/TCP [2001:db8::1]:5070"
    b";branch=z9hG4bK-b;received=192.0.2.1\r\n"
    b"Via: SIP/2.0/UDP gw.example.com;branch=z9hG4bK-c\r\n"
    b'f: "Caller" <sip:+13035551111@example.net>;tag=abc\r\n'
    b"t: <tel:+1-202-555-0123;npdi>\r\n"
    b"i: cid-1@10.0.0.1\r\n"
    b"CSeq: 42 INVITE\r\n"
    b"Max-Forwards: 12\r\n"
    b"P-Asserted-Identity: <sip:+13035551111@example.net>, <tel:+13035551111>\r\n"
    b"Privacy: id\r\n"
    b"Identity: eyJhbGciOi.eyJ.sig;info=<https://cert.example/x.pem>\r\n"
    b"Subject: a\r\n folded\r\n\tvalue\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"bodyEXTRA"
)


def test_request_fields() -> None:
    msg = parse(b"\r\n\r\n" + INV)
    assert isinstance(msg, Request)
    assert msg.method == b"INVITE" and msg.version == b"SIP/2.0"
    assert msg.ruri == b"sip:+12025550123@10.0.0.2;user=phone"
    assert [v.branch for v in msg.vias] == [b"z9hG4bK-a", b"z9hG4bK-b", b"z9hG4bK-c"]
    a, b, c = msg.vias
    assert (a.transport, a.host, a.port, a.rport, a.received) == (
        b"UDP",
        b"10.0.0.1",
        5060,
        b"",
        None,
    )
    assert (b.transport, b.host, b.port, b.received) == (b"TCP", b"2001:db8::1", 5070, b"192.0.2.1")
    assert b.rport is None and c.port is None and c.host == b"gw.example.com"
    assert msg.raw[a.span[0] : a.span[1]] == b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport"
    assert a.line == b.line != c.line
    assert msg.from_.user == b"+13035551111" and msg.from_.tag == b"abc"
    assert msg.from_.display == b'"Caller"'
    assert msg.to.user == b"+1-202-555-0123" and msg.to.tag is None
    assert msg.to.scheme == b"tel"
    assert msg.call_id == b"cid-1@10.0.0.1"
    assert msg.cseq == (42, b"INVITE")
    assert msg.max_forwards == 12
    assert msg.content_length == 4 and msg.body == b"body"
    assert msg.raw.endswith(b"\r\n\r\nbody")  # octets past Content-Length dropped
    assert msg.pai == [b"<sip:+13035551111@example.net>", b"<tel:+13035551111>"]
    assert msg.privacy == b"id"
    assert msg.identity is not None and msg.identity.startswith(b"eyJhbGciOi")
    assert msg.header(b"SUBJECT") == msg.header(b"s")
    assert msg.header(b"subject")[0].split() == [b"a", b"folded", b"value"]
    assert msg.header(b"x-none") == []


def test_response_fields() -> None:
    data = (DATA / "unreason.dat").read_bytes()
    msg = parse(data)
    assert isinstance(msg, Response)
    assert msg.status == 200 and msg.reason.decode().startswith("= 2**3")
    msg = parse((DATA / "noreason.dat").read_bytes())
    assert isinstance(msg, Response) and msg.status == 100 and msg.reason == b""


def test_wsinv_whitespace_and_folding() -> None:
    msg = parse((DATA / "wsinv.dat").read_bytes())
    assert isinstance(msg, Request)
    assert msg.max_forwards == 68
    assert msg.cseq == (9, b"INVITE")
    assert msg.to.tag == b"1918181833n"
    assert msg.from_.tag == b"98asjd8"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        (b"UDP", b"192.0.2.2", b"390skdjuw"),
        (b"TCP", b"spindle.example.com", b"z9hG4bK9ikj8"),
        (b"UDP", b"192.168.255.111", b"z9hG4bK30239"),
    ]
    assert msg.content_length == 150 and len(msg.body) == 150


def test_longreq_many_vias_all_compact_forms() -> None:
    msg = parse((DATA / "longreq.dat").read_bytes())
    assert len(msg.vias) == 34
    assert msg.vias[0].host == b"sip33.example.com"
    assert msg.vias[-1].received == b"192.0.2.5"


@pytest.mark.parametrize(
    ("mutate", "status", "kind"),
    [
        (lambda m: m.replace(b"CSeq: 42 INVITE", b"CSeq: 42 BYE"), 400, "cseq_mismatch"),
        (lambda m: m.replace(b"CSeq: 42", b"CSeq: 2147483648"), 400, "bad_cseq"),
        (lambda m: m.replace(b"Max-Forwards: 12", b"Max-Forwards: x"), 400, "bad_max_forwards"),
        (lambda m: m.replace(b"i: cid-1@10.0.0.1\r\n", b""), 400, "missing_header"),
        (
            lambda m: m.replace(b"Max-Forwards: 12\r\n", b"Max-Forwards: 12\r\nCall-ID: x\r\n"),
            400,
            "duplicate_header",
        ),
        (lambda m: m.replace(b"l: 4", b"l: 40"), 400, "content_length"),
        (lambda m: m.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505, "version"),
        (lambda m: m.replace(b"INVITE sip", b"INV@TE sip"), 400, "bad_request_line"),
        (lambda m: m.replace(b";rport,", b";;rport,"), 400, "bad_via"),
        (lambda m: m.replace(b"10.0.0.1:5060", b"10.0.0.1:99999"), 400, "bad_via"),
        (lambda m: m.replace(b'"Caller"', b'"Caller'), 400, "bad_header"),
    ],
)
def test_request_errors(mutate: object, status: int, kind: str) -> None:
    with pytest.raises(SIPError) as ei:
        parse(mutate(INV))  # type: ignore[operator]
    assert (ei.value.status, ei.value.kind) == (status, kind)
    assert ei.value.reason


def test_keepalive_and_response_errors_are_drops() -> None:
    with pytest.raises(SIPError) as ei:
        parse(b"\r\n\r\n")
    assert (ei.value.status, ei.value.kind) == (0, "keepalive")
    resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\n\r\n"
    with pytest.raises(SIPError) as ei:
        parse(resp)
    assert ei.value.status == 0 and ei.value.kind == "missing_header"


def test_frame_stream() -> None:
    one = INV[: INV.index(b"EXTRA")]
    buf = bytearray(b"\r\n\r\n" + one + one[:30])
    msg, used = frame_stream(buf)
    assert msg == one and used == 4 + len(one)
    del buf[:used]
    assert frame_stream(buf) == (None, 0)
    buf += one[30:]
    assert frame_stream(buf) == (one, len(one))
    assert frame_stream(b"\r\n\r\n") == (None, 4)
    with pytest.raises(SIPError) as ei:
        frame_stream(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")
    assert ei.value.status == 400  # RFC 3261 §18.3: Content-Length required on streams
    with pytest.raises(SIPError) as ei:
        frame_stream(b"X" * 70000)
    assert ei.value.status == 0


def test_build_response_copies_mandatory_headers() -> None:
    req = parse(INV)
    assert isinstance(req, Request)
    data = build_response(req, 603, b"Decline", b"tt1", b"Reason: SIP;cause=603\r\n")
    resp = parse(data)
    assert isinstance(resp, Response)
    assert resp.status == 603 and resp.reason == b"Decline"
    assert [v.branch for v in resp.vias] == [v.branch for v in req.vias]
    assert resp.to.tag == b"tt1" and resp.from_.tag == b"abc"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.header(b"reason") == [b"SIP;cause=603"]
    assert resp.content_length == 0


def test_build_error_response_without_via_is_none() -> None:
    err = SIPError(400, "missing_header")
    assert build_error_response(b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n", err) is None
    out = build_error_response(INV.replace(b"CSeq: 42 INVITE", b"CSeq: 42 BYE"), err, b"t")
    assert out is not None and out.startswith(b"SIP/2.0 400 Bad Request\r\n")
    assert out.count(b"Via: ") == 2 and b";tag=t" in out


def test_split_commas_respects_quotes_and_angles() -> None:
    assert split_commas(b'"a, b" <sip:x>, <sip:y;p=1,2>') == [b'"a, b" <sip:x>', b"<sip:y;p=1,2>"]
    assert split_commas(b"a, b ,,c") == [b"a", b"b", b"c"]


def test_sip_package_does_no_io() -> None:
    """STYLE.md §1: proxy/sip imports no asyncio, socket, time, redis."""
    pkg = Path(__file__).resolve().parents[2] / "proxy" / "sip"
    banned = {"asyncio", "socket", "time", "redis", "prometheus_client", "uvloop", "logging"}
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            assert not banned.intersection(names), (path.name, names)


def _with_names(names: list[bytes]) -> bytes:
    head, _, rest = INV.partition(b"\r\n")
    return head + b"\r\n" + b"".join(n + b": v\r\n" for n in names) + rest


def test_made_up_header_names_cost_one_look_for_folding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block of made-up names is read in one pass: folding (RFC 3261 §7.3.1) is
    looked for once per message, not once per unknown line (2,000 made-up names
    in 23 kB cost 90 ms when each line searched the whole block)."""
    calls: list[int] = []
    real = message._has_folding

    def counting(buf: bytes) -> bool:
        calls.append(1)
        return real(buf)

    monkeypatch.setattr(message, "_has_folding", counting)
    names = [b"X-Made-Up-%d" % i for i in range(300)]
    for data in (_with_names(names), _with_names(names[:1])):
        calls.clear()
        msg = parse(data)
        assert isinstance(msg, Request) and msg.header(b"x-made-up-0") == [b"v"]
        assert len(calls) <= 1  # the C parse declines unknown names; Python looks once
    folded = _with_names([b"X-Fold-%d" % i for i in range(50)]).replace(
        b"X-Fold-7: v", b"X-Fold-7: v\r\n w"
    )
    calls.clear()
    assert parse(folded).header(b"x-fold-7") == [b"v   w"]  # still unfolded (offsets kept)


def _quoted_pair_at(data: bytes, p: int) -> bool:
    """The reference: octet ``p`` is a quoted-pair's second octet in a quoted
    string of its line, walked from the line's start (the eleventh session's
    reader, one walk per NUL)."""
    ls = data.rfind(b"\r\n", 0, p)
    i = 0 if ls < 0 else ls + 2
    quoted = False
    while i < p:
        c = data[i]
        if quoted and c == 0x5C:
            if i + 1 == p:
                return True
            i += 2
            continue
        if c == 0x22:
            quoted = not quoted
        i += 1
    return False


@given(st.lists(st.sampled_from([b'"', b"\\", b"\0", b"\r\n", b"a", b" "]), max_size=30))
def test_the_nul_walk_agrees_with_a_walk_per_nul(parts: list[bytes]) -> None:
    data = b"".join(parts)
    want = any(not _quoted_pair_at(data, p) for p, c in enumerate(data) if c == 0)
    assert message._stray_nul(data, 0, len(data)) == want


def test_escaped_nuls_cost_one_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of quoted-pair NULs on one line (RFC 3261 §25.1 allows them) are
    checked in one walk per message, not one walk from the line's start per NUL
    (2,000 of them in 4 kB cost 128 ms so, 20,000 in a datagram seconds)."""
    calls: list[int] = []
    real = message._stray_nul

    def counting(data: bytes, start: int, end: int) -> bool:
        calls.append(1)
        return real(data, start, end)

    monkeypatch.setattr(message, "_stray_nul", counting)
    head, _, body = INV.partition(b"\r\n\r\n")
    ok = head + b'\r\nSubject: "' + b"\\\0" * 2000 + b'"\r\n\r\n' + body
    assert isinstance(parse(ok), Request) and len(calls) == 1
    calls.clear()
    bad = head + b'\r\nSubject: "' + b"\\\0" * 2000 + b'"\0\r\n\r\n' + body
    with pytest.raises(SIPError) as exc:
        parse(bad)
    assert exc.value.kind == "bad_header" and len(calls) == 1


def test_made_up_header_names_do_not_fill_the_spelling_table_for_good() -> None:
    """At _NAMES_MAX remembered spellings the learned ones are forgotten, so a
    spelling seen after a flood of made-up names is learned again; the seeded
    names and a header index_header made eager stay."""
    eager = message.index_header(b"X-Trusted-Test-Provider")
    for k in range(3):
        names = [b"X-Flood-%d-%d" % (k, i) for i in range(message._NAMES_MAX // 2)]
        parse(_with_names(names))
        assert len(message._CANON) <= message._NAMES_MAX
    parse(_with_names([b"X-Late-Name"]))
    assert message._FAST.get(b"X-Late-Name") == b""  # learned
    assert message._FAST[b"P-Asserted-Identity"] == b"p-asserted-identity"
    assert all(message._CANON.get(sp) == c for sp, c in message._SEEDED.items())
    msg = parse(_with_names([b"X-Trusted-Test-Provider"]))
    assert msg.indexed.get(eager) is not None  # still indexed in the one pass
