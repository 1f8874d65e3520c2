"""SIPp caller -> sipscreen -> SIPp callee (the stand-in softswitch).

Real peers over loopback UDP/TCP, real Redis with a per-test key prefix,
the proxy as a subprocess on both event loops. Loads are small and bounded
(<= 200 calls, <= 50 calls/s) and nothing asserts on absolute times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import count_received, run_sipp, wait_for, write_callers

pytestmark = [pytest.mark.sipp]

# Valid NANP numbers (NPA and NXX in [2-9]XX, not N11, not 555-01XX).
ALLOWED = [f"+1212736{4000 + i:04d}" for i in range(50)]
BLOCKED = "+12127369999"
CALLEE = "+13125557000"


@pytest.mark.parametrize("batched", [True, False], ids=["batched_udp", "transport_udp"])
def test_allowed_calls_all_succeed(
    tmp_path: Path,
    loop_name: str,
    key_prefix: str,
    redis_url: str,
    start_proxy: Any,
    sipp_uas: Any,
    batched: bool,
) -> None:
    """Both UDP paths of the worker: recvmmsg/sendmmsg batches and one transport
    callback per datagram (config proxy.batched_udp)."""
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port,
        redis_url,
        key_prefix,
        loop=loop_name,
        sections={"proxy": {"batched_udp": batched}},
    )
    calls = 30
    inf = write_callers(tmp_path / "callers.csv", [(a, CALLEE) for a in ALLOWED[:calls]])
    res = run_sipp(
        "uac_screen.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=calls, rate=15, inf=inf
    )
    assert res.failed == 0, res.stderr + res.stdout[-2000:]
    assert res.successful == calls
    assert res.returncode == 0
    # Every INVITE, ACK and BYE went through to the softswitch.
    assert uas.received("INVITE") == calls
    assert uas.received("BYE") == calls
    allowed = {"verdict": "allowed"}
    assert wait_for(lambda: proxy.metric("sipscreen_invites_total", **allowed) >= calls)
    assert proxy.metric("sipscreen_invites_total", **allowed) == calls
    assert proxy.metric("sipscreen_invites_total", verdict="blocked") == 0


@pytest.mark.parametrize(
    ("kind", "scenario", "status_line", "header"),
    [
        # 603+ is analytics-only (the notice rules): on the wire in
        # tests/e2e/test_seed_letter.py; 607 is refused by the config
        # (tests/unit/test_config.py, tests/integration/test_cli.py).
        (
            "608",
            "uac_block_608.xml",
            "SIP/2.0 608 Rejected",
            "Call-Info: <https://jcard.example/op.jws>;purpose=jwscard",
        ),
        ("603", "uac_block_603.xml", "SIP/2.0 603 Decline", None),
    ],
)
def test_block_answers(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    kind: str,
    scenario: str,
    status_line: str,
    header: str | None,
) -> None:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    uas = sipp_uas("uas_rr.xml")
    answer: dict[str, Any] = {"kind": kind}
    if kind == "608":
        answer["jcard_url"] = "https://jcard.example/op.jws"
    proxy = start_proxy(
        uas.port, redis_url, key_prefix, sections={"answer": {"deterministic": answer}}
    )
    calls = 5
    inf = write_callers(tmp_path / "blocked.csv", [(BLOCKED, CALLEE)] * calls)
    res = run_sipp(scenario, f"127.0.0.1:{proxy.port}", tmp_path, calls=calls, rate=10, inf=inf)
    assert res.failed == 0, res.stderr + res.messages[-3000:]
    assert res.successful == calls
    # The exact answer, on the wire.
    assert count_received(res.messages, status_line) >= calls
    if header is not None:
        assert header in res.messages
    else:
        assert "Reason:" not in res.messages and "Call-Info:" not in res.messages
    # Every INVITE decided (blocked), and the softswitch never saw one.
    blocked = {"verdict": "blocked", "rule": "caller_block"}
    assert wait_for(lambda: proxy.metric("sipscreen_invites_total", **blocked) >= calls)
    assert proxy.metric("sipscreen_invites_total", **blocked) == calls
    assert uas.received("INVITE") == 0
    # One JSON decision line per blocked call on stdout.
    lines = [ln for ln in proxy.stdout().splitlines() if '"rule":"caller_block"' in ln]
    assert len(lines) == calls
    # ... and a decision record per block in the Redis stream.
    wait_for(lambda: redis_client.xlen(key_prefix + "records") >= calls)
    recs = redis_client.xrange(key_prefix + "records")
    assert len(recs) == calls
    assert {r[1]["caller"] for r in recs} == {BLOCKED}
    assert {r[1]["citation"] for r in recs} == {"operator policy"}


def test_cancel_is_relayed(
    tmp_path: Path, loop_name: str, key_prefix: str, redis_url: str, start_proxy: Any, sipp_uas: Any
) -> None:
    uas = sipp_uas("uas_cancel.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, loop=loop_name)
    calls = 10
    inf = write_callers(tmp_path / "c.csv", [(a, CALLEE) for a in ALLOWED[:calls]])
    res = run_sipp(
        "uac_cancel.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=calls, rate=10, inf=inf
    )
    assert res.failed == 0, res.stderr + res.messages[-3000:]
    assert res.successful == calls
    assert uas.received("CANCEL") == calls
    assert uas.received("ACK") == calls


@pytest.mark.parametrize("workers", [1, 2])
def test_tcp_listener(
    tmp_path: Path,
    loop_name: str,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    workers: int,
) -> None:
    """SIPp over TCP to the proxy (-t t1); the proxy relays over UDP to the
    softswitch and answers come back on the caller's TCP connection (with 2
    workers, relayed by the worker that got the answer to the one that holds
    the connection)."""
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, loop=loop_name, tcp=True, workers=workers)
    calls = 10
    inf = write_callers(tmp_path / "t.csv", [(a, CALLEE) for a in ALLOWED[:calls]])
    res = run_sipp(
        "uac_screen.xml",
        f"127.0.0.1:{proxy.port}",
        tmp_path,
        calls=calls,
        rate=10,
        inf=inf,
        transport="t1",
    )
    assert res.failed == 0, res.stderr + res.messages[-3000:]
    assert res.successful == calls
    assert uas.received("INVITE") == calls
    inf2 = write_callers(tmp_path / "tb.csv", [(BLOCKED, CALLEE)] * 3)
    res2 = run_sipp(
        "uac_block_603.xml",
        f"127.0.0.1:{proxy.port}",
        tmp_path,
        calls=3,
        rate=10,
        inf=inf2,
        transport="t1",
    )
    assert res2.failed == 0, res2.stderr + res2.messages[-3000:]
    assert res2.successful == 3
    assert uas.received("INVITE") == calls
