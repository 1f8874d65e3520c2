"""ProxyCore scenarios driven through datagram_received with fake clocks (no event loop)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sipscreen_testlib import unstamped

from proxy.sip import message
from proxy.sip.core import (
    BRANCH_PREFIX,
    Answer,
    CoreConfig,
    ProxyCore,
    ScreenError,
    unwrap_handoff,
    wrap_handoff,
)
from proxy.sip.message import Request, Response, parse
from proxy.sip.relay import scan_request

PROXY = ("127.0.0.1", 5060)
SS = ("127.0.0.2", 5070)
CALLER = ("127.0.0.3", 5061)
SECRET = b"test-secret"


def invite(
    *,
    branch: bytes = b"z9hG4bK-caller-1",
    via_host: bytes = b"127.0.0.3:5061",
    via_params: bytes = b"",
    via_transport: bytes = b"UDP",
    method: bytes = b"INVITE",
    cseq: int = 1,
    to_tag: bytes | None = None,
    max_forwards: bytes | None = b"70",
    extra: bytes = b"",
    ruri: bytes = b"sip:+12025550123@127.0.0.2:5070",
    body: bytes = b"v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\n",
) -> bytes:
    to = b"<sip:+12025550123@example.com>" + (b";tag=" + to_tag if to_tag else b"")
    lines = [
        b"%s %s SIP/2.0" % (method, ruri),
        b"Via: SIP/2.0/%s %s;branch=%s%s" % (via_transport, via_host, branch, via_params),
        b'From: "Alice" <sip:+13035551111@example.net>;tag=from1',
        b"To: " + to,
        b"Call-ID: call-1@127.0.0.3",
        b"CSeq: %d %s" % (cseq, method),
        b"Contact: <sip:alice@127.0.0.3:5061>",
    ]
    if max_forwards is not None:
        lines.append(b"Max-Forwards: " + max_forwards)
    if extra:
        lines.append(extra.rstrip(b"\r\n"))
    lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def response_to(fwd: bytes, status: int, reason: bytes, extra: bytes = b"") -> bytes:
    """What the softswitch would answer to the request ``fwd`` (all its Vias copied)."""
    req = parse(fwd)
    assert isinstance(req, Request)
    vias = b"".join(b"Via: " + req.raw[v.span[0] : v.span[1]] + b"\r\n" for v in req.vias)
    return (
        b"SIP/2.0 %d %s\r\n" % (status, reason)
        + vias
        + b"From: "
        + req.from_.raw
        + b"\r\nTo: "
        + req.to.raw
        + b";tag=ss1\r\nCall-ID: "
        + req.call_id
        + b"\r\nCSeq: %d %s\r\n" % req.cseq
        + extra
        + b"Content-Length: 0\r\n\r\n"
    )


class Screen:
    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer
        self.calls: list[tuple[bytes, tuple[str, int], str]] = []

    def __call__(self, req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        self.calls.append((req.call_id, src, transport))
        return self.answer


def caller_bye(route: bytes = b"", *, to_tag: bytes = b"ss1", **kw: Any) -> bytes:
    """An in-dialog BYE (no body) from the caller; ``route``: its Route header value."""
    extra = b"Route: " + route if route else b""
    return invite(method=b"BYE", to_tag=to_tag, body=b"", extra=extra, **kw)


def ss_bye(ruri: bytes, route: bytes = b"", *, to_tag: bytes = b"from-callee", **kw: Any) -> bytes:
    """An in-dialog BYE from the softswitch (its Via 127.0.0.2:5070) to ``ruri``."""
    return caller_bye(route, to_tag=to_tag, ruri=ruri, via_host=b"127.0.0.2:5070", **kw)


def record_route(msg: Request | Response) -> list[bytes]:
    """The Record-Route values of ``msg`` without our dialog stamps (``;sdt=``, tested
    on their own below)."""
    return [unstamped(v) for v in msg.header(b"record-route")]


def make(answer: Answer | None = None, **kw: object) -> tuple[ProxyCore, Screen]:
    screen = Screen(answer)
    cfg = CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET, **kw)  # type: ignore[arg-type]
    return ProxyCore(cfg, screen), screen


def one(core: ProxyCore) -> tuple[bytes, tuple[str, int], str]:
    out = core.datagrams_to_send()
    assert len(out) == 1, out
    return out[0]


def test_forward_initial_invite() -> None:
    core, screen = make()
    core.datagram_received(invite(via_params=b";rport"), ("127.0.0.9", 5099), "udp", 1.0)
    data, dest, transport = one(core)
    assert dest == SS and transport == "udp"
    assert len(screen.calls) == 1
    msg = parse(data)
    assert isinstance(msg, Request)
    ours, theirs = msg.vias
    assert ours.sent_by == b"127.0.0.1:5060" and ours.transport == b"UDP"
    assert ours.branch is not None and ours.branch.startswith(BRANCH_PREFIX)
    # RFC 3261 §18.2.1 received (sent-by differs), RFC 3581 rport filled
    assert theirs.received == b"127.0.0.9"
    assert theirs.rport == b"5099"
    assert theirs.branch == b"z9hG4bK-caller-1"
    assert msg.max_forwards == 69
    assert record_route(msg) == [b"<sip:127.0.0.1:5060;lr>"]
    assert msg.body == b"v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\n"
    assert msg.content_length == len(msg.body)
    assert core.stats.forwarded_requests == 1


def test_branch_is_deterministic_and_shared_with_cancel_and_ack() -> None:
    core, _ = make()
    other, _ = make()  # another worker/process with the same secret
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    b_inv = parse(one(core)[0]).vias[0].branch
    other.datagram_received(invite(), CALLER, "udp", 0.0)
    assert parse(one(other)[0]).vias[0].branch == b_inv
    core.datagram_received(invite(method=b"CANCEL", body=b""), CALLER, "udp", 0.0)
    cancel, dest, _ = one(core)
    assert dest == SS and parse(cancel).vias[0].branch == b_inv
    # ACK to a non-2xx final response carries the INVITE's branch and CSeq number
    core.datagram_received(invite(method=b"ACK", to_tag=b"ss1", body=b""), CALLER, "udp", 0.0)
    ack, dest, _ = one(core)
    assert dest == SS and parse(ack).vias[0].branch == b_inv
    # a new transaction gets a new branch
    core.datagram_received(invite(branch=b"z9hG4bK-other", cseq=2), CALLER, "udp", 0.0)
    assert parse(one(core)[0]).vias[0].branch != b_inv


def test_no_received_when_sent_by_matches_source() -> None:
    core, _ = make()
    raw = invite()
    core.datagram_received(raw, CALLER, "udp", 0.0)
    data, _, _ = one(core)
    theirs = parse(data).vias[1]
    assert theirs.received is None and theirs.rport is None
    # apart from the added lines and Max-Forwards the bytes are untouched
    assert data.endswith(
        raw[raw.find(b"\r\nVia:") :].replace(b"Max-Forwards: 70", b"Max-Forwards: 69")
    )


def test_max_forwards_added_when_absent() -> None:
    core, _ = make()
    core.datagram_received(invite(max_forwards=None), CALLER, "udp", 0.0)
    assert parse(one(core)[0]).max_forwards == 70


def test_483_at_zero() -> None:
    core, screen = make()
    core.datagram_received(invite(max_forwards=b"0"), CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    resp = parse(data)
    assert isinstance(resp, Response) and resp.status == 483
    assert dest == CALLER and screen.calls == []
    assert resp.to.tag is not None


def test_416_and_420() -> None:
    core, _ = make()
    core.datagram_received(invite(ruri=b"http://example.com/"), CALLER, "udp", 0.0)
    assert parse(one(core)[0]).status == 416  # type: ignore[union-attr]
    core.datagram_received(invite(extra=b"Proxy-Require: foo, bar"), CALLER, "udp", 0.0)
    resp = parse(one(core)[0])
    assert isinstance(resp, Response) and resp.status == 420
    assert resp.header(b"unsupported") == [b"foo, bar"]


@pytest.mark.parametrize(
    "ruri",
    [
        b"urn:service:sos",
        b"urn:service:sos.police",
        b"URN:Service:SOS.Fire",
        b"urn:service:counseling",
    ],
)
def test_service_urn_request_uri_is_relayed_and_screened(ruri: bytes) -> None:
    """RFC 5031 / RFC 6881 §6.2.1: an emergency call's urn:service:sos Request-URI goes to
    the softswitch (it was answered 416 Unsupported URI Scheme); the INVITE is screened,
    and the CANCEL and in-dialog requests with the same Request-URI follow it."""
    core, screen = make()
    core.datagram_received(invite(ruri=ruri), CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    fwd = parse(data)
    assert isinstance(fwd, Request) and fwd.ruri == ruri and dest == SS
    assert len(screen.calls) == 1
    core.datagram_received(invite(ruri=ruri, method=b"CANCEL", body=b""), CALLER, "udp", 0.1)
    data, dest, _ = one(core)
    assert parse(data).method == b"CANCEL" and dest == SS  # type: ignore[union-attr]
    core.datagram_received(
        invite(ruri=ruri, method=b"ACK", to_tag=b"ss1", body=b""), CALLER, "udp", 0.2
    )
    assert one(core)[1] == SS


@pytest.mark.parametrize(
    "ruri",
    [
        b"urn:isbn:0451450523",  # a URN, but no service
        b"urn:service:",  # no service name
        b"urn:service:sos.",  # empty sub-service label
        b"urn:services:sos",
        b"nobodyKnowsThisScheme:totallyopaquecontent",  # RFC 4475 §3.3.2 unkscm
        b"soap.beep://192.0.2.103:3002",  # RFC 4475 §3.3.11 novelsc
    ],
)
def test_other_uri_schemes_still_416(ruri: bytes) -> None:
    core, screen = make()
    core.datagram_received(invite(ruri=ruri), CALLER, "udp", 0.0)
    assert parse(one(core)[0]).status == 416  # type: ignore[union-attr]
    assert screen.calls == []


def test_response_routing_pops_our_via() -> None:
    core, _ = make()
    core.datagram_received(invite(via_params=b";rport"), ("127.0.0.9", 5099), "udp", 0.0)
    fwd, _, _ = one(core)
    ringing = response_to(fwd, 180, b"Ringing")
    core.datagram_received(ringing, SS, "udp", 0.1)
    data, dest, transport = one(core)
    assert dest == ("127.0.0.9", 5099) and transport == "udp"
    resp = parse(data)
    assert isinstance(resp, Response) and resp.status == 180
    assert len(resp.vias) == 1 and resp.vias[0].branch == b"z9hG4bK-caller-1"
    top_line = ringing[
        ringing.find(b"\r\n") + 2 : ringing.find(b"\r\n", ringing.find(b"\r\n") + 2) + 2
    ]
    assert data == ringing.replace(top_line, b"")
    assert core.stats.forwarded_responses == 1


def test_response_without_rport_goes_to_sent_by_port() -> None:
    core, _ = make()
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    fwd, _, _ = one(core)
    core.datagram_received(response_to(fwd, 200, b"OK"), SS, "udp", 0.1)
    assert one(core)[1] == CALLER


def test_six_xx_relayed_byte_identical_except_our_via() -> None:
    core, _ = make()
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    fwd, _, _ = one(core)
    extra = (
        b'Reason: SIP;cause=603;text="Blocked per 47 CFR 64.1200(k)"\r\n'
        b"Call-Info: <https://example.com/jcard>;purpose=jwscard\r\n"
    )
    decline = response_to(fwd, 608, b"Rejected", extra)
    core.datagram_received(decline, SS, "udp", 0.1)
    data, dest, _ = one(core)
    assert dest == CALLER
    ours = parse(fwd).vias[0]
    our_line = b"Via: " + fwd[ours.span[0] : ours.span[1]] + b"\r\n"
    assert our_line in decline
    assert data == decline.replace(our_line, b"")
    assert data.startswith(b"SIP/2.0 608 Rejected\r\n") and extra in data


def test_response_with_foreign_top_via_dropped() -> None:
    core, _ = make()
    resp = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bKsc00\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    core.datagram_received(resp, SS, "udp", 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["foreign_via"] == 1


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (b"255.255.255.255", "broadcast"),
        (b"224.0.0.1", "broadcast"),
        (b"0.0.0.0", "broadcast"),
        (b"[ff02::1]", "broadcast"),
        (b"caller.example.com", "unroutable"),
    ],
)
def test_response_to_forbidden_or_unresolvable_next_hop_dropped(host: bytes, reason: str) -> None:
    core, _ = make()
    resp = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsc00\r\n"
        b"Via: SIP/2.0/UDP " + host + b";branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    core.datagram_received(resp, SS, "udp", 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped[reason] == 1


def test_options_to_self_answered() -> None:
    core, _ = make()
    opts = invite(
        method=b"OPTIONS", ruri=b"sip:127.0.0.1:5060", via_host=b"127.0.0.2:5070", body=b""
    )
    core.datagram_received(opts, SS, "udp", 0.0)
    data, dest, _ = one(core)
    resp = parse(data)
    assert isinstance(resp, Response) and resp.status == 200
    assert dest == SS
    assert resp.header(b"allow") and resp.header(b"accept") == [b"application/sdp"]
    # Max-Forwards 0 does not matter for OPTIONS addressed to us
    core.datagram_received(
        invite(
            method=b"OPTIONS",
            ruri=b"sip:127.0.0.1",
            via_host=b"127.0.0.2:5070",
            max_forwards=b"0",
            body=b"",
        ),
        SS,
        "udp",
        0.0,
    )
    assert parse(one(core)[0]).status == 200  # type: ignore[union-attr]


def test_options_elsewhere_is_forwarded() -> None:
    core, _ = make()
    core.datagram_received(invite(method=b"OPTIONS", body=b""), CALLER, "udp", 0.0)
    assert one(core)[1] == SS


REJECT = Answer(603, b"Decline", b'Reason: SIP;cause=603;text="blocked"\r\n')


def test_rejected_invite_transaction_timers_and_ack() -> None:
    core, screen = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 100.0)
    final, dest, _ = one(core)
    assert dest == CALLER
    resp = parse(final)
    assert isinstance(resp, Response) and resp.status == 603
    assert resp.header(b"reason") == [b'SIP;cause=603;text="blocked"']
    tag = resp.to.tag
    assert tag is not None and tag.startswith(b"sc0.")
    assert core.stats.rejected == 1 and core.stats.local_responses[603] == 1

    # retransmitted INVITE: same final response again, not screened again
    core.datagram_received(invite(), CALLER, "udp", 100.2)
    assert one(core)[0] == final
    assert len(screen.calls) == 1

    # timer G: 0.5, 1, 2, 4, 4 s between retransmissions (RFC 3261 §17.2.1)
    fired = []
    t = core.get_timer()
    while t is not None and len(fired) < 5:
        core.handle_timer(t)
        assert one(core)[0] == final
        fired.append(t)
        t = core.get_timer()
    gaps = [round(b - a, 6) for a, b in zip([100.0, *fired], fired, strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 4.0]

    # the ACK is absorbed, never forwarded; the transaction goes Confirmed
    ack = invite(method=b"ACK", to_tag=tag, body=b"")
    core.datagram_received(ack, CALLER, "udp", 112.0)
    assert core.datagrams_to_send() == []
    tx = next(iter(core.transactions._tx.values()))
    assert tx.state.value == "confirmed"
    core.datagram_received(ack, CALLER, "udp", 112.1)  # ACK retransmission absorbed
    assert core.datagrams_to_send() == []
    # timer I (T4 = 5 s) ends it; no more retransmissions
    t = core.get_timer()
    assert t == pytest.approx(117.0)
    core.handle_timer(t)
    assert core.datagrams_to_send() == [] and len(core.transactions) == 0
    assert core.get_timer() is None
    assert core.stats.dropped["ack_absorbed"] == 2


def test_timer_h_without_ack() -> None:
    core, _ = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    one(core)
    sent = 0
    t = core.get_timer()
    while t is not None:
        assert t <= 32.0 + 1e-9
        core.handle_timer(t)
        sent += len(core.datagrams_to_send())
        t = core.get_timer()
    # G at 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 -> 10 retransmissions before H at 32 s
    assert sent == 10
    assert core.transactions.ack_timeouts == 1 and len(core.transactions) == 0


def test_tcp_rejection_has_no_retransmissions() -> None:
    core, _ = make(REJECT)
    core.datagram_received(invite(), ("127.0.0.3", 40000), "tcp", 0.0)
    final, dest, transport = one(core)
    assert dest == ("127.0.0.3", 40000) and transport == "tcp"
    assert core.get_timer() == pytest.approx(32.0)  # only timer H


def test_cancel_of_rejected_invite_gets_200() -> None:
    core, _ = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    one(core)
    core.datagram_received(invite(method=b"CANCEL", body=b""), CALLER, "udp", 0.1)
    data, dest, _ = one(core)
    resp = parse(data)
    assert isinstance(resp, Response) and resp.status == 200 and resp.cseq[1] == b"CANCEL"
    assert dest == CALLER


def _our_entry(core: ProxyCore) -> bytes:
    """Our stamped Record-Route entry for the dialog of ``invite()``, as the
    caller echoes it in its Route."""
    allowing, _ = make()
    allowing.datagram_received(invite(), CALLER, "udp", 0.0)
    (rr,) = parse(one(allowing)[0]).header(b"record-route")
    return rr


def test_in_dialog_requests_not_screened_and_route_removed() -> None:
    core, screen = make(REJECT)
    bye = caller_bye(b"<sip:127.0.0.1:5060;lr>", cseq=2, ruri=b"sip:ss@127.0.0.2:5070")
    core.datagram_received(bye, CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    assert dest == SS and screen.calls == []
    msg = parse(data)
    assert msg.header(b"route") == [] and record_route(msg) == []
    # a re-INVITE of a dialog we record-routed (its Route carries our stamp) is
    # not screened either
    rr = _our_entry(core)
    core.datagram_received(invite(to_tag=b"ss1", cseq=3, extra=b"Route: " + rr), CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    assert dest == SS and screen.calls == [] and b"Route:" not in data
    assert core.stats.in_dialog_screened == 0


def test_record_route_is_stamped_with_the_dialog() -> None:
    """Each Record-Route entry we add carries ``;sdt=`` and 16 hex digits, a keyed
    hash of the Call-ID and the caller's From tag: the same dialog gives the same
    stamp, another Call-ID, From tag or secret another."""
    core, _ = make()
    rr = _our_entry(core)
    assert re.fullmatch(rb"<sip:127\.0\.0\.1:5060;lr;sdt=[0-9a-f]{16}>", rr), rr
    stamps = set()
    for other in (
        invite(),
        invite().replace(b"call-1@", b"call-2@"),
        invite().replace(b"tag=from1", b"tag=from2"),
    ):
        core.datagram_received(other, CALLER, "udp", 0.0)
        (entry,) = parse(one(core)[0]).header(b"record-route")
        stamps.add(entry)
    assert len(stamps) == 3 and rr in stamps
    keyed = ProxyCore(CoreConfig(PROXY[0], PROXY[1], SS, secret=b"another"), Screen(None))
    keyed.datagram_received(invite(), CALLER, "udp", 0.0)
    assert parse(one(keyed)[0]).header(b"record-route") != [rr]


@pytest.mark.parametrize(
    "route",
    [
        None,  # a To tag alone
        b"<sip:127.0.0.1:5060;lr>",  # our entry without the stamp
        b"<sip:127.0.0.1:5060;lr;sdt=0123456789abcdef>",  # a made-up stamp
        "other-dialog",  # a real stamp of another Call-ID
        "other-tag",  # a real stamp of the same Call-ID, another From tag
        "elsewhere",  # the real stamp on an entry that is not ours
    ],
)
def test_an_unstamped_in_dialog_invite_is_screened(route: bytes | str | None) -> None:
    """RFC 3261 §12.2.2: a UAS may take a request whose To tag matches no dialog as
    a new one, so an INVITE with a To tag that does not prove (by our stamp) that
    we admitted its dialog is screened like a new call: rejected here, answered
    with the To tag it came with, from a server transaction whose ACK is
    absorbed and whose retransmission is answered again, never forwarded."""
    core, screen = make(REJECT)
    if route == "other-dialog":
        other, _ = make()
        other.datagram_received(invite().replace(b"call-1@", b"call-9@"), CALLER, "udp", 0.0)
        (route,) = parse(one(other)[0]).header(b"record-route")
    elif route == "other-tag":
        other, _ = make()
        other.datagram_received(invite().replace(b"tag=from1", b"tag=fromX"), CALLER, "udp", 0.0)
        (route,) = parse(one(other)[0]).header(b"record-route")
    elif route == "elsewhere":
        route = _our_entry(core).replace(b"127.0.0.1:5060", b"127.0.0.2:5070")
    assert route is None or isinstance(route, bytes)
    extra = b"Route: " + route if route else b""
    data = invite(to_tag=b"forged", cseq=3, extra=extra)
    core.datagram_received(data, CALLER, "udp", 0.0)
    answer, dest, _ = one(core)
    assert dest == CALLER and answer.startswith(b"SIP/2.0 603"), answer
    assert len(screen.calls) == 1 and core.stats.in_dialog_screened == 1
    resp = parse(answer)
    assert isinstance(resp, Response) and resp.to.tag == b"forged"
    # the retransmitted INVITE is answered again, not screened again
    core.datagram_received(data, CALLER, "udp", 0.1)
    assert one(core)[0] == answer and len(screen.calls) == 1
    # its ACK (hop-by-hop, RFC 3261 §17.2.1) is absorbed, before and after the parse
    ack = invite(method=b"ACK", to_tag=b"forged", cseq=3, body=b"")
    core.datagram_received(ack, CALLER, "udp", 0.2)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["ack_absorbed"] == 1
    core.handle_timer(5.0)  # no timer G retransmission after the ACK
    assert [d for d, _, _ in core.datagrams_to_send() if d.startswith(b"SIP/")] == []


@pytest.mark.parametrize(
    ("change", "src"),
    [
        ((b"<sip:+13035551111@example.net>", b"<sip:+12025552001@example.net>"), CALLER),
        (
            (b"Max-Forwards: 70", b"Max-Forwards: 70\r\nP-Asserted-Identity: <tel:+12025552001>"),
            CALLER,
        ),
        (None, ("127.0.0.4", 5061)),  # another upstream address
    ],
)
def test_a_stamp_binds_the_caller_s_identities_and_upstream(
    change: tuple[bytes, bytes] | None, src: tuple[str, int]
) -> None:
    """A stamp obtained on an allowed call cannot carry another caller ID (From,
    P-Asserted-Identity) or another upstream's traffic: an INVITE with that
    dialog's Call-ID, From tag and stamp but a changed identity or source is
    screened as a new call."""
    core, screen = make(REJECT)
    rr = _our_entry(core)
    data = invite(to_tag=b"forged", cseq=3, extra=b"Route: " + rr)
    if change is not None:
        data = data.replace(*change)
    core.datagram_received(data, src, "udp", 0.0)
    answer, dest, _ = one(core)
    assert answer.startswith(b"SIP/2.0 603") and len(screen.calls) == 1
    # the unchanged re-INVITE from the caller passes unscreened
    again = invite(to_tag=b"ss1", cseq=4, extra=b"Route: " + rr, branch=b"z9hG4bK-re-2")
    core.datagram_received(again, CALLER, "udp", 0.1)
    assert one(core)[1] == SS and len(screen.calls) == 1


def test_the_far_side_s_re_invite_in_a_dialog_the_softswitch_set_up() -> None:
    """An outbound call (the softswitch's INVITE, forwarded by its Request-URI) is
    stamped with the softswitch's From tag and the To URI; the far side's
    re-INVITE names that tag in its To tag and that URI in its From and passes
    unscreened; with another To tag, or another From URI, it is screened."""
    core, screen = make()
    out = (
        ss_bye(b"sip:alice@127.0.0.3:5061")
        .replace(b"BYE", b"INVITE")
        .replace(b";tag=from-callee", b"")
    )
    assert b";tag=" in out.split(b"\r\nTo:")[0]  # the softswitch's From tag: from1
    core.datagram_received(out, SS, "udp", 0.0)
    fwd, dest, _ = one(core)
    assert dest == CALLER and screen.calls != []  # screened, as every initial INVITE
    screen.calls.clear()
    (rr,) = parse(fwd).header(b"record-route")
    # the far side (127.0.0.3) answers; later its re-INVITE: From = the callee, To
    # tag = the softswitch's From tag
    back = invite(to_tag=b"from1", cseq=7, extra=b"Route: " + rr, branch=b"z9hG4bK-far-1").replace(
        b'From: "Alice" <sip:+13035551111@example.net>;tag=from1',
        b"From: <sip:+12025550123@example.com>;tag=far1",
    )
    screen.answer = REJECT
    core.datagram_received(back, CALLER, "udp", 1.0)
    assert one(core)[1] == SS and screen.calls == []
    core.datagram_received(
        back.replace(b";tag=from1", b";tag=other").replace(b"far-1", b"far-2"), CALLER, "udp", 1.1
    )
    assert one(core)[0].startswith(b"SIP/2.0 603") and len(screen.calls) == 1
    other = back.replace(b"+12025550123@example.com>;tag=far1", b"+12025552001@x>;tag=far1")
    core.datagram_received(other.replace(b"far-1", b"far-3"), CALLER, "udp", 1.2)
    assert one(core)[0].startswith(b"SIP/2.0 603") and len(screen.calls) == 2


def test_an_in_dialog_invite_from_the_softswitch_is_not_screened() -> None:
    """The softswitch's own re-INVITE towards the caller needs no stamp (it is not
    what the screen guards against): forwarded by its Route, unscreened."""
    core, screen = make(REJECT)
    data = ss_bye(b"sip:alice@127.0.0.3:5061").replace(b"BYE", b"INVITE")
    core.datagram_received(data, SS, "udp", 0.0)
    _, dest, _ = one(core)
    assert dest == CALLER and screen.calls == [] and core.stats.in_dialog_screened == 0


class UpdateScreen(Screen):
    """A screen with the contract's optional ``update`` call."""

    def __init__(self, answer: Answer | None = None) -> None:
        super().__init__()
        self.update_answer = answer
        self.updates: list[bytes] = []

    def update(self, req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        self.updates.append(b"\n".join(req.header(b"p-asserted-identity")))
        if isinstance(self.update_answer, Exception):
            raise self.update_answer
        return self.update_answer


def _caller_update(rr: bytes | None, cseq: int, extra: bytes = b"") -> bytes:
    """The caller's UPDATE in the dialog of ``invite()``; ``extra``: more header
    lines, or a From line that replaces the dialog's."""
    route = b"Route: " + rr + b"\r\n" if rr else b""
    frm = None
    if extra.startswith(b"From:"):
        frm, extra = extra, b""
    msg = invite(
        method=b"UPDATE",
        to_tag=b"ss1",
        cseq=cseq,
        branch=b"z9hG4bK-up-%d" % cseq,
        extra=route + extra,
    )
    if frm is not None:
        msg = msg.replace(b'From: "Alice" <sip:+13035551111@example.net>;tag=from1', frm)
    return msg


def test_an_update_whose_identities_the_stamp_does_not_prove_is_screened() -> None:
    """An UPDATE can change the caller ID the callee's phone shows (RFC 4916 §4):
    one from the caller whose From (its display name too), P-Asserted-Identity
    or upstream differ from
    the dialog's stamp (or with no stamp) goes to ``Screen.update``; its Answer
    refuses it (answered with the dialog's To tag, not forwarded, no server
    transaction), None forwards it. The unchanged UPDATE, the softswitch's, and
    an UPDATE whose screen fails are forwarded; a screen without ``update``
    screens no UPDATE."""
    screen = UpdateScreen(REJECT)
    core = ProxyCore(CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET), screen)
    rr = _our_entry(core)
    core.datagram_received(_caller_update(rr, 2), CALLER, "udp", 0.0)
    assert one(core)[1] == SS and screen.updates == []
    pai = b"P-Asserted-Identity: <tel:+12025552001>"
    renamed = b'From: "+12025552001" <sip:+13035551111@example.net>;tag=from1'
    for n, (route, extra, src) in enumerate(
        [
            (rr, pai, CALLER),
            (rr, renamed, CALLER),  # the From display name (the URI unchanged)
            (rr, b"", ("127.0.0.4", 5061)),  # another upstream
            (None, b"", CALLER),  # no stamp at all
        ]
    ):
        core.datagram_received(_caller_update(route, 3 + n, extra), src, "udp", 1.0)
        answer, dest, _ = one(core)
        assert dest == src and answer.startswith(b"SIP/2.0 603 Decline\r\n"), answer
        resp = parse(answer)
        assert isinstance(resp, Response) and resp.to.tag == b"ss1"
        assert b"Reason: SIP;cause=603" in answer and resp.cseq == (3 + n, b"UPDATE")
    assert len(screen.updates) == 4 and screen.updates[0] == pai[21:]
    assert core.stats.updates_screened == 4 and core.stats.updates_refused == 4
    assert len(core.transactions) == 0  # no server transaction for a non-INVITE
    # allowed by the screen: forwarded with the PAI
    screen.update_answer = None
    core.datagram_received(_caller_update(rr, 9, pai), CALLER, "udp", 2.0)
    data, dest, _ = one(core)
    assert dest == SS and pai in data and core.stats.updates_refused == 4
    # a failing screen never refuses an UPDATE (the call was admitted): counted
    screen.update_answer = RuntimeError("bug")
    core.datagram_received(_caller_update(rr, 10, pai), CALLER, "udp", 2.0)
    assert one(core)[1] == SS and core.stats.screen_bugs == 1
    # the softswitch's UPDATE towards the caller is not screened
    core.datagram_received(
        ss_bye(b"sip:alice@127.0.0.3:5061").replace(b"BYE", b"UPDATE"), SS, "udp", 3.0
    )
    assert one(core)[1] == CALLER and len(screen.updates) == 6
    # a screen without update(): UPDATEs pass as before
    plain, _ = make(REJECT)
    plain.datagram_received(_caller_update(None, 3, pai), CALLER, "udp", 0.0)
    assert one(plain)[1] == SS


