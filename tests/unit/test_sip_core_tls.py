"""ProxyCore with the softswitch over TLS (CoreConfig.softswitch_transport, issue 14):
what leaves towards it, what is taken as coming from it, and the caller's side.
Sans-I/O, fake clock."""

from __future__ import annotations

import pytest
from test_sip_core import (
    CALLER,
    SS,
    caller_bye,
    invite,
    make,
    one,
    record_route,
    response_to,
    ss_bye,
)

from proxy.sip import message
from proxy.sip.message import Request, parse
from proxy.sip.relay import scan_request


def test_invite_to_a_tls_softswitch_and_its_bye_back() -> None:
    core, screen = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(invite(), CALLER, "udp", 1.0)
    data, dest, transport = one(core)
    assert dest == SS and transport == "tls"
    fwd = parse(data)
    assert isinstance(fwd, Request)
    assert fwd.vias[0].transport == b"TLS"
    # RFC 5658 double Record-Route: sips: facing the softswitch, UDP the caller
    rr = record_route(fwd)
    assert rr == [b"<sips:127.0.0.1:5061;lr>", b"<sip:127.0.0.1:5060;lr>"]
    # the softswitch's 200 comes back on our connection (src = its address)
    core.datagram_received(response_to(data, 200, b"OK"), SS, "tls", 1.1)
    _, dest, transport = one(core)
    assert dest == CALLER and transport == "udp"
    # the callee's BYE on that connection goes to the caller's Contact over UDP
    bye = invite(
        method=b"BYE",
        to_tag=b"from1",
        branch=b"z9hG4bK-ssbye",
        via_host=b"127.0.0.2:5070",
        via_transport=b"TLS",
        ruri=b"sip:alice@127.0.0.3:5061",
        extra=b"Route: " + b", ".join(rr),
        body=b"",
    )
    core.datagram_received(bye, SS, "tls", 2.0)
    out, dest, transport = one(core)
    assert dest == CALLER and transport == "udp"
    assert parse(out).header(b"route") == []
    assert len(screen.calls) == 1


def test_a_request_over_udp_from_the_softswitch_address_is_a_callers() -> None:
    """Over TLS the softswitch's requests come on our connection: the same address
    over UDP is screened as a caller and sent to the softswitch."""
    core, screen = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(invite(via_host=b"127.0.0.2:5070"), SS, "udp", 1.0)
    _, dest, transport = one(core)
    assert dest == SS and transport == "tls"
    assert len(screen.calls) == 1


# --- sips: Record-Route facing a TLS peer (RFC 3261 §16.6 step 4, RFC 5630 §4.3) ---

TLS_CALLER = ("127.0.0.3", 40001)


def _tls_invite() -> bytes:
    return invite(via_transport=b"TLS", via_host=b"127.0.0.3:5061")


