"""More than one host (issue 12): two sipscreen processes on their own loopback
addresses (127.0.0.2 and 127.0.0.3), one Redis key prefix, behind a Kamailio
`dispatcher` front (tests/interop/kamailio-dispatcher.cfg, round robin, OPTIONS
probing every second), the softswitch a SIPp UAS.

Checked: calls through the front complete and both hosts carry them; a block
added to Redis (`SADD block:caller`) reaches both hosts (each answers a direct
probe 603; the time from the SADD to that 603 is measured per host); with
SIPp load running, one host is killed (SIGKILL): the dispatcher marks it
down (its INVITEs time out and are sent to the other host, its OPTIONS go
unanswered), the other host carries the rest, and only the calls that were
in flight on the dead host fail.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import (
    ProxyProcess,
    SippResult,
    free_tcp_port,
    free_udp_port,
    run_sipp,
    wait_for,
    write_callers,
    write_config,
)
from test_redirect_kamailio import Kamailio

pytestmark = [pytest.mark.sipp, pytest.mark.interop, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
CFG = HERE / "kamailio-dispatcher.cfg"
HOSTS = ("127.0.0.2", "127.0.0.3")
CALLEE = "+13125557000"
LATE_BLOCK = "+12127364801"


class HostProxy(ProxyProcess):
    """A sipscreen process listening on ``host`` (set per instance)."""


def _loopback_ok(host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


def probe(host: str, port: int, caller: str) -> int:
    """One INVITE from ``caller`` straight to a host; its final status (0: none)."""
    tag = uuid.uuid4().hex[:10]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lp = s.getsockname()[1]
        s.settimeout(1.0)
        msg = (
            f"INVITE sip:{CALLEE}@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:{caller}@127.0.0.1:{lp}>;tag={tag}\r\nTo: <sip:{CALLEE}@{host}>\r\n"
            f"Call-ID: probe-{tag}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        s.sendto(msg, (host, port))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                code = int(data.split(b" ", 2)[1])
                if code >= 200:
                    return code
        except (TimeoutError, ValueError, IndexError):
            return 0


@pytest.fixture
def site(
    tmp_path: Path, redis_url: str, key_prefix: str, sipp_uas: Any
) -> Iterator[tuple[list[HostProxy], Kamailio, Any]]:
    if not all(_loopback_ok(h) for h in HOSTS):
        pytest.skip("127.0.0.2/127.0.0.3 cannot be bound here")
    uas = sipp_uas("uas_rr.xml")
    proxies: list[HostProxy] = []
    lines = []
    for host in HOSTS:
        port, mport = free_udp_port(), free_tcp_port()
        cfg = write_config(
            tmp_path / f"sipscreen-{host}.toml",
            proxy={
                "listen": [f"udp:{host}:{port}"],
                "softswitch": f"udp:127.0.0.1:{uas.port}",
                "workers": 1,
                "log_level": "INFO",
            },
            redis={"url": redis_url, "key_prefix": key_prefix, "embedded": False},
            metrics={"listen": f"127.0.0.1:{mport}"},
        )
        p = HostProxy(cfg, port, mport, [], tmp_path)
        p.host = host
        proxies.append(p)
        lines.append(f"1 sip:{host}:{port} 0 0\n")
    dslist = tmp_path / "dispatcher.list"
    dslist.write_text("".join(lines))
    k = None
    try:
        for p in proxies:
            p.start()
        k = Kamailio(CFG, tmp_path, [f'DSLIST="{dslist}"'])
        yield proxies, k, uas
    finally:
        if k is not None:
            k.stop()
        for p in proxies:
            p.stop()
            assert "Traceback" not in p.stderr(), p.stderr()[-3000:]


def _invites(p: HostProxy) -> float:
    return float(p.metric("sipscreen_invites_total"))


def test_two_hosts_behind_a_dispatcher(
    tmp_path: Path, site: tuple[list[HostProxy], Kamailio, Any], redis_client: Any, key_prefix: str
) -> None:
    (a, b), k, uas = site
    front = f"127.0.0.1:{k.port}"
    callers = [(f"+1212736{8000 + i:04d}", CALLEE) for i in range(40)]
    inf = write_callers(tmp_path / "callers.csv", callers)

    # 1. calls through the front complete, both hosts carry them
    res = run_sipp("uac_screen.xml", front, tmp_path, calls=20, rate=20, inf=inf)
    assert res.successful == 20 and res.failed == 0, res.stderr[-2000:]
    # (allowed calls reach the metric with the worker's periodic flush)
    assert wait_for(lambda: _invites(a) >= 5 and _invites(b) >= 5, 5), (_invites(a), _invites(b))

    # 2. an edit reaches both hosts: SADD, then each host answers 603 directly
    assert probe(a.host, a.port, LATE_BLOCK) == 200  # not blocked yet: the UAS answers
    t0 = time.monotonic()
    redis_client.sadd(key_prefix + "block:caller", LATE_BLOCK)
    seen: dict[str, float] = {}
    deadline = t0 + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        for p in (a, b):
            if p.host not in seen and probe(p.host, p.port, LATE_BLOCK) == 603:
                seen[p.host] = time.monotonic() - t0
        time.sleep(0.01)
    assert set(seen) == set(HOSTS), seen
    print(f"edit -> 603 per host (s, probe-limited): {seen}")

    # 3. kill one host under load: the dispatcher moves the calls to the other
    before_a = _invites(a)
    out: dict[str, SippResult] = {}
    t = threading.Thread(
        target=lambda: out.setdefault(
            "r", run_sipp("uac_screen.xml", front, tmp_path, calls=120, rate=20, inf=inf)
        )
    )
    t.start()
    time.sleep(2.0)
    assert b.proc is not None
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    t.join(120)
    r = out["r"]
    # lost: at most the calls in flight on b when it died, and those the
    # dispatcher sent it before its first failed ping (each then retried on a)
    assert r.failed <= 3 and r.successful + r.failed == 120, (r.successful, r.failed)
    text = k.text()
    assert f"KDOWN sip:{b.host}:{b.port}" in text  # an INVITE timed out there, retried on a
    assert wait_for(lambda: _invites(a) - before_a >= 70, 5), _invites(a) - before_a
    # after the failure, new INVITEs go to a only
    ci_after = [ln for ln in text.splitlines() if "KDISP" in ln][-10:]
    assert all(f"{a.host}:{a.port}" in ln for ln in ci_after), ci_after
    print(
        f"host kill: {r.successful} of 120 calls completed, {r.failed} failed; "
        f"{text.count('KDOWN')} INVITE(s) timed out on the dead host and were retried"
    )