def test_the_caller_s_ack_and_bye_with_a_stamped_route_stay_on_the_lean_path() -> None:
    """The lean C forward of the caller's in-dialog ACK/BYE (relay.scan_request)
    takes a Route that is our entry with its stamp, and no other stamp shape."""
    if message.PARSER.c_request is None:
        pytest.skip("the lean forward is C only (SIPSCREEN_NO_C)")
    core, _ = make()
    rr = _our_entry(core)
    route = core._lean_route
    assert route is not None
    for method in (b"ACK", b"BYE"):
        msg = invite(method=method, to_tag=b"ss1", cseq=2, body=b"", extra=b"Route: " + rr)
        assert scan_request(msg, "127.0.0.3", 5061, route) is not None
        for bad in (
            rr.replace(b";sdt=", b";sdx="),
            rr[:-2] + b">",  # a digit short
            rr[:-1] + b"0>",  # a digit long
            rr.replace(b">", b";x>"),
            rr[:-2] + b"G>",  # not hex
        ):
            odd = invite(method=method, to_tag=b"ss1", cseq=2, body=b"", extra=b"Route: " + bad)
            assert scan_request(odd, "127.0.0.3", 5061, route) is None, bad


SBC = ("127.0.0.9", 5060)


def _trusting() -> tuple[ProxyCore, Screen]:
    return make(trusted_header="X-Upstream-Provider", is_trusted_source=lambda ip: ip == SBC[0])


