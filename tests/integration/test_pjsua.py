"""A real SIP user agent (pjsua2) calling through the proxy to the SIPp
callee: an allowed caller is connected and hangs up with a BYE that goes
through the Record-Route; a blocked caller gets the configured 603."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.pjsua, pytest.mark.sipp]

HERE = Path(__file__).resolve().parent
CALLEE = "+13125557000"


def _call(caller: str, proxy_port: int) -> str:
    pytest.importorskip("pjsua2")
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "pjsua_call.py"),
            caller,
            f"sip:{CALLEE}@127.0.0.1:{proxy_port}",
            "15",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")[-3000:]
    return out


def test_pjsua_allowed_then_blocked(
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    loop_name: str,
) -> None:
    blocked = "+12127369999"
    redis_client.sadd(key_prefix + "block:caller", blocked)
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix, loop=loop_name)

    out = _call("+12127368000", proxy.port)
    assert "FINAL 200" in out, out
    assert "BYE done" in out, out
    assert uas.received("INVITE") == 1
    assert uas.received("BYE") == 1

    out = _call(blocked, proxy.port)
    assert "FINAL 603" in out, out
    assert uas.received("INVITE") == 1