def test_tls_caller_udp_softswitch_gets_a_sips_entry_and_its_bye_pops_both() -> None:
    """RFC 5658 double Record-Route: sip: (UDP) facing the softswitch on top, sips:
    facing the TLS caller; the caller's BYE naming both (its route set reversed)
    leaves with no Route left, over UDP to the softswitch."""
    core, _ = make(tcp_port=5062, tls_port=5063)
    core.datagram_received(_tls_invite(), TLS_CALLER, "tls", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (SS, "udp")
    assert record_route(parse(data)) == [
        b"<sip:127.0.0.1:5060;lr>",
        b"<sips:127.0.0.1:5063;lr>",
    ]
    assert b"transport=tls" not in data
    for method in (b"ACK", b"BYE"):
        req = invite(
            method=method,
            via_transport=b"TLS",
            to_tag=b"ss1",
            branch=b"z9hG4bK-in-" + method,
            body=b"",
            extra=b"Route: <sips:127.0.0.1:5063;lr>, <sip:127.0.0.1:5060;lr>",
        )
        core.datagram_received(req, TLS_CALLER, "tls", 0.1)
        out, dest, transport = one(core)
        assert (dest, transport) == (SS, "udp")
        fwd = parse(out)
        assert fwd.method == method and fwd.header(b"route") == []


def test_tls_caller_and_tls_softswitch_one_sips_entry() -> None:
    core, _ = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(_tls_invite(), TLS_CALLER, "tls", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (SS, "tls")
    assert record_route(parse(data)) == [b"<sips:127.0.0.1:5061;lr>"]
    # the caller's BYE: its only Route entry, ours, removed (loose routing, §16.4)
    bye = caller_bye(b"<sips:127.0.0.1:5061;lr>", via_transport=b"TLS", branch=b"z9hG4bK-bye")
    core.datagram_received(bye, TLS_CALLER, "tls", 0.1)
    out, dest, transport = one(core)
    assert (dest, transport) == (SS, "tls") and parse(out).header(b"route") == []


def test_transport_tls_entries_of_older_dialogs_are_still_ours() -> None:
    """Dialogs set up before the change echo <sip:...;transport=tls;lr>: still popped."""
    core, _ = make(tcp_port=5062, tls_port=5063)
    bye = caller_bye(
        b"<sip:127.0.0.1:5063;transport=tls;lr>, <sip:127.0.0.1:5060;lr>", via_transport=b"TLS"
    )
    core.datagram_received(bye, TLS_CALLER, "tls", 0.0)
    out, dest, transport = one(core)
    assert (dest, transport) == (SS, "udp") and parse(out).header(b"route") == []


def test_no_sips_entry_towards_udp_or_tcp_peers() -> None:
    """A sips: entry never faces a UDP or TCP peer: a UDP caller behind a TLS
    softswitch sees sip: (its own transport), the softswitch sees sips:; a TCP
    caller sees transport=tcp."""
    core, _ = make(softswitch_transport="tls", tcp_port=5062, tls_port=5061)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    data, _, _ = one(core)
    assert record_route(parse(data)) == [
        b"<sips:127.0.0.1:5061;lr>",
        b"<sip:127.0.0.1:5060;lr>",
    ]
    core.datagram_received(
        invite(via_transport=b"TCP", branch=b"z9hG4bK-tcp"), ("127.0.0.3", 40002), "tcp", 0.0
    )
    data, _, _ = one(core)
    assert record_route(parse(data)) == [
        b"<sips:127.0.0.1:5061;lr>",
        b"<sip:127.0.0.1:5062;transport=tcp;lr>",
    ]
    core, _ = make(tcp_port=5062, tls_port=5061)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert record_route(parse(one(core)[0])) == [b"<sip:127.0.0.1:5060;lr>"]


@pytest.mark.parametrize(
    ("target", "dest"),
    [
        (b"sips:alice@127.0.0.3", ("127.0.0.3", 5061)),
        (b"sips:alice@127.0.0.3:5071;transport=udp", ("127.0.0.3", 5071)),
        (b"sips:alice@127.0.0.3:5071;transport=tcp", ("127.0.0.3", 5071)),
    ],
)
def test_sips_request_uri_or_route_forces_tls(target: bytes, dest: tuple[str, int]) -> None:
    """RFC 3261 §26.2.2, RFC 5630 §3.1.3: the hop to a sips: URI is TLS, whatever
    transport parameter the URI carries; as Request-URI and as the next Route entry."""
    core, _ = make(tls_port=5063)
    bye = ss_bye(target, to_tag=b"c")
    core.datagram_received(bye, SS, "udp", 0.0)
    assert one(core)[1:] == (dest, "tls")
    routed = ss_bye(
        b"sip:alice@127.0.0.9:5999", b"<sips:127.0.0.1:5063;lr>, <%s;lr>" % target, to_tag=b"c"
    )
    core.datagram_received(routed, SS, "udp", 0.0)
    out, got, transport = one(core)
    assert (got, transport) == (dest, "tls")
    assert parse(out).header(b"route") == [b"<%s;lr>" % target]


def test_lean_and_full_forward_of_a_udp_callers_bye_behind_a_tls_softswitch() -> None:
    """The lean C forward (relay.scan_request) knows the double Route line a UDP
    caller echoes when the softswitch is over TLS (our sip: entry, then our sips:
    one): it sends exactly the bytes of the full path, with neither entry left."""
    outs = []
    for lean in (True, False):
        core, _ = make(softswitch_transport="tls", tls_port=5061, lean_relay=lean)
        bye = caller_bye(b"<sip:127.0.0.1:5060;lr>, <sips:127.0.0.1:5061;lr>")
        if lean and message.PARSER.c_request is not None:  # the C forward takes it
            assert core._lean_route is not None
            assert scan_request(bye, CALLER[0], CALLER[1], core._lean_route) is not None
        core.datagram_received(bye, CALLER, "udp", 0.0)
        out, dest, transport = one(core)
        assert (dest, transport) == (SS, "tls") and parse(out).header(b"route") == []
        outs.append(out)
    assert outs[0] == outs[1]
    # a Content-Length line in another spelling: the full path writes it plainly
    # for the stream (_stream_length), and the lean forward leaves it to it
    for spelling in (b"Content-Length:  0", b"Content-Length: 00", b"l: 0", b"content-length: 0"):
        outs = []
        for lean in (True, False):
            core, _ = make(softswitch_transport="tls", tls_port=5061, lean_relay=lean)
            bye = caller_bye(b"<sip:127.0.0.1:5060;lr>, <sips:127.0.0.1:5061;lr>")
            core.datagram_received(bye.replace(b"Content-Length: 0", spelling), CALLER, "udp", 0.0)
            outs.append(one(core)[0])
        assert outs[0] == outs[1] and b"\r\nContent-Length: 0\r\n" in outs[0], spelling


@pytest.mark.parametrize("method", [b"INVITE", b"BYE"])
def test_a_udp_request_without_content_length_gets_one_towards_a_stream(method: bytes) -> None:
    """Over UDP Content-Length may be left out: the body is the rest of the
    datagram (RFC 3261 §18.3). On a stream it must be there (§20.14), or the
    reader takes the message to end with its headers. A caller's INVITE with
    no Content-Length and a second INVITE as its body was sent on to a TLS
    softswitch as it came, and the softswitch read a second request, from a
    blocked caller, that the screen never saw. The forward carries the
    body's length now; over UDP nothing is added."""
    smuggled = (
        b"INVITE sip:+12025550123@127.0.0.2:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS 10.0.0.9;branch=z9hG4bKsmuggled\r\n"
        b"From: <sip:+12127369999@10.0.0.9>;tag=1\r\nTo: <sip:+12025550123@x>\r\n"
        b"Call-ID: smuggled\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    route = b"<sip:127.0.0.1:5060;lr>, <sips:127.0.0.1:5061;lr>" if method == b"BYE" else b""
    extra = b"Route: " + route if route else b""
    msg = invite(method=method, body=smuggled, extra=extra, to_tag=b"t1" if route else None)
    msg = msg.replace(b"Content-Length: %d\r\n" % len(smuggled), b"")
    assert b"Content-Length" not in msg.split(b"\r\n\r\n", 1)[0]
    for transport, want in (("tls", True), ("udp", False)):
        core, screen = make(softswitch_transport=transport, tls_port=5061)
        core.datagram_received(msg, CALLER, "udp", 1.0)
        data, dest, out = one(core)
        assert dest == SS and out == transport
        head, _, body = data.partition(b"\r\n\r\n")
        assert body == smuggled
        lengths = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
        assert lengths == ([b"Content-Length: %d" % len(smuggled)] if want else [])
        if want:
            # a stream reader takes the forwarded request whole, the smuggled one as its body
            assert message.frame_stream(data + b"x") == (data, len(data))


@pytest.mark.parametrize(
    "spelling",
    [b"Content-Length:\r\n %d", b"l: %d", b"Content-Length : %d", b"content-length:\t00%d"],
)
def test_the_content_length_line_goes_on_a_stream_in_one_plain_spelling(spelling: bytes) -> None:
    """Folded, compact, a space before the colon, leading zeros: all legal (RFC
    3261 §7.3.1, §20.14) and all read by our parser, but a stream reader that
    frames messages by a simpler reading of Content-Length would take another
    length and read the rest of the body as a next request. Towards a stream
    the line is written ``Content-Length: N``; over UDP the bytes stay."""
    body = b"v=0\r\n"
    msg = invite(body=body).replace(b"Content-Length: 5", spelling % 5)
    for transport in ("tls", "udp"):
        core, _ = make(softswitch_transport=transport, tls_port=5061)
        core.datagram_received(msg, CALLER, "udp", 1.0)
        data, _, _ = one(core)
        assert parse(data).body == body
        plain = b"\r\nContent-Length: 5\r\n" in data and (spelling % 5) not in data
        assert plain == (transport == "tls"), data


def test_a_far_end_response_without_content_length_is_framed_for_a_tls_softswitch() -> None:
    """The softswitch (over TLS) calls out through the proxy; the far end answers
    over UDP with no Content-Length and a request as the body. Relayed on the
    softswitch's TLS connection as it came, that request would be read there
    as one the proxy sent. The relayed response carries the body's length."""
    core, _ = make(softswitch_transport="tls", tls_port=5061)
    out = invite(ruri=b"sip:bob@127.0.0.3:5061", via_host=b"127.0.0.2:5070", via_transport=b"TLS")
    core.datagram_received(out, SS, "tls", 1.0)
    fwd, dest, _ = one(core)
    smuggled = invite(method=b"BYE", to_tag=b"t9", body=b"")
    resp = response_to(fwd, 200, b"OK").replace(b"Content-Length: 0\r\n", b"") + smuggled
    core.datagram_received(resp, dest, "udp", 1.1)
    data, back, transport = one(core)
    assert (back, transport) == (SS, "tls")
    assert message.frame_stream(data + b"x") == (data, len(data))
    relayed = parse(data)
    assert relayed.body == smuggled
    assert [v.host for v in relayed.vias] == [b"127.0.0.2"]  # ours removed
    # without a body and without Content-Length: the line goes in, our Via still out
    core.datagram_received(out.replace(b"caller-1", b"caller-2"), SS, "tls", 2.0)
    fwd, dest, _ = one(core)
    resp = response_to(fwd, 180, b"Ringing").replace(b"Content-Length: 0\r\n", b"")
    core.datagram_received(resp, dest, "udp", 2.1)
    data, _, _ = one(core)
    assert message.frame_stream(data + b"x") == (data, len(data))
    assert [v.host for v in parse(data).vias] == [b"127.0.0.2"]


@pytest.mark.parametrize("end", [b"Content-Length: 0", b"Content-Length: 0\r\n", b""])
def test_a_datagram_without_its_blank_line_is_completed_for_a_stream(end: bytes) -> None:
    """A datagram may end with its last header line (the parser takes it). On a
    stream the blank line is what ends the headers: without it the reader
    would take the next message on the connection for more headers. It is
    added (with a Content-Length when none came)."""
    msg = invite(body=b"").replace(b"Content-Length: 0\r\n\r\n", end)
    core, _ = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(msg, CALLER, "udp", 1.0)
    data, _, transport = one(core)
    assert transport == "tls" and data.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    assert message.frame_stream(data + b"INVITE") == (data, len(data))