@pytest.mark.parametrize(
    "lines",
    [
        b"X-Upstream-Provider: good",
        b"x-upstream-provider:good",
        b"X-UPSTREAM-PROVIDER : good, rogue",
        b"X-Upstream-Provider: good\r\nX-Upstream-Provider: rogue",
        b"X-Upstream-Provider: good,\r\n rogue",  # folded (RFC 3261 §7.3.1)
        b"X-uPsTrEaM-pRoViDeR: good",
    ],
)
def test_untrusted_callers_provider_header_is_cut_before_forwarding(lines: bytes) -> None:
    """Issue 10 item 5: only the trusted SBC may stamp the provider header for the
    softswitch; from anyone else its lines are cut (the rest is byte-identical)."""
    core, _ = _trusting()
    data = invite(extra=lines)
    core.datagram_received(data, CALLER, "udp", 0.0)
    fwd, dest, _ = one(core)
    assert dest == SS
    msg = parse(fwd)
    assert isinstance(msg, Request)
    assert not msg.has_header(b"x-upstream-provider") and b"good" not in fwd
    assert msg.header(b"contact") == [b"<sip:alice@127.0.0.3:5061>"]
    assert msg.body == b"v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\n"
    # the same request without the header is forwarded as the same bytes
    plain, _ = _trusting()
    plain.datagram_received(invite(), CALLER, "udp", 0.0)
    assert one(plain)[0] == fwd
    # from the trusted SBC the header goes through, a folded one unfolded (RFC 3261
    # §7.3.1: the same value; _parse joins the lines with spaces)
    core.datagram_received(data, SBC, "udp", 0.0)
    fwd, _, _ = one(core)
    assert lines.replace(b"\r\n ", b"   ") in fwd


