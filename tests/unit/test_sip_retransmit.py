"""A request from a reliable sender (TCP/TLS) forwarded over UDP is retransmitted by
the proxy (proxy/sip/retransmit.py, RFC 3261 §17.1.1.2 timers A/B, §17.1.2.2 E/F).
Sans-I/O, a fake clock driven through get_timer/handle_timer."""

from __future__ import annotations

import logging

import pytest
from test_sip_core import SS, invite, make, one, response_to

from proxy.sip.core import ProxyCore
from proxy.sip.message import Response, parse
from proxy.sip.retransmit import RetransmitTable

TLS_CALLER = ("127.0.0.3", 40001)


def _run_until(core: ProxyCore, until: float) -> list[tuple[float, bytes, tuple[str, int], str]]:
    """Fire the core's timer up to ``until``: (time, data, dest, transport) sent."""
    sent: list[tuple[float, bytes, tuple[str, int], str]] = []
    for _ in range(1000):
        at = core.get_timer()
        if at is None or at > until:
            break
        core.handle_timer(at)
        sent.extend((at, d, dest, t) for d, dest, t in core.datagrams_to_send())
    return sent


def _reliable_invite(transport: str = "tls", method: bytes = b"INVITE", **kw: object) -> bytes:
    return invite(
        via_transport=transport.upper().encode(), via_host=b"127.0.0.3:5061", method=method, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_invite_from_a_reliable_caller_is_retransmitted_on_timer_a(transport: str) -> None:
    core, _ = make(tcp_port=5062, tls_port=5063)
    core.datagram_received(_reliable_invite(transport), TLS_CALLER, transport, 0.0)
    data, dest, t = one(core)
    assert (dest, t) == (SS, "udp")
    sent = _run_until(core, 31.9)
    # timer A: T1, then doubling (0.5, 1, 2, 4, 8, 16 s intervals), the same bytes
    assert [at for at, *_ in sent] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all((d, dest, t) == (data, SS, "udp") for _, d, dest, t in sent)
    assert core.stats.relay_retransmit["sent"] == 6


@pytest.mark.parametrize("status", [100, 180])
@pytest.mark.parametrize("lean", [True, False])
def test_a_provisional_response_stops_timer_a(status: int, lean: bool) -> None:
    core, _ = make(tls_port=5063, lean_relay=lean)
    core.datagram_received(_reliable_invite(), TLS_CALLER, "tls", 0.0)
    data, _, _ = one(core)
    assert len(_run_until(core, 0.6)) == 1  # the first retransmission at 0.5
    core.datagram_received(response_to(data, status, b"Trying"), SS, "udp", 0.7)
    resp, dest, t = one(core)
    assert (dest, t) == (TLS_CALLER, "tls") and resp.startswith(b"SIP/2.0 %d" % status)
    assert _run_until(core, 60.0) == []
    assert core.get_timer() is None
    assert len(core.retransmissions) == 0


def test_dead_softswitch_gives_the_invite_caller_a_408_after_64_t1() -> None:
    core, _ = make(tls_port=5063)
    core.datagram_received(_reliable_invite(), TLS_CALLER, "tls", 10.0)
    one(core)
    sent = _run_until(core, 100.0)
    at, data, dest, t = sent[-1]
    assert at == 10.0 + 32.0 and (dest, t) == (TLS_CALLER, "tls")
    resp = parse(data)
    assert isinstance(resp, Response) and resp.status == 408
    assert resp.cseq == (1, b"INVITE") and resp.to.tag is not None
    assert len(sent) == 7  # six retransmissions, then the 408
    st = core.stats
    assert st.relay_retransmit["timeout_408"] == 1
    assert st.local_responses[408] == 1
    assert core.get_timer() is None and len(core.retransmissions) == 0
    assert st.relay_retransmit_last == (
        "INVITE from tls 127.0.0.3:40001 to 127.0.0.2:5070, 7 copies over UDP, answered 408"
    )
    # the caller's ACK to our 408 is absorbed (our To tag), never forwarded
    ack = _reliable_invite(method=b"ACK", to_tag=resp.to.tag, body=b"")
    core.datagram_received(ack, TLS_CALLER, "tls", 43.0)
    assert core.datagrams_to_send() == []


def test_non_invite_timer_e_is_capped_at_t2_and_times_out_without_408() -> None:
    core, _ = make(tls_port=5063)
    bye = _reliable_invite(method=b"BYE", to_tag=b"ss1", cseq=2, body=b"")
    core.datagram_received(bye, TLS_CALLER, "tls", 0.0)
    data, dest, _ = one(core)
    sent = _run_until(core, 100.0)
    # timer E: 0.5, 1, 2, then T2 = 4 s; timer F at 32 s sends nothing
    times = [at for at, *_ in sent]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(d == data and dst == SS for _, d, dst, _ in sent)
    assert core.stats.relay_retransmit["timeout_non_invite"] == 1
    assert 408 not in core.stats.local_responses  # RFC 4320 §4.1
    assert core.get_timer() is None


def test_non_invite_provisional_moves_timer_e_to_t2_and_final_stops_it() -> None:
    core, _ = make(tls_port=5063)
    bye = _reliable_invite(method=b"BYE", to_tag=b"ss1", cseq=2, body=b"")
    core.datagram_received(bye, TLS_CALLER, "tls", 0.0)
    data, _, _ = one(core)
    core.datagram_received(response_to(data, 100, b"Trying"), SS, "udp", 0.1)
    one(core)
    # the armed E (0.5) fires, then every T2
    assert [at for at, *_ in _run_until(core, 9.0)] == [0.5, 4.5, 8.5]
    core.datagram_received(response_to(data, 200, b"OK"), SS, "udp", 9.0)
    one(core)
    assert _run_until(core, 100.0) == [] and core.get_timer() is None


def test_cancel_and_invite_share_a_branch_but_are_matched_by_method() -> None:
    core, _ = make(tls_port=5063)
    core.datagram_received(_reliable_invite(), TLS_CALLER, "tls", 0.0)
    inv, _, _ = one(core)
    core.datagram_received(response_to(inv, 100, b"Trying"), SS, "udp", 0.1)
    one(core)
    cancel = _reliable_invite(method=b"CANCEL", body=b"")
    core.datagram_received(cancel, TLS_CALLER, "tls", 1.0)
    can, _, _ = one(core)
    assert parse(can).vias[0].branch == parse(inv).vias[0].branch
    # a late 180 to the INVITE does not stop the CANCEL's timer E
    core.datagram_received(response_to(inv, 180, b"Ringing"), SS, "udp", 1.2)
    one(core)
    assert [d[:6] for _, d, _, _ in _run_until(core, 1.6)] == [b"CANCEL"]
    core.datagram_received(response_to(can, 200, b"OK"), SS, "udp", 1.7)
    one(core)
    assert _run_until(core, 100.0) == []


def test_ack_is_never_retransmitted() -> None:
    core, _ = make(tls_port=5063)
    ack = _reliable_invite(method=b"ACK", to_tag=b"ss1", body=b"")
    core.datagram_received(ack, TLS_CALLER, "tls", 0.0)
    one(core)
    assert core.get_timer() is None and _run_until(core, 100.0) == []


def test_nothing_retransmitted_for_a_udp_caller() -> None:
    """Its own timer A does it; each copy is forwarded as before."""
    core, _ = make(tls_port=5063)
    core.datagram_received(invite(), ("127.0.0.3", 5061), "udp", 0.0)
    data, _, _ = one(core)
    assert core.get_timer() is None and _run_until(core, 100.0) == []
    core.datagram_received(invite(), ("127.0.0.3", 5061), "udp", 0.5)
    assert one(core)[0] == data
    assert core.stats.relay_retransmit == dict.fromkeys(core.stats.relay_retransmit, 0)


def test_nothing_retransmitted_towards_a_reliable_softswitch() -> None:
    core, _ = make(softswitch_transport="tls", tls_port=5063)
    core.datagram_received(_reliable_invite("tcp"), TLS_CALLER, "tcp", 0.0)
    _, dest, t = one(core)
    assert (dest, t) == (SS, "tls")
    assert core.get_timer() is None and _run_until(core, 100.0) == []


def test_the_softswitch_request_to_a_udp_callee_from_tls_is_retransmitted() -> None:
    """Reliable in, UDP out, whichever side: the softswitch over TLS sends a BYE
    to a caller reached over UDP."""
    core, _ = make(softswitch_transport="tls", tls_port=5063)
    bye = invite(
        method=b"BYE",
        to_tag=b"from1",
        branch=b"z9hG4bK-ssbye",
        via_host=b"127.0.0.2:5070",
        via_transport=b"TLS",
        ruri=b"sip:alice@127.0.0.3:5061",
        body=b"",
    )
    core.datagram_received(bye, SS, "tls", 0.0)
    data, dest, t = one(core)
    assert (dest, t) == (("127.0.0.3", 5061), "udp")
    assert [(at, d) for at, d, *_ in _run_until(core, 1.0)] == [(0.5, data)]


def test_the_table_is_capped_and_refusals_counted() -> None:
    core, _ = make(tls_port=5063, relay_retransmit_cap=3)
    for i in range(5):
        core.datagram_received(_reliable_invite(branch=b"z9hG4bK-c%d" % i), TLS_CALLER, "tls", 0.0)
        one(core)  # each INVITE is forwarded, tracked or not
    assert len(core.retransmissions) == 3
    assert core.stats.relay_retransmit["refused"] == 2
    assert len(_run_until(core, 0.5)) == 3
    # the entries leave on expiry: the table takes new ones again
    _run_until(core, 40.0)
    assert len(core.retransmissions) == 0
    core.datagram_received(_reliable_invite(branch=b"z9hG4bK-c9"), TLS_CALLER, "tls", 41.0)
    one(core)
    assert len(core.retransmissions) == 1


def test_stale_timers_are_bounded_under_a_flood_of_answered_requests() -> None:
    """Answered entries leave timers behind; the heap is compacted within 8 * cap."""
    table = RetransmitTable(cap=4)
    req = parse(_reliable_invite())
    assert table.track(b"perm", b"INVITE", b"x", SS, req, TLS_CALLER, "tls", 0.0)  # type: ignore[arg-type]
    for i in range(200):
        branch = b"%016x" % i
        assert table.track(branch, b"INVITE", b"x", SS, req, TLS_CALLER, "tls", 0.0)  # type: ignore[arg-type]
        table.response(branch, b"INVITE", 100, 0.0)
        assert len(table._heap) <= 8 * 4 + 2
    assert len(table) == 1


def test_udp_caller_to_a_tls_softswitch_each_copy_is_forwarded_untracked() -> None:
    """UDP in, TLS out: the caller's own timer A drives it, each copy is relayed
    (the softswitch's server transaction absorbs the duplicates, §17.2.1)."""
    core, _ = make(softswitch_transport="tls", tls_port=5063)
    core.datagram_received(invite(), ("127.0.0.3", 5061), "udp", 0.0)
    first, dest, t = one(core)
    assert (dest, t) == (SS, "tls")
    core.datagram_received(invite(), ("127.0.0.3", 5061), "udp", 0.5)
    assert one(core) == (first, SS, "tls")
    assert core.get_timer() is None and len(core.retransmissions) == 0


def test_the_adapter_logs_timeouts_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    """proxy/sip does no logging: Metrics.sync_core_stats logs the expiries."""
    from proxy.metrics import Metrics

    core, _ = make(tls_port=5063)
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="sipscreen.sip"):
        for i in range(3):
            bye = _reliable_invite(method=b"BYE", to_tag=b"ss1", branch=b"z9hG4bK-b%d" % i)
            core.datagram_received(bye, TLS_CALLER, "tls", 0.0)
            _run_until(core, 100.0 * (i + 1))
            metrics.sync_core_stats(core.stats)
    lines = [r.getMessage() for r in caplog.records if "64*T1" in r.getMessage()]
    assert len(lines) == 1 and "no 408 (RFC 4320" in lines[0]
    assert core.stats.relay_retransmit["timeout_non_invite"] == 3
