"""The decision order through the running proxy with real SIP (SIPp UAC ->
sipscreen -> SIPp UAS softswitch), data edited live in the real Redis:

- an allowlisted caller over a provider removed from the RMD is refused
  (603, rule rmd_gate): no allowlist lifts 47 CFR 64.6305(g) (the old order
  let it through);
- a PSAP (emergency-caller list) over a blocked provider reaches the
  softswitch (47 CFR 64.1200(k)(6));
- a source no trunk maps: the configured unmapped_provider_policy (block ->
  603 unmapped_provider; monitor -> passes, counted);
- a Final Determination Order (47 CFR 64.1200(n)(3)) within 30 days of its
  release passes and counts as would_block fdo; past it, 603 fdo.

Plus the Screener's counters for allowlist overrides on real parsed requests.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sipscreen_testlib import loaded_store, one_call, run_cli, screener_config, wait_for

from proxy.metrics import Metrics
from proxy.screen import Screener
from proxy.sip.message import parse
from rules.verdict import Rule

CALLEE = "+13125557000"
CALLER = "+12127368000"
PSAP = "+12127360911"
TRUNK = [{"cidr": "127.0.0.1/32", "provider": "up"}]


def _decisions(proxy: Any) -> list[dict[str, str]]:
    out = []
    for line in proxy.stdout().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.sipp
def test_allowlisted_caller_over_removed_provider_is_refused(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
) -> None:
    redis_client.hset(key_prefix + "provider:up", mapping={"name": "Up", "rmd_status": "removed"})
    redis_client.sadd(key_prefix + "allow:caller", CALLER)
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, trunks=TRUNK)
    res = one_call("uac_block_603.xml", proxy, tmp_path, CALLER, CALLEE)
    assert res.successful == 1, res.stderr + res.messages[-2000:]
    assert uas.received("INVITE") == 0
    assert wait_for(
        lambda: proxy.metric("sipscreen_invites_total", verdict="blocked", rule="rmd_gate") == 1
    )
    assert proxy.metric("sipscreen_invites_total", verdict="allowed", rule="allowlist") == 0
    assert wait_for(lambda: any(d["rule"] == "rmd_gate" for d in _decisions(proxy)))
    rec = next(d for d in _decisions(proxy) if d["rule"] == "rmd_gate")
    assert rec["citation"] == "47 CFR 64.6305(g)" and rec["action"] == "reject"
    assert "64.6305(d)-(f)" in rec["reason"] and rec["status"] == "603"


@pytest.mark.sipp
def test_psap_caller_passes_a_blocked_provider(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
) -> None:
    redis_client.hset(key_prefix + "provider:up", mapping={"name": "Up", "rmd_status": "listed"})
    redis_client.sadd(key_prefix + "block:provider", "up")
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, trunks=TRUNK)
    # Before the PSAP is on the emergency-caller list: refused like any caller.
    res = one_call("uac_block_603.xml", proxy, tmp_path, PSAP, CALLEE)
    assert res.successful == 1, res.stderr + res.messages[-2000:]
    assert uas.received("INVITE") == 0
    # Added live with redis-cli: the next call from it reaches the softswitch.
    redis_client.sadd(key_prefix + "emergency:caller", PSAP)
    time.sleep(0.5)  # the store follows MONITOR
    res = one_call("uac_screen.xml", proxy, tmp_path, PSAP, CALLEE)
    assert res.successful == 1, res.stderr + res.messages[-2000:]
    assert uas.received("INVITE") == 1
    assert wait_for(
        lambda: proxy.metric("sipscreen_invites_total", verdict="allowed", rule="emergency") == 1
    )
    assert proxy.metric("sipscreen_invites_total", verdict="blocked", rule="provider_block") == 1


@pytest.mark.sipp
@pytest.mark.parametrize("policy", ["block", "monitor"])
def test_unmapped_source_follows_the_configured_policy(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    policy: str,
) -> None:
    redis_client.hset(
        key_prefix + "provider:watched", mapping={"rmd_status": "listed", "monitor_only": "1"}
    )
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port,
        redis_url,
        key_prefix,
        sections={"proxy": {"unmapped_provider_policy": policy}},
        trunks=[{"cidr": "10.99.0.0/16", "provider": "elsewhere"}],  # not 127.0.0.1
    )
    banner = proxy.stdout()
    assert f"unmapped_provider_policy = {policy}" in banner
    assert "monitor_only providers" in banner and "watched" in banner
    if policy == "block":
        res = one_call("uac_block_603.xml", proxy, tmp_path, CALLER, CALLEE)
        assert res.successful == 1, res.stderr + res.messages[-2000:]
        assert uas.received("INVITE") == 0
        assert wait_for(
            lambda: (
                proxy.metric("sipscreen_invites_total", verdict="blocked", rule="unmapped_provider")
                == 1
            )
        )
        assert proxy.metric("sipscreen_unmapped_provider_total", action="blocked") == 1
    else:
        res = one_call("uac_screen.xml", proxy, tmp_path, CALLER, CALLEE)
        assert res.successful == 1, res.stderr + res.messages[-2000:]
        assert uas.received("INVITE") == 1
        assert wait_for(
            lambda: proxy.metric("sipscreen_unmapped_provider_total", action="passed") == 1
        )
        assert (
            proxy.metric(
                "sipscreen_unmapped_provider_total",
                rule="unmapped_provider",
                citation="47 CFR 64.6305(g)",
            )
            == 1
        )
        assert proxy.metric("sipscreen_invites_total", verdict="blocked") == 0


@pytest.mark.sipp
def test_fdo_passes_within_30_days_then_blocks(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
) -> None:
    redis_client.hset(key_prefix + "provider:up", mapping={"name": "Up", "rmd_status": "listed"})
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, trunks=TRUNK)
    today = dt.datetime.now(dt.UTC).date()
    recent = (today - dt.timedelta(days=10)).isoformat()
    old = (today - dt.timedelta(days=40)).isoformat()
    res = run_cli(
        proxy.config_path, "order", "add", "--provider", "up", "--order", "DA 26-101",
        "--released", recent,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    time.sleep(0.5)
    # Within 30 days of release: passes, counted as would_block fdo.
    call = one_call("uac_screen.xml", proxy, tmp_path, CALLER, CALLEE)
    assert call.successful == 1, call.stderr + call.messages[-2000:]
    assert uas.received("INVITE") == 1
    assert wait_for(
        lambda: proxy.metric("sipscreen_invites_total", verdict="would_block", rule="fdo") == 1
    )
    rec = next(d for d in _decisions(proxy) if d["rule"] == "fdo")
    assert rec["action"] == "would_block" and rec["detail"] == "DA-26-101"
    assert "30th day" in rec["reason"]
    # The order is recorded as released 40 days ago: blocked from now on.
    res = run_cli(proxy.config_path, "order", "remove", "DA-26-101", "--reason", "wrong date typed")
    assert res.returncode == 0, res.stderr
    res = run_cli(
        proxy.config_path, "order", "add", "--provider", "up", "--order", "DA 26-101",
        "--released", old,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    time.sleep(0.5)
    call = one_call("uac_block_603.xml", proxy, tmp_path, CALLER, CALLEE)
    assert call.successful == 1, call.stderr + call.messages[-2000:]
    assert uas.received("INVITE") == 1
    assert wait_for(
        lambda: proxy.metric("sipscreen_invites_total", verdict="blocked", rule="fdo") == 1
    )
    assert (
        proxy.metric(
            "sipscreen_invites_total",
            verdict="blocked",
            rule="fdo",
            citation="47 CFR 64.1200(n)(3)",
        )
        == 1
    )
    # History kept: added, removed, added again.
    events = [
        json.loads(e)["event"]
        for e in redis_client.lrange(key_prefix + "order:history:DA-26-101", 0, -1)
    ]
    assert events == ["added", "removed", "added"]
    # check agrees with the proxy (same config) and exits 1 for blocked.
    res = run_cli(proxy.config_path, "check", "--caller", CALLER, "--source", "127.0.0.1")
    assert res.returncode == 1 and "BLOCKED by fdo" in res.stdout, res.stdout


# -- Screener counters on real parsed requests ---------------------------------


def _invite(caller: str) -> Any:
    return parse(
        (
            f"INVITE sip:{CALLEE}@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKorder1\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{caller}@10.1.2.3>;tag=1\r\n"
            f"To: <sip:{CALLEE}@127.0.0.1>\r\n"
            "Call-ID: order-test-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )


async def test_allowlist_pass_over_dno_is_counted(
    tmp_path: Path, redis_url: str, redis_client: Any, key_prefix: str
) -> None:
    # 555-01XX fiction range: invalid NANP (47 CFR 64.1200(o)); allowlisted.
    fiction = "+12125550150"
    redis_client.sadd(key_prefix + "allow:caller", fiction)
    redis_client.hset(key_prefix + "provider:acme", mapping={"rmd_status": "listed"})
    cfg = screener_config(tmp_path, key_prefix)
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    client = aioredis.Redis.from_url(redis_url)
    from proxy.records import RecordWriter

    records = RecordWriter(client, key_prefix, 1000, 0)
    try:
        s = Screener(cfg, store, m, records, rng=lambda: 1.0)
        assert s(_invite(fiction), ("10.1.2.3", 5060), "udp") is None
        m.flush_counts()
        assert m.invites_allowed[Rule.ALLOWLIST].child._value.get() == 1
        assert m.allowlist_overrides_by_rule[Rule.DNO_INVALID]._value.get() == 1
        assert m.invites_would_block[Rule.DNO_INVALID]._value.get() == 0
        assert await records.flush() == 1
        (rec,) = await client.xrange(key_prefix + "records")
        assert rec[1][b"action"] == b"allowlist_override"
        assert rec[1][b"rule"] == b"dno_invalid"
        assert rec[1][b"citation"] == b"47 CFR 64.1200(o)"
    finally:
        await client.aclose()