def test_no_trusted_header_configured_nothing_is_cut() -> None:
    core, _ = make()
    core.datagram_received(invite(extra=b"X-Upstream-Provider: good"), CALLER, "udp", 0.0)
    assert b"X-Upstream-Provider: good\r\n" in one(core)[0]


def test_reload_carries_the_trusted_header_and_sources_to_the_core() -> None:
    """A SIGHUP reload (Worker.reload -> ProxyCore.set_limits) that sets the
    trusted header, renames it or changes the trusted sources is what the
    core cuts by from then on: an untrusted caller's stamp never reaches the
    softswitch after a reload, a source no longer trusted included."""
    from dataclasses import replace

    core, _ = make()
    core.set_limits(
        replace(
            core.config,
            trusted_header="X-Upstream-Provider",
            is_trusted_source=lambda ip: ip == SBC[0],
        )
    )
    core.datagram_received(invite(extra=b"X-Upstream-Provider: good"), CALLER, "udp", 0.0)
    assert b"X-Upstream-Provider" not in one(core)[0]
    # the SBC's address is no longer trusted, and the header is renamed
    core.set_limits(
        replace(core.config, trusted_header="X-Carrier", is_trusted_source=lambda ip: False)
    )
    core.datagram_received(
        invite(extra=b"X-Carrier: good\r\nX-Upstream-Provider: old"), SBC, "udp", 0.0
    )
    fwd = one(core)[0]
    assert b"X-Carrier" not in fwd and b"X-Upstream-Provider: old" in fwd


