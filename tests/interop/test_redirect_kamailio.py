"""Redirect mode behind a real SBC (issue 12): SIPp caller -> Kamailio (the SBC,
tests/interop/kamailio-redirect-front.cfg) -> sipscreen `--mode redirect`,
which answers 302 or the block; Kamailio follows the 302 with uac_redirect's
get_redirects() + t_relay() to the SIPp UAS (the softswitch), or relays the
603 back to the caller.

Checked end to end: allowed calls complete (INVITE/200/ACK/BYE/200 through
Kamailio to the UAS, sipscreen's verdict copied onto the INVITE the UAS gets);
blocked calls get the 603 with sipscreen's X-Sipscreen-Rule/Citation headers
intact (SIPp checks them) and never reach the UAS; sipscreen forwarded
nothing, sent one answer per INVITE (its retransmissions aside) and absorbed
the ACK of each; the decision records carry mode=redirect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import (
    free_udp_port,
    options_ping,
    run_sipp,
    stop_process,
    wait_for,
    write_callers,
)

pytestmark = [pytest.mark.sipp, pytest.mark.interop]

HERE = Path(__file__).resolve().parent
CFG = HERE / "kamailio-redirect-front.cfg"
BLOCKED = "+12127369999"
CALLERS = ["+12127368000", "+12127368001", "+12127368002"]
CALLEE = "+13125557000"


def _kamailio() -> tuple[str, str]:
    exe = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not os.access(exe, os.X_OK):
        pytest.skip("Kamailio is not installed (Debian package kamailio)")
    import glob

    for d in sorted(glob.glob("/usr/lib/*/kamailio/modules")):
        if os.path.exists(os.path.join(d, "uac_redirect.so")):
            return exe, d
    pytest.skip("Kamailio's uac_redirect module is not installed")


class Kamailio:
    def __init__(self, cfg: Path, workdir: Path, defines: list[str]) -> None:
        exe, mdir = _kamailio()
        self.port = free_udp_port()
        self.log = workdir / f"kamailio-{self.port}.log"
        cmd = [exe, "-f", str(cfg), "-L", mdir, "-l", f"udp:127.0.0.1:{self.port}"]
        for d in defines:
            cmd += ["-A", d]
        cmd += ["-DD", "-E", "-Y", str(workdir), "-P", str(workdir / "k.pid"), "-m", "32"]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 10
        while options_ping("127.0.0.1", self.port) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"Kamailio did not start: {self.text()[-2000:]}")
            time.sleep(0.1)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def front(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: Any, start_proxy: Any
) -> Iterator[tuple[Any, Kamailio]]:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    # the SBC's trunk: a provider listed in the RMD, so allowed calls are rule "default"
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    proxy = start_proxy(
        9,  # the softswitch address is never used in redirect mode
        redis_url,
        key_prefix,
        workers=2,
        trunks=[{"cidr": "127.0.0.1/32", "provider": "acme"}],
        sections={"proxy": {"mode": "redirect"}, "records": {"sample_allowed": 1.0}},
    )
    k = Kamailio(CFG, tmp_path, [f'SCREEN="sip:127.0.0.1:{proxy.port}"'])
    try:
        yield proxy, k
    finally:
        k.stop()


def test_allowed_calls_complete_blocked_get_603_end_to_end(
    tmp_path: Path, front: tuple[Any, Kamailio], sipp_uas: Any, redis_client: Any, key_prefix: str
) -> None:
    proxy, k = front
    uas = sipp_uas("uas_rr.xml")
    route = f"127.0.0.1:{uas.port}"
    assert "REDIRECT mode" in proxy.stdout() + proxy.stderr()

    allowed = write_callers(tmp_path / "ok.csv", [(c, CALLEE) for c in CALLERS])
    lines = (tmp_path / "ok.csv").read_text().splitlines()
    allowed.write_text("\n".join([lines[0]] + [ln + f"{route};" for ln in lines[1:]]) + "\n")
    res = run_sipp(
        "uac_redirect_front.xml", f"127.0.0.1:{k.port}", tmp_path, calls=6, rate=10, inf=allowed
    )
    assert res.successful == 6 and res.failed == 0, res.stderr[-2000:] + res.stdout[-2000:]

    blocked = tmp_path / "blocked.csv"
    blocked.write_text(f"SEQUENTIAL\n{BLOCKED};{CALLEE};{route};\n")
    res_b = run_sipp(
        "uac_redirect_front.xml", f"127.0.0.1:{k.port}", tmp_path, calls=4, rate=10, inf=blocked
    )
    assert res_b.successful == 4 and res_b.failed == 0, res_b.stderr[-2000:]

    # the caller saw sipscreen's 603 through Kamailio, verdict headers intact
    assert "X-Sipscreen-Rule: caller_block" in res_b.messages
    assert "X-Sipscreen-Citation: operator policy" in res_b.messages
    # the UAS got the 6 allowed INVITEs only, each with the verdict Kamailio copied
    assert wait_for(lambda: uas.received("BYE") == 6, 5)
    assert uas.received("INVITE") == 6
    assert uas.messages().count("X-Screen-Rule: default") >= 6
    assert BLOCKED not in uas.messages()
    # Kamailio followed 6 redirects and relayed 4 blocks
    text = k.text()
    assert text.count("KSCREEN 302 rule=default") == 6
    assert text.count("KSCREEN 603 rule=caller_block") == 4
    assert "KNORELAY" not in text

    # sipscreen: one answer per INVITE, nothing forwarded, every ACK absorbed
    def m(event: str) -> float:
        return float(proxy.metric("sipscreen_core_events_total", event=event))

    assert wait_for(lambda: m("local_responses_302") == 6 and m("local_responses_603") == 4, 5)
    assert m("forwarded_requests") == 0
    assert wait_for(lambda: proxy.metric("sipscreen_dropped_total", reason="ack_absorbed") >= 10, 5)
    assert proxy.metric("sipscreen_mode", mode="redirect") == 1
    assert proxy.metric("sipscreen_invites_total", verdict="blocked", rule="caller_block") == 4
    # decision records: as in inline mode, with the mode
    assert wait_for(lambda: redis_client.xlen(key_prefix + "records") >= 10, 5)
    recs = [f for _id, f in redis_client.xrange(key_prefix + "records")]
    assert {r["mode"] for r in recs} == {"redirect"}
    assert sorted(r["action"] for r in recs) == ["allow"] * 6 + ["reject"] * 4
