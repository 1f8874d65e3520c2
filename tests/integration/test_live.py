"""The running proxy against live data and failures: edits made with a
separate Redis client apply to the next call; a Redis restart during SIPp
traffic fails no call and lets no blocked caller through; two workers on one
UDP port both get traffic from a single SIPp source; /metrics exposes the
documented metric names; the stdlib loop and uvloop behave the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import (
    count_received,
    one_call,
    recv_datagram,
    run_sipp,
    udp_recorder,
    wait_for,
    write_callers,
)

pytestmark = [pytest.mark.sipp]

CALLEE = "+13125557000"
CALLER = "+12127368000"


def test_live_block_and_unblock(
    tmp_path: Path,
    loop_name: str,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
) -> None:
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, loop=loop_name)
    assert one_call("uac_screen.xml", proxy, tmp_path, CALLER, CALLEE).successful == 1
    assert uas.received("INVITE") == 1

    # An operator blocks the number with redis-cli; the next call is refused.
    redis_client.sadd(key_prefix + "block:caller", CALLER)
    # the store follows MONITOR: wait until the snapshot holds the entry
    wait_for(lambda: proxy.metric("sipscreen_snapshot_entries") == 1)
    res = one_call("uac_block_603.xml", proxy, tmp_path, CALLER, CALLEE)
    assert res.successful == 1, res.stderr + res.messages[-2000:]
    assert uas.received("INVITE") == 1

    # Unblocked again: the next call passes.
    redis_client.srem(key_prefix + "block:caller", CALLER)
    wait_for(lambda: proxy.metric("sipscreen_snapshot_entries") == 0)
    res = one_call("uac_screen.xml", proxy, tmp_path, CALLER, CALLEE)
    assert res.successful == 1, res.stderr + res.messages[-2000:]
    assert uas.received("INVITE") == 2


def test_metrics_endpoint_names(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
) -> None:
    redis_client.sadd(key_prefix + "block:caller", "+12127369999")
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix)
    assert one_call("uac_screen.xml", proxy, tmp_path, CALLER, CALLEE).successful == 1
    assert one_call("uac_block_603.xml", proxy, tmp_path, "+12127369999", CALLEE).successful == 1
    # Core counters are exported twice a second.
    assert wait_for(
        lambda: proxy.metric("sipscreen_sip_messages_total", direction="in", kind="INVITE") >= 2
    )
    text = proxy.metrics_text()
    for name in (
        "sipscreen_invites_total",
        "sipscreen_sip_messages_total",
        "sipscreen_decision_seconds_bucket",
        "sipscreen_snapshot_entries",
        "sipscreen_snapshot_age_seconds",
        "sipscreen_redis_up",
        "sipscreen_parse_errors_total",
        "sipscreen_dropped_total",
        "sipscreen_records_dropped_total",
    ):
        assert name in text, name
    assert proxy.metric("sipscreen_invites_total", verdict="allowed", rule="default") == 1
    assert proxy.metric("sipscreen_invites_total", verdict="blocked", rule="caller_block") == 1
    assert proxy.metric("sipscreen_sip_messages_total", direction="in", kind="INVITE") >= 2
    assert proxy.metric("sipscreen_sip_messages_total", direction="out", kind="6xx") >= 1
    assert proxy.metric("sipscreen_decision_seconds_count") == 2
    assert proxy.metric("sipscreen_redis_up") == 1
    assert proxy.metric("sipscreen_snapshot_entries") >= 1
    assert proxy.metric("sipscreen_snapshot_age_seconds") >= 0


def test_redis_restart_during_traffic(
    tmp_path: Path, loop_name: str, private_redis: Any, start_proxy: Any, sipp_uas: Any
) -> None:
    """Redis goes away mid-run and comes back: screening continues on the
    last snapshot, no call fails, no blocked caller gets through."""
    import redis

    prefix = "sipscreen-test-restart:"
    r = redis.Redis.from_url(private_redis.url, decode_responses=True)
    blocked = [f"+1212736{9000 + i:04d}" for i in range(5)]
    r.sadd(prefix + "block:caller", *blocked)
    r.close()
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, private_redis.url, prefix, loop=loop_name)
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 1)

    allowed = [f"+1212736{5000 + i:04d}" for i in range(60)]
    rows = [(a, CALLEE) for a in allowed]
    inf = write_callers(tmp_path / "mix.csv", rows)
    binf = write_callers(tmp_path / "blk.csv", [(b, CALLEE) for b in blocked] * 4)

    import threading

    results: dict[str, Any] = {}

    def traffic() -> None:
        results["allowed"] = run_sipp(
            "uac_screen.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=60, rate=10, inf=inf
        )

    def blocked_traffic() -> None:
        results["blocked"] = run_sipp(
            "uac_block_603.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=20, rate=4, inf=binf
        )

    t1 = threading.Thread(target=traffic)
    t2 = threading.Thread(target=blocked_traffic)
    t1.start()
    t2.start()
    wait_for(lambda: uas.received("INVITE") >= 10)  # traffic is flowing
    private_redis.stop()
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 0)
    during = uas.received("INVITE")  # calls keep going through while Redis is away
    wait_for(lambda: uas.received("INVITE") >= during + 10)
    private_redis.start()
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 1, timeout=20)
    t1.join(120)
    t2.join(120)
    a, b = results["allowed"], results["blocked"]
    assert a.failed == 0 and a.successful == 60, a.stderr[-2000:]
    assert b.failed == 0 and b.successful == 20, b.stderr[-2000:]
    # The softswitch saw every allowed call and none of the blocked ones.
    assert uas.received("INVITE") == 60
    assert all(b not in uas.messages() for b in blocked)


@pytest.mark.parametrize("batched", [True, False], ids=["batched_udp", "transport_udp"])
def test_two_workers_share_one_port(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    batched: bool,
) -> None:
    """SIPp sends from ONE address:port; the CBPF program spreads its
    datagrams over both workers' SO_REUSEPORT sockets by branch, each to the
    worker that owns it, and a worker hands an initial INVITE the program could
    not place to its owner (both UDP paths of the worker)."""
    redis_client.sadd(key_prefix + "block:caller", "+12127369999")
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port, redis_url, key_prefix, workers=2, sections={"proxy": {"batched_udp": batched}}
    )
    calls = 40
    inf = write_callers(
        tmp_path / "w.csv", [(f"+1212736{6000 + i:04d}", CALLEE) for i in range(calls)]
    )
    res = run_sipp(
        "uac_screen.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=calls, rate=20, inf=inf
    )
    assert res.failed == 0, res.stderr[-3000:]
    assert res.successful == calls
    binf = write_callers(tmp_path / "wb.csv", [("+12127369999", CALLEE)] * 10)
    res2 = run_sipp(
        "uac_block_603.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=10, rate=10, inf=binf
    )
    assert res2.failed == 0 and res2.successful == 10, res2.stderr[-3000:]
    assert count_received(res2.messages, "SIP/2.0 603 Decline") >= 10
    assert uas.received("INVITE") == calls
    assert wait_for(lambda: proxy.metric("sipscreen_invites_total", verdict="allowed") == calls)
    # Both workers received datagrams (one scrape target, per-worker series).
    w0 = proxy.metric("sipscreen_worker_datagrams_total", worker="0")
    w1 = proxy.metric("sipscreen_worker_datagrams_total", worker="1")
    assert w0 > 0 and w1 > 0, (w0, w1)
    assert proxy.metric("sipscreen_invites_total", verdict="blocked") == 10
    # The kernel's steering program (proxy/sip/steer.py) delivered every INVITE
    # and ACK to the worker that owns its branch: nothing was handed over.
    assert proxy.metric("sipscreen_core_events_total", event="handoffs_in") == 0
    # RFC 2543 branches (no cookie) are spread at random: about half reach the
    # worker that does not own them and are handed over; each gets its 603.
    with udp_recorder() as (sock, port):
        for i in range(20):
            sock.sendto(_invite_2543(port, i), ("127.0.0.1", proxy.port))
        answers = [recv_datagram(sock, 5.0) for _ in range(20)]
    assert all(a is not None and a.startswith(b"SIP/2.0 603 ") for a in answers), answers
    assert wait_for(lambda: proxy.metric("sipscreen_core_events_total", event="handoffs_in") > 0)


def _invite_2543(port: int, i: int) -> bytes:
    return (
        f"INVITE sip:{CALLEE}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=old{i}\r\n"
        f"From: <sip:+12127369999@127.0.0.1>;tag=f{i}\r\nTo: <sip:{CALLEE}@127.0.0.1>\r\n"
        f"Call-ID: rfc2543-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