def test_request_from_softswitch_routed_by_ruri_and_route() -> None:
    core, _ = make()
    bye = ss_bye(b"sip:alice@127.0.0.3:5061", b"<sip:127.0.0.1:5060;lr>", to_tag=b"t1")
    core.datagram_received(bye, SS, "udp", 0.0)
    data, dest, _ = one(core)
    assert dest == CALLER
    assert parse(data).header(b"route") == []
    # two entries on one line: ours removed, the next one is followed (loose routing)
    bye2 = bye.replace(
        b"Route: <sip:127.0.0.1:5060;lr>",
        b"Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.8:5080;lr>",
    )
    core.datagram_received(bye2, SS, "udp", 0.0)
    data, dest, _ = one(core)
    assert dest == ("127.0.0.8", 5080)
    assert parse(data).header(b"route") == [b"<sip:127.0.0.8:5080;lr>"]
    # hostname Request-URI: we do no DNS
    core.datagram_received(
        bye.replace(b"sip:alice@127.0.0.3:5061 SIP", b"sip:alice@host.example SIP"),
        SS,
        "udp",
        0.0,
    )
    assert core.datagrams_to_send() == [] and core.stats.dropped["unroutable"] == 1


def test_tcp_forward_records_connection_in_via() -> None:
    """A caller over TCP is relayed to the (UDP) softswitch; the answer finds
    the caller's connection again through received/rport in its Via."""
    core, _ = make()
    raw = invite(via_transport=b"TCP", via_host=b"127.0.0.3:5061")
    core.datagram_received(raw, ("127.0.0.3", 40001), "tcp", 0.0)
    data, dest, transport = one(core)
    assert transport == "udp" and dest == SS
    msg = parse(data)
    assert msg.vias[0].transport == b"UDP"
    assert msg.vias[1].rport == b"40001" and msg.vias[1].received == b"127.0.0.3"
    # RFC 5658 §3.2: the two sides differ, so two entries (the softswitch's, the caller's)
    assert record_route(msg) == [
        b"<sip:127.0.0.1:5060;lr>",
        b"<sip:127.0.0.1:5060;transport=tcp;lr>",
    ]
    core.datagram_received(response_to(data, 180, b"Ringing"), SS, "udp", 0.1)
    assert one(core)[1:] == (("127.0.0.3", 40001), "tcp")


