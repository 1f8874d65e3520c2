"""Per-source limits of the sans-I/O core (issue 10.8): the pike-style INVITE
rate limit and the final-response retransmission budget (RFC 3261 §17.2.1
timer G), driven with a fake clock."""

from __future__ import annotations

from test_sip_core import CALLER, REJECT, invite, make

from proxy.sip.core import Answer, ProxyCore
from proxy.sip.message import Response, parse


def _run_timers(core: ProxyCore, until: float) -> int:
    """Fire every timer up to ``until``; the number of datagrams they sent."""
    sent = 0
    t = core.get_timer()
    while t is not None and t <= until:
        core.handle_timer(t)
        sent += len(core.datagrams_to_send())
        t = core.get_timer()
    return sent


def test_spoofed_invites_draw_one_answer_each_past_the_budget() -> None:
    """100 unACKed rejections to one address: today 11 datagrams each (1,100);
    with a budget of 4 outstanding, 4 transactions keep timer G and the rest
    answer once."""
    core, _ = make(REJECT, unacked_per_source=4)
    for i in range(100):
        core.datagram_received(invite(branch=b"z9hG4bK-sp%d" % i), CALLER, "udp", i * 0.01)
    first = len(core.datagrams_to_send())
    assert first == 100
    total = first + _run_timers(core, 100.0)
    assert total == 100 + 4 * 10
    assert core.stats.retransmit_suppressed == 96
    assert core.stats.ack_timeouts == 100 and len(core.transactions) == 0
    # The address let rejections time out: held, its next rejection is sent once.
    core.datagram_received(invite(branch=b"z9hG4bK-after"), CALLER, "udp", 150.0)
    assert len(core.datagrams_to_send()) == 1
    assert _run_timers(core, 200.0) == 0
    # ... and once the hold (300 s) is over, the RFC schedule is back.
    core.datagram_received(invite(branch=b"z9hG4bK-later"), CALLER, "udp", 600.0)
    assert len(core.datagrams_to_send()) == 1
    assert _run_timers(core, 700.0) == 10


def test_an_honest_uac_that_acks_keeps_timer_g() -> None:
    core, _ = make(REJECT, unacked_per_source=2)
    for i in range(20):
        now = float(i)
        core.datagram_received(invite(branch=b"z9hG4bK-h%d" % i), CALLER, "udp", now)
        (final, _, _) = core.datagrams_to_send()[0]
        resp = parse(final)
        assert isinstance(resp, Response)
        assert core.transactions.get(b"z9hG4bK-h%d|127.0.0.3:5061" % i) is not None
        ack = invite(branch=b"z9hG4bK-h%d" % i, method=b"ACK", to_tag=resp.to.tag, body=b"")
        core.datagram_received(ack, CALLER, "udp", now + 0.01)
    assert core.stats.retransmit_suppressed == 0
    # a rejection whose response is lost: timer G resends it, and a retransmitted
    # INVITE (the UAC's timer A) is answered from Completed either way
    core.datagram_received(invite(branch=b"z9hG4bK-lost"), CALLER, "udp", 50.0)
    core.datagrams_to_send()
    core.datagram_received(invite(branch=b"z9hG4bK-lost"), CALLER, "udp", 50.5)
    assert len(core.datagrams_to_send()) == 1
    assert _run_timers(core, 51.0) == 1  # G at 50.5


def test_retransmitted_invite_is_answered_when_timer_g_is_suppressed() -> None:
    core, _ = make(REJECT, unacked_per_source=1)
    core.datagram_received(invite(branch=b"z9hG4bK-a"), CALLER, "udp", 0.0)
    core.datagram_received(invite(branch=b"z9hG4bK-b"), CALLER, "udp", 0.0)
    assert len(core.datagrams_to_send()) == 2
    assert core.stats.retransmit_suppressed == 1
    # the UAC of b lost our 603: its timer A resends the INVITE, answered at once
    core.datagram_received(invite(branch=b"z9hG4bK-b"), CALLER, "udp", 0.5)
    out = core.datagrams_to_send()
    assert len(out) == 1 and out[0][0].startswith(b"SIP/2.0 603")


def test_invites_over_the_per_source_limit_are_dropped_before_the_parse() -> None:
    core, screen = make(invite_limit=3, invite_window=10.0)
    for i in range(5):
        core.datagram_received(invite(branch=b"z9hG4bK-r%d" % i), CALLER, "udp", 1.0 + i)
    assert len(core.datagrams_to_send()) == 3
    assert len(screen.calls) == 3 and core.stats.rate_limited == 2
    # another source has its own count; the next window starts afresh
    core.datagram_received(invite(branch=b"z9hG4bK-o"), ("127.0.0.4", 5061), "udp", 6.0)
    core.datagram_received(invite(branch=b"z9hG4bK-n"), CALLER, "udp", 11.5)
    assert len(core.datagrams_to_send()) == 2
    # responses and in-dialog requests are not counted
    core.datagram_received(invite(method=b"BYE", to_tag=b"x"), CALLER, "udp", 12.0)
    assert core.stats.rate_limited == 2


def test_over_limit_503_and_trunk_sources_have_their_own_limit() -> None:
    trunk = ("127.0.0.5", 5060)
    core, _ = make(
        Answer(603, b"Decline"),
        invite_limit=1,
        trunk_invite_limit=0,
        trunk_of={"127.0.0.5": "acme"}.get,
        over_limit_503=True,
    )
    for i in range(3):
        core.datagram_received(invite(branch=b"z9hG4bK-t%d" % i), trunk, "udp", 1.0)
    assert [d[:11] for d, _, _ in core.datagrams_to_send()] == [b"SIP/2.0 603"] * 3
    core.datagram_received(invite(branch=b"z9hG4bK-c1"), CALLER, "udp", 1.0)
    core.datagram_received(invite(branch=b"z9hG4bK-c2"), CALLER, "udp", 1.0)
    out = core.datagrams_to_send()
    assert out[0][0].startswith(b"SIP/2.0 603")
    assert out[1][0].startswith(b"SIP/2.0 503") and b"Retry-After:" in out[1][0]
    assert core.stats.rate_limited == 1


def test_an_ipv6_source_is_counted_by_its_64_prefix() -> None:
    """One IPv6 host holds a /64 (RFC 7421): counted address by address, a
    flooder that sends each INVITE from another address of its /64 (RFC 4941
    makes that ordinary) was under every per-source limit. The limit counts
    the /64, however the address is spelt; another /64 has its own count."""
    core, screen = make(invite_limit=3, invite_window=10.0)
    for i in range(6):
        src = (f"2001:db8:0:7::{i + 1:x}", 5061)
        core.datagram_received(invite(branch=b"z9hG4bK-v6%d" % i), src, "udp", 1.0)
    assert len(screen.calls) == 3 and core.stats.rate_limited == 3
    spelt = ("2001:0db8:0000:0007:ffff::1", 5061)  # the same /64, written out
    core.datagram_received(invite(branch=b"z9hG4bK-v6s"), spelt, "udp", 1.0)
    core.datagram_received(invite(branch=b"z9hG4bK-v6o"), ("2001:db8:0:8::1", 5061), "udp", 1.0)
    assert len(screen.calls) == 4 and core.stats.rate_limited == 4
