"""Redirect mode with the real Screener on a snapshot loaded from the real Redis:
proxy/redirect.py's make_core and verdict headers, the [redirect] / mode
configuration keys and their errors, the records' mode field, sipscreen_mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sipscreen_testlib import loaded_store, screener_config

from proxy.cli import build_parser, run_overrides
from proxy.config import ConfigError, load_config
from proxy.metrics import Metrics
from proxy.redirect import make_core
from proxy.screen import Screener
from proxy.sip.core import CoreConfig, ProxyCore
from proxy.sip.message import Response, parse
from proxy.sip.redirect import RedirectCore

BLOCKED = "+12127369999"
SRC = ("10.1.2.3", 5060)


def _invite(caller: str, branch: str) -> bytes:
    return (
        "INVITE sip:+13125557000@10.9.0.1:5080;user=phone SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK{branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@10.1.2.3>;tag=1\r\n"
        "To: <sip:+13125557000@10.9.0.1>\r\n"
        f"Call-ID: redirect-{branch}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


class Records:
    def __init__(self) -> None:
        self.got: list[dict[str, str]] = []

    def append(self, rec: dict[str, str]) -> None:
        self.got.append(rec)


async def test_redirect_core_with_the_real_screener(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: Any
) -> None:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    cfg = screener_config(
        tmp_path,
        key_prefix,
        '[proxy]\nmode = "redirect"\n[records]\nsample_allowed = 1.0\n'
        '[redirect]\ntarget = "10.0.0.5:5090"\n',
    )
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    recs = Records()
    screener = Screener(cfg, store, m, recs, rng=lambda: 0.0)
    core = make_core(cfg, CoreConfig("127.0.0.1", 5060, ("127.0.0.1", 9)), screener, m)
    assert isinstance(core, RedirectCore)
    assert m.registry.get_sample_value("sipscreen_mode", {"mode": "redirect"}) == 1

    core.datagram_received(_invite("+12127368000", "a1"), SRC, "udp", 0.0)
    core.datagram_received(_invite(BLOCKED, "b1"), SRC, "udp", 0.0)
    (ok, _, _), (blocked, _, _) = core.datagrams_to_send()
    r_ok, r_bl = parse(ok), parse(blocked)
    assert isinstance(r_ok, Response) and isinstance(r_bl, Response)
    assert r_ok.status == 302
    assert r_ok.header(b"contact") == [b"<sip:+13125557000@10.0.0.5:5090;user=phone>"]
    assert r_ok.header(b"x-sipscreen-verdict") == [b"allow"]
    assert r_ok.header(b"x-sipscreen-rule") == [b"default"]
    assert r_bl.status == 603 and r_bl.reason == b"Decline"
    assert r_bl.header(b"x-sipscreen-verdict") == [b"block"]
    assert r_bl.header(b"x-sipscreen-rule") == [b"caller_block"]
    assert r_bl.header(b"x-sipscreen-citation") == [b"operator policy"]
    assert [(r["action"], r["mode"]) for r in recs.got] == [("allow", "redirect")] + [
        ("reject", "redirect")
    ]
    blocked_count = m.registry.get_sample_value(
        "sipscreen_invites_total",
        {"verdict": "blocked", "rule": "caller_block", "citation": "operator policy"},
    )
    assert blocked_count == 1
    # monitor mode: the would-be block is a 302 saying so
    mon = Screener(dataclasses.replace(cfg, monitor=True), store, m, recs)
    core.screen = mon
    core.datagram_received(_invite(BLOCKED, "c1"), SRC, "udp", 0.0)
    ((data, _, _),) = core.datagrams_to_send()
    r = parse(data)
    assert isinstance(r, Response) and r.status == 302
    assert r.header(b"x-sipscreen-verdict") == [b"monitor"]


async def test_inline_mode_builds_the_proxy_core_and_no_mode_field(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    cfg = screener_config(tmp_path, key_prefix, "[records]\nsample_allowed = 1.0\n")
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    recs = Records()
    screener = Screener(cfg, store, m, recs, rng=lambda: 0.0)
    core = make_core(cfg, CoreConfig("127.0.0.1", 5060, ("127.0.0.1", 5080)), screener, m)
    assert type(core) is ProxyCore
    assert m.registry.get_sample_value("sipscreen_mode", {"mode": "inline"}) == 1
    core.datagram_received(_invite("+12127368000", "d1"), SRC, "udp", 0.0)
    ((_, dest, _),) = core.datagrams_to_send()
    assert dest == ("127.0.0.1", 5080)  # forwarded, as ever
    assert recs.got and "mode" not in recs.got[0]


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        ('[proxy]\nmode = "query"\n', "proxy.mode: must be one of inline, redirect"),
        ("[redirect]\nallow_status = 200\n", "redirect.allow_status: must be a 3xx"),
        ('[redirect]\ntarget = "sip:x@y"\n', "redirect.target: must be 'HOST' or 'HOST:PORT'"),
        ("[redirect]\nstatus = 302\n", "redirect.status: unknown key"),
        ('[redirect]\nallow_reason = "a\\"b"\n', "redirect.allow_reason: must be printable"),
    ],
)
def test_bad_redirect_configuration_is_refused(tmp_path: Path, body: str, msg: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        load_config(str(p), {})


def test_run_mode_flag(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[redirect]\nallow_status = 380\ntarget = "[2001:db8::5]:5080"\n')
    args = build_parser().parse_args(["run", "--config", str(p), "--mode", "redirect"])
    cfg = load_config(str(p), run_overrides(args))
    assert cfg.mode == "redirect" and cfg.redirect_allow_status == 380
    assert cfg.redirect_target == "[2001:db8::5]:5080"
    assert load_config(str(p), {}).mode == "inline"