# --- issue 14: one side over TCP, the other over UDP (RFC 5658 double Record-Route)

TCP_CONTACT = b"sip:alice@127.0.0.3:5061;transport=tcp"  # the caller's listening port


def test_tcp_caller_record_route_names_its_transport_and_tcp_port() -> None:
    """A TCP caller's route set starts with an entry it can reach: transport=tcp and
    the TCP listen port (on today's main: one UDP entry, so the caller's ACK and
    BYE fail, pjsip "Unsupported transport")."""
    core, _ = make(tcp_port=5062)
    raw = invite(via_transport=b"TCP", via_host=b"127.0.0.3:5061;alias")
    core.datagram_received(raw, ("127.0.0.3", 40001), "tcp", 0.0)
    data, dest, transport = one(core)
    rr = record_route(parse(data))
    # the caller reverses the list: its first Route is the TCP entry
    assert rr == [b"<sip:127.0.0.1:5060;lr>", b"<sip:127.0.0.1:5062;transport=tcp;lr>"]
    # and UDP on both sides stays a single entry
    core.datagram_received(invite(branch=b"z9hG4bK-2"), CALLER, "udp", 0.0)
    assert record_route(parse(one(core)[0])) == [b"<sip:127.0.0.1:5060;lr>"]


def test_bye_from_softswitch_to_tcp_caller_removes_both_entries() -> None:
    """The callee hangs up: the softswitch sends the BYE along the route set
    (our two entries); both are ours, both go, and the BYE leaves over TCP for
    the caller's Contact (its listening port, not the connection it called from)."""
    core, _ = make(tcp_port=5062)
    bye = ss_bye(TCP_CONTACT, b"<sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5062;transport=tcp;lr>")
    core.datagram_received(bye, SS, "udp", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (("127.0.0.3", 5061), "tcp")
    msg = parse(data)
    assert msg.header(b"route") == []
    assert msg.vias[0].transport == b"TCP"
    assert core.stats.dropped["loop"] == 0


def test_bye_from_tcp_caller_removes_both_entries_keeps_the_softswitch_one() -> None:
    core, _ = make(tcp_port=5062)
    bye = caller_bye(
        b"<sip:127.0.0.1:5062;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>, <sip:127.0.0.2:5070;lr>",
        via_transport=b"TCP",
    )
    core.datagram_received(bye, ("127.0.0.3", 40001), "tcp", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (SS, "udp")
    assert parse(data).header(b"route") == [b"<sip:127.0.0.2:5070;lr>"]


def test_invite_from_softswitch_to_tcp_target_is_double_record_routed() -> None:
    core, _ = make(tcp_port=5062)
    inv = invite(ruri=TCP_CONTACT, via_host=b"127.0.0.2:5070")
    core.datagram_received(inv, SS, "udp", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (("127.0.0.3", 5061), "tcp")
    assert record_route(parse(data)) == [
        b"<sip:127.0.0.1:5062;transport=tcp;lr>",
        b"<sip:127.0.0.1:5060;lr>",
    ]


def test_tcp_request_from_the_softswitch_address_is_a_caller() -> None:
    """The softswitch talks UDP: a TCP peer sharing its IP is a caller."""
    core, _ = make()
    core.datagram_received(invite(via_transport=b"TCP"), (SS[0], 40002), "tcp", 0.0)
    _, dest, transport = one(core)
    assert (dest, transport) == (SS, "udp")


def test_parse_errors_answered_or_dropped() -> None:
    core, _ = make()
    core.datagram_received(b"\r\n\r\n", CALLER, "udp", 0.0)
    assert core.datagrams_to_send() == [] and core.stats.dropped["keepalive"] == 1
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    core.datagram_received(bad, CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    assert data.startswith(b"SIP/2.0 400 Bad Request\r\n") and dest == CALLER
    assert core.stats.parse_errors["cseq_mismatch"] == 1
    core.datagram_received(bad.replace(b"INVITE", b"ACK"), CALLER, "udp", 0.0)
    assert core.datagrams_to_send() == [] and core.stats.dropped["bad_ack"] == 1
    core.datagram_received(b"garbage\r\n\r\n", CALLER, "udp", 0.0)
    assert core.datagrams_to_send() == []


def test_screen_failure_fails_open() -> None:
    def boom(req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        raise RuntimeError("rules broke")

    core = ProxyCore(CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET), boom)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert one(core)[1] == SS and core.stats.screen_errors == 1


def test_screen_error_is_the_contract_a_bug_is_reported() -> None:
    """core.Screen: ScreenError fails open (answer None) or closed (its Answer),
    counted; any other exception is a bug, counted apart and handed to the
    adapter's on_screen_bug (which logs it)."""
    busy = Answer(503, b"Service Unavailable", b"Retry-After: 5\r\n")
    raised: list[Exception] = []

    def screen(req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        raise raised[-1]

    bugs: list[Exception] = []
    config = CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET, on_screen_bug=bugs.append)
    core = ProxyCore(config, screen)
    raised.append(ScreenError("no decision"))
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert one(core)[1] == SS  # fail open: forwarded as it is
    raised.append(ScreenError("no decision", busy))
    core.datagram_received(invite(branch=b"z9hG4bK-c2"), CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    assert data.startswith(b"SIP/2.0 503 Service Unavailable\r\n") and dest == CALLER
    assert b"Retry-After: 5\r\n" in data
    assert (core.stats.screen_errors, core.stats.screen_bugs, core.stats.rejected) == (2, 0, 1)
    assert bugs == []
    raised.append(KeyError("a bug"))
    core.datagram_received(invite(branch=b"z9hG4bK-c3"), CALLER, "udp", 0.0)
    assert one(core)[1] == SS
    assert (core.stats.screen_errors, core.stats.screen_bugs) == (3, 1)
    assert bugs == [raised[-1]] and bugs[0].__traceback__ is not None


def test_handoff_framing_round_trip() -> None:
    framed = wrap_handoff(b"INVITE x", ("::1", 5060), "tcp")
    assert unwrap_handoff(framed) == (b"INVITE x", ("::1", 5060), "tcp")


def test_multi_worker_handoff() -> None:
    workers = [make(REJECT, worker_index=i, workers=3)[0] for i in range(3)]
    raw = invite()
    for w in workers:
        w.datagram_received(raw, CALLER, "udp", 0.0)
    outs = [w.datagrams_to_send() for w in workers]
    owners = [i for i, o in enumerate(outs) if o and o[0][2] != "handoff"]
    assert len(owners) == 1
    owner = owners[0]
    final = outs[owner][0][0]
    for i, o in enumerate(outs):
        if i != owner:
            [(data, dest, transport)] = o
            assert dest == ("worker", owner) and transport == "handoff"
            # the owner treats the handed-off copy as a retransmission: same bytes
            workers[owner].datagram_received_handoff(data, 0.1)
            assert one(workers[owner])[0] == final
    # any worker agrees on the To tag; the ACK goes to the owner and is absorbed there
    tag = parse(final).to.tag
    assert tag is not None and tag.startswith(b"sc%d." % owner)
    ack = invite(method=b"ACK", to_tag=tag, body=b"")
    other = (owner + 1) % 3
    workers[other].datagram_received(ack, CALLER, "udp", 0.2)
    [(data, dest, _)] = workers[other].datagrams_to_send()
    assert dest == ("worker", owner)
    workers[owner].datagram_received_handoff(data, 0.2)
    assert workers[owner].datagrams_to_send() == []
    tx = next(iter(workers[owner].transactions._tx.values()))
    assert tx.state.value == "confirmed"


def test_single_worker_never_hands_off() -> None:
    core, _ = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert one(core)[2] == "udp" and core.stats.handoffs_out == 0


def test_relay_port_in_via_brings_responses_back_to_this_worker() -> None:
    """With several workers each names its own relay port in its Via (RFC 3261
    §18.2.1), so the 180 and 200 of a transaction come back to it, in order;
    a response naming any of our ports with our branch mark is ours."""
    core, _ = make(workers=2, worker_index=0, relay_port=40123)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    data, dest, _ = one(core)
    if dest != SS:  # the INVITE's owner is the other worker: take its view
        core, _ = make(workers=2, worker_index=1, relay_port=40123)
        core.datagram_received(invite(), CALLER, "udp", 0.0)
        data, dest, _ = one(core)
    assert dest == SS
    top = parse(data).vias[0]
    assert top.sent_by == b"%s:40123" % PROXY[0].encode()
    core.datagram_received(response_to(data, 180, b"Ringing"), SS, "udp", 0.1)
    assert one(core)[1] == CALLER
    foreign = response_to(data, 180, b"Ringing").replace(b"z9hG4bKsc", b"z9hG4bKxx", 1)
    core.datagram_received(foreign, SS, "udp", 0.2)
    assert core.datagrams_to_send() == [] and core.stats.dropped["foreign_via"] == 1


def test_overloaded_core_sheds_new_invites_with_503_before_parsing() -> None:
    core, screen = make()
    core.overloaded = True
    core.datagram_received(invite(via_params=b";rport"), ("127.0.0.9", 5099), "udp", 1.0)
    data, dest, transport = one(core)
    # RFC 3261 §21.5.4: 503 with Retry-After; RFC 3581: back to the rport'ed source
    assert data.startswith(b"SIP/2.0 503 Service Unavailable\r\n")
    assert b"\r\nRetry-After: 5\r\n" in data and b";tag=sc-err" in data
    assert dest == ("127.0.0.9", 5099) and transport == "udp"
    assert screen.calls == [] and core.stats.shed == 1
    resp = parse(data)
    assert isinstance(resp, Response) and resp.call_id == b"call-1@127.0.0.3"
    # the caller's ACK to the 503 is absorbed (RFC 3261 §17.2.1), never relayed
    core.datagram_received(
        invite(method=b"ACK", to_tag=b"sc-err", body=b""), ("127.0.0.9", 5099), "udp", 1.0
    )
    assert core.datagrams_to_send() == [] and core.stats.dropped["ack_absorbed"] == 1
    # calls already set up go on: in-dialog requests are relayed as usual
    core.datagram_received(caller_bye(), CALLER, "udp", 1.0)
    bye, dest, _ = one(core)
    assert bye.startswith(b"BYE ") and dest == SS
    # back to normal: screened and forwarded
    core.overloaded = False
    core.datagram_received(invite(), CALLER, "udp", 1.0)
    fwd, dest, _ = one(core)
    assert fwd.startswith(b"INVITE ") and dest == SS and len(screen.calls) == 1


def test_tls_caller_record_route_and_sips_contact() -> None:
    """TLS: the entry facing a TLS caller is sips: with the TLS port; a BYE
    to a sips: Contact leaves over TLS (RFC 3261 §26.2.2), 5061 by default."""
    core, _ = make(tcp_port=5062, tls_port=5063)
    raw = invite(via_transport=b"TLS", via_host=b"127.0.0.3:5061")
    core.datagram_received(raw, ("127.0.0.3", 40001), "tls", 0.0)
    data, dest, transport = one(core)
    assert (dest, transport) == (SS, "udp")
    assert record_route(parse(data)) == [
        b"<sip:127.0.0.1:5060;lr>",
        b"<sips:127.0.0.1:5063;lr>",
    ]
    core.datagram_received(response_to(data, 200, b"OK"), SS, "udp", 0.1)
    assert one(core)[1:] == (("127.0.0.3", 40001), "tls")
    bye = ss_bye(b"sips:alice@127.0.0.3", b"<sip:127.0.0.1:5060;lr>, <sips:127.0.0.1:5063;lr>")
    core.datagram_received(bye, SS, "udp", 0.2)
    data, dest, transport = one(core)
    assert (dest, transport) == (("127.0.0.3", 5061), "tls")
    assert parse(data).header(b"route") == [] and parse(data).vias[0].transport == b"TLS"


@pytest.mark.parametrize(
    "lines",
    [
        b"Remote-Party-ID: <sip:+12127369999@example.net>;party=calling;screen=no",
        b"remote-party-id:<sip:+12127369999@example.net>",
        b"REMOTE-PARTY-ID : <sip:+12127369999@example.net>\r\nRemote-Party-ID: <tel:+12127369999>",
        b"P-Preferred-Identity: <sip:+12127369999@example.net>",
        b"Remote-Party-ID: <sip:+12127369999@example.net>,\r\n <tel:+12127369999>",  # folded
    ],
)
def test_identity_headers_the_screen_does_not_read_are_cut(lines: bytes) -> None:
    """A caller whose From is clean and whose Remote-Party-ID (or P-Preferred-Identity)
    names a blocked number: the screen decides on From (PAI, else From), so a
    softswitch that shows RPID as the caller ID would show a number nobody screened.
    Those headers are cut from every request forwarded to the softswitch (the rest
    byte-identical); with the list empty they go through."""
    core, _ = make(strip_identity=("Remote-Party-ID", "P-Preferred-Identity"))
    data = invite(extra=lines)
    core.datagram_received(data, CALLER, "udp", 0.0)
    fwd, dest, _ = one(core)
    assert dest == SS
    assert b"12127369999" not in fwd, fwd
    plain, _ = make(strip_identity=("Remote-Party-ID", "P-Preferred-Identity"))
    plain.datagram_received(invite(), CALLER, "udp", 0.0)
    assert fwd == one(plain)[0]
    # a stamped re-INVITE and an UPDATE of the dialog lose them too
    for method in (b"INVITE", b"UPDATE"):
        extra = b"Route: " + _our_entry(core) + b"\r\n" + lines
        core.datagram_received(
            invite(method=method, to_tag=b"ss1", cseq=5, extra=extra), CALLER, "udp", 1.0
        )
        out, dest, _ = one(core)
        assert dest == SS and b"12127369999" not in out, out
    kept, _ = make()
    kept.datagram_received(data, CALLER, "udp", 0.0)
    assert b"12127369999" in one(kept)[0]
