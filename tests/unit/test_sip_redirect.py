"""RedirectCore (proxy/sip/redirect.py) driven through datagram_received with a fake
clock: every INVITE answered (302 or the block), retransmissions answered again
from the transaction, the ACK absorbed, CANCEL 200/481, nothing ever forwarded."""

from __future__ import annotations

import pytest
from test_sip_core import CALLER, PROXY, SECRET, SS, Screen, invite

from proxy.sip.core import Answer, CoreConfig, Forward, wrap_handoff
from proxy.sip.message import Response, parse
from proxy.sip.redirect import RedirectConfig, RedirectCore, contact_uri

REJECT = Answer(603, b"Network Blocked", b'Reason: SIP;cause=603;text="v=analytics1"\r\n')
VERDICT = b"X-Sipscreen-Verdict: allow\r\nX-Sipscreen-Rule: default\r\n"


def make(
    answer: Answer | Forward | None = None, rd: RedirectConfig | None = None, **kw: object
) -> tuple[RedirectCore, Screen]:
    screen = Screen(answer)  # type: ignore[arg-type]
    cfg = CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET, **kw)  # type: ignore[arg-type]
    if rd is None:
        rd = RedirectConfig(verdict_headers=lambda s: VERDICT)
    return RedirectCore(cfg, screen, rd), screen


def answers(core: RedirectCore) -> list[Response]:
    out = core.datagrams_to_send()
    for _data, dest, _t in out:
        assert dest != SS, "redirect mode never sends anything to the softswitch"
    got = []
    for data, _dest, _t in out:
        msg = parse(data)
        assert isinstance(msg, Response), data  # only answers, never a request
        got.append(msg)
    return got


def test_allowed_invite_gets_302_with_the_request_uri_and_verdict() -> None:
    core, screen = make(None)
    core.datagram_received(invite(), CALLER, "udp", 10.0)
    (resp,) = answers(core)
    assert resp.status == 302 and resp.reason == b"Moved Temporarily"
    assert resp.header(b"contact") == [b"<sip:+12025550123@127.0.0.2:5070>"]
    assert resp.header(b"x-sipscreen-rule") == [b"default"]
    assert resp.to.tag is not None and resp.to.tag.startswith(b"sc0.")
    assert core.stats.forwarded_requests == 0 and core.redirected == 1
    assert core.stats.local_responses == {302: 1} and len(screen.calls) == 1


def test_forward_edits_are_an_allow_too() -> None:
    core, _ = make(Forward(((0, 0, b"x"),)))
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert answers(core)[0].status == 302


def test_blocked_invite_gets_the_inline_answer_plus_verdict() -> None:
    core, _ = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    (resp,) = answers(core)
    assert resp.status == 603 and resp.reason == b"Network Blocked"
    assert resp.header(b"reason") == [b'SIP;cause=603;text="v=analytics1"']
    assert resp.header(b"x-sipscreen-verdict") == [b"allow"]  # the fake screen's header
    assert resp.header(b"contact") == []
    assert core.stats.rejected == 1 and core.redirected == 0


@pytest.mark.parametrize("answer", [None, REJECT])
def test_retransmission_answered_again_ack_absorbed_no_forward(answer: Answer | None) -> None:
    core, screen = make(answer)
    core.datagram_received(invite(), CALLER, "udp", 100.0)
    out = core.datagrams_to_send()
    assert len(out) == 1
    final = out[0][0]
    # the INVITE again (the caller lost our answer): the same bytes, not screened again
    core.datagram_received(invite(), CALLER, "udp", 100.3)
    assert [o[0] for o in core.datagrams_to_send()] == [final]
    assert len(screen.calls) == 1
    # timer G retransmits until the ACK
    t = core.get_timer()
    assert t == pytest.approx(100.5)
    core.handle_timer(t)
    assert [o[0] for o in core.datagrams_to_send()] == [final]
    tag = parse(final).to.tag  # type: ignore[union-attr]
    ack = invite(method=b"ACK", to_tag=tag, body=b"")
    core.datagram_received(ack, CALLER, "udp", 101.0)
    core.datagram_received(ack, CALLER, "udp", 101.1)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["ack_absorbed"] == 2
    tx = next(iter(core.transactions._tx.values()))
    assert tx.state.value == "confirmed"
    # timer I ends it; nothing more is sent, ever
    while (t := core.get_timer()) is not None:
        core.handle_timer(t)
    assert core.datagrams_to_send() == [] and len(core.transactions) == 0
    assert core.stats.forwarded_requests == 0 and core.stats.forwarded_responses == 0


def test_cancel_after_answer_200_unknown_481() -> None:
    core, _ = make(None)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    answers(core)
    core.datagram_received(invite(method=b"CANCEL", body=b""), CALLER, "udp", 0.1)
    (r,) = answers(core)
    assert r.status == 200 and r.cseq[1] == b"CANCEL"
    other = invite(method=b"CANCEL", body=b"", branch=b"z9hG4bK-never-seen")
    core.datagram_received(other, CALLER, "udp", 0.2)
    (r,) = answers(core)
    assert r.status == 481


def test_stray_ack_and_in_dialog_bye_are_not_forwarded() -> None:
    core, _ = make(None)
    core.datagram_received(invite(method=b"ACK", to_tag=b"foreign", body=b""), CALLER, "udp", 0)
    assert core.datagrams_to_send() == []
    bye = invite(method=b"BYE", to_tag=b"foreign", body=b"", cseq=2)
    core.datagram_received(bye, CALLER, "udp", 0.0)
    (r,) = answers(core)
    assert r.status == 481
    reinvite = invite(to_tag=b"foreign", cseq=3)
    core.datagram_received(reinvite, CALLER, "udp", 0.0)
    assert answers(core)[0].status == 481


def test_options_200_other_methods_405_with_allow() -> None:
    core, _ = make(None)
    core.datagram_received(invite(method=b"OPTIONS", body=b""), CALLER, "udp", 0.0)
    (r,) = answers(core)
    assert r.status == 200 and b"INVITE" in r.header(b"allow")[0]
    core.datagram_received(invite(method=b"REGISTER", body=b""), CALLER, "udp", 0.0)
    (r,) = answers(core)
    assert r.status == 405 and r.header(b"allow") == [b"INVITE, ACK, CANCEL, OPTIONS"]
    core.datagram_received(invite(ruri=b"mailto:a@b.c"), CALLER, "udp", 0.0)
    assert answers(core)[0].status == 416


def test_responses_are_never_relayed() -> None:
    core, _ = make(None)
    resp = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKscabc\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    core.datagram_received(resp, SS, "udp", 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["redirect_response"] == 1


@pytest.mark.parametrize(
    ("status", "contact"), [(380, True), (404, False), (503, False), (302, True)]
)
def test_allow_status_mapping(status: int, contact: bool) -> None:
    core, _ = make(None, RedirectConfig(allow_status=status, target=b"10.0.0.5:5080"))
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    (r,) = answers(core)
    assert r.status == status
    assert r.header(b"contact") == ([b"<sip:+12025550123@10.0.0.5:5080>"] if contact else [])


def test_screen_fault_fails_open_to_302() -> None:
    core, screen = make(None)

    def boom(*a: object) -> None:
        raise RuntimeError("screen fault")

    core.screen = boom
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    assert answers(core)[0].status == 302 and core.stats.screen_errors == 1


def test_two_workers_hand_the_ack_to_the_owner() -> None:
    cores = [make(None, workers=2, worker_index=i)[0] for i in range(2)]
    # let the owner answer the INVITE (the non-owner hands it over first)
    for c in cores:
        c.datagram_received(invite(), CALLER, "udp", 0.0)
    finals = [o for c in cores for o in c.datagrams_to_send() if o[2] != "handoff"]
    assert len(finals) == 1
    tag = parse(finals[0][0]).to.tag  # type: ignore[union-attr]
    owner = int(tag[2:3])  # type: ignore[index]
    other = cores[1 - owner]
    other.datagram_received(invite(method=b"ACK", to_tag=tag, body=b""), CALLER, "udp", 0.1)
    ((data, dest, kind),) = other.datagrams_to_send()
    assert kind == "handoff" and dest == ("worker", owner)
    cores[owner].datagram_received_handoff(data, 0.1)
    assert cores[owner].datagrams_to_send() == []
    assert wrap_handoff(b"x", CALLER, "udp")  # the framing is the inline one


@pytest.mark.parametrize(
    ("ruri", "target", "want"),
    [
        (b"sip:+1202@h:5070;user=phone", None, b"sip:+1202@h:5070;user=phone"),
        (b"sip:+1202@h:5070;user=phone", b"10.0.0.5", b"sip:+1202@10.0.0.5;user=phone"),
        (b"sips:bob@[::1]:5061?x=y", b"gw:5090", b"sips:bob@gw:5090?x=y"),
        (b"sip:gw.example", b"10.0.0.5:5080", b"sip:10.0.0.5:5080"),
        (b"tel:+12025550123;npdi", b"10.0.0.5", b"sip:+12025550123@10.0.0.5;user=phone"),
        (b"urn:service:sos", b"10.0.0.5", b"urn:service:sos"),
        # a ? in the user part is escaped: a lax SBC would read headers after it
        (
            b"sip:+12025550123?P-Asserted-Identity=%3Ctel%3A+12127369999%3E@h:5070",
            None,
            b"sip:+12025550123%3FP-Asserted-Identity=%3Ctel%3A+12127369999%3E@h:5070",
        ),
        (b"sips:a?b?c@h", b"gw", b"sips:a%3Fb%3Fc@gw"),
        # maddr would send the SBC that follows the 302 elsewhere than the target
        (b"sip:+1202@h;maddr=203.0.113.9", b"10.0.0.5", b"sip:+1202@10.0.0.5"),
        (
            b"sip:+1202@h;user=phone;MADDR = 203.0.113.9;lr?x=y",
            b"10.0.0.5",
            b"sip:+1202@10.0.0.5;user=phone;lr?x=y",
        ),
        (b"sip:+1202@h;maddr=203.0.113.9", None, b"sip:+1202@h;maddr=203.0.113.9"),
        (b"sip:+1202@h;x-maddr=1", b"gw", b"sip:+1202@gw;x-maddr=1"),
    ],
)
def test_contact_uri(ruri: bytes, target: bytes | None, want: bytes) -> None:
    assert contact_uri(ruri, target) == want


class _CountingParser:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0

    def parse(self, data: bytes) -> object:
        self.calls += 1
        return self.inner.parse(data)  # type: ignore[attr-defined]


@pytest.mark.parametrize("answer", [None, REJECT])
def test_the_ack_of_our_answer_is_absorbed_before_the_parse(answer: Answer | None) -> None:
    """core._absorb_ack: the ACK that matches a transaction held here by branch and
    sent-by and names our To tag stops timer G without the full parse; one that
    names another tag, or none, goes the full way (and is not ours)."""
    core, _ = make(answer)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    (final,) = [o[0] for o in core.datagrams_to_send()]
    tag = parse(final).to.tag  # type: ignore[union-attr]
    counting = _CountingParser(core.parser)
    core.parser = counting  # type: ignore[assignment]
    core.datagram_received(invite(method=b"ACK", to_tag=b"other", body=b""), CALLER, "udp", 0.1)
    assert counting.calls == 1  # not ours: parsed, dropped, and G still runs
    assert core.get_timer() == pytest.approx(0.5)
    core.datagram_received(invite(method=b"ACK", to_tag=tag, body=b""), CALLER, "udp", 0.2)
    assert counting.calls == 1  # ours: absorbed unparsed
    assert core.stats.dropped["ack_absorbed"] == 2 and core.stats.requests_in["ACK"] == 2
    tx = next(iter(core.transactions._tx.values()))
    assert tx.state.value == "confirmed"
    core.handle_timer(0.5)  # the G armed before the ACK is dead: nothing is sent
    assert core.datagrams_to_send() == []


def test_an_ack_the_fast_path_cannot_read_still_stops_timer_g() -> None:
    """An ACK not in the common shape (Via not first) is parsed and still absorbed."""
    core, _ = make(REJECT)
    core.datagram_received(invite(), CALLER, "udp", 0.0)
    (final,) = [o[0] for o in core.datagrams_to_send()]
    tag = parse(final).to.tag  # type: ignore[union-attr]
    ack = invite(method=b"ACK", to_tag=tag, body=b"")
    first, rest = ack.split(b"\r\n", 1)
    via, rest = rest.split(b"\r\n", 1)
    moved = first + b"\r\nX-First: 1\r\n" + via + b"\r\n" + rest  # Via no longer first
    core.datagram_received(moved, CALLER, "udp", 0.1)
    tx = next(iter(core.transactions._tx.values()))
    assert tx.state.value == "confirmed" and core.stats.dropped["ack_absorbed"] == 1
