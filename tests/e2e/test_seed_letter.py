"""The seed letter, end to end: the FCC's 2021-10-21 cease-and-desist letter to
PZ/Illum replayed through the running proxy.

Each test loads the real letter with the `sipscreen` data CLI (Attachment A,
78 traced calls; the k4 notice with the letter's date; the provider; the FCC
notification) under its own key prefix, maps the trunk 127.0.0.2/32 to
provider "pz-illum" in the proxy's config, starts the proxy with a replay
clock (`run --clock` or `[proxy] clock`) and places SIPp calls from
127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux) to a SIPp UAS:

* the letter's own dates: issued 2021-10-21; 48-hour window over at
  2021-10-24T04:00:00Z (the end of 2021-10-23 ET, the hour of issue being
  unknown); report due "November 5, 2021", i.e. to 2021-11-05 23:59:59 EDT
  (2021-11-06T03:59:59Z); an FCC notification dated the letter's day is
  refused (it precedes the determination it must report);
* 2021-10-22, before the deadlines: calls complete (200) and are recorded
  as would_block notice_k4;
* 2021-11-10, no mitigation was recorded within the 48 hours nor a report
  by November 5, and the FCC was notified on 2021-11-08: every call gets
  the configured analytics answer (603 Network Blocked + Reason,
  ATIS-1000099) citing 47 CFR 64.1200(k)(4), while a 911 call from the same
  trunk reaches the softswitch (47 CFR 64.1200(k)).

Small and bounded: a handful of calls per phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import ROOT, count_received, run_sipp, wait_for, write_callers

pytestmark = [pytest.mark.sipp]

LETTER = ROOT / "tests" / "data" / "seed" / "fcc-cease-and-desist-2021-10-21.txt"
PROVIDER = "pz-illum"
NOTICE = "k4-pz-illum-20211021"  # default id: kind-provider-letter date
TRUNK_IP = "127.0.0.2"  # the PZ/Illum trunk's source address
TRUNKS = [{"cidr": f"{TRUNK_IP}/32", "provider": PROVIDER}]
BEFORE = "2021-10-22T12:00:00Z"  # the day after the letter: deadlines open
AFTER = "2021-11-10T12:00:00Z"  # window and report date passed, FCC notified
FCC_NOTIFIED = "2021-11-08"  # a bare date: the end of that day, ET
FCC_SUMMARY = "no mitigation within 48 hours; no report by November 5, 2021"
# Valid NANP caller IDs (not 555-01XX, not N11): no other rule may decide.
CALLERS = [f"+1212736{4100 + i:04d}" for i in range(5)]
CALLEE = "+13125557000"
K4 = "47 CFR 64.1200(k)(4)"
REDRESS = "https://robocall-redress.sipscreen-carrier.net/"
# The ATIS-1000099 603+ Reason header, byte for byte (opted in below).
REASON = f'Reason: SIP;cause=603;text="v=analytics1;url={REDRESS}";location=RLN\r\n'
ANALYTICS_603PLUS = {"analytics": {"kind": "603+", "redress_url": REDRESS}}


def sipscreen(config: Path, *args: str, rc: int = 0) -> subprocess.CompletedProcess[str]:
    """`python3 -m proxy --config CONFIG ARGS...` (the data CLI), exit code checked."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [sys.executable, "-m", "proxy", "--config", str(config), *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == rc, f"sipscreen {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


def load_seed_letter(config: Path) -> dict[str, str]:
    """The walk-through's data steps (docs/WALKTHROUGH.md); returns their stdout."""
    out = {}
    out["provider"] = sipscreen(
        config, "provider", "set", PROVIDER, "--name", "PZ/Illum Telecommunication LLC"
    ).stdout
    out["notice"] = sipscreen(
        config, "notice", "add", "--provider", PROVIDER, "--kind", "k4", "--letter", str(LETTER)
    ).stdout
    out["traceback"] = sipscreen(
        config, "traceback", "import", str(LETTER), "--notice", NOTICE
    ).stdout
    # The letter's own day: refused (47 CFR 64.1200(k)(4): the FCC is told of
    # a determination, and none can have been made before the window ends).
    out["fcc_refused"] = sipscreen(
        config, "notice", "fcc-notified", NOTICE, "--date", "2021-10-21",
        "--summary", FCC_SUMMARY, rc=2,
    ).stderr  # fmt: skip
    out["fcc"] = sipscreen(
        config, "notice", "fcc-notified", NOTICE, "--date", FCC_NOTIFIED, "--summary", FCC_SUMMARY
    ).stdout
    out["show"] = sipscreen(config, "notice", "show", NOTICE, "--at", AFTER).stdout
    return out


def exported(config: Path, *filters: str) -> list[dict[str, str]]:
    res = sipscreen(config, "records", "export", "--format", "json", *filters)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def at_least(recs: list[dict[str, str]], n: int = len(CALLERS)) -> list[dict[str, str]]:
    """`recs` once there are `n` of them (decision records are written async)."""
    return recs if len(recs) >= n else []


def place_calls(
    tmp_path: Path, proxy: Any, scenario: str, rows: list[tuple[str, str]], name: str
) -> Any:
    inf = write_callers(tmp_path / f"{name}.csv", rows)
    return run_sipp(
        scenario,
        f"127.0.0.1:{proxy.port}",
        tmp_path,
        calls=len(rows),
        rate=10,
        inf=inf,
        timeout=30,
        extra=["-i", TRUNK_IP],  # the last -i wins: calls come from the trunk
    )


def test_seed_letter_data(
    tmp_path: Path, key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    """Attachment A imports 78 rows; the notice carries the letter's deadlines;
    the provider report shows them with the traceback evidence."""
    proxy = start_proxy(5080, redis_url, key_prefix, trunks=TRUNKS, start=False)
    out = load_seed_letter(proxy.config_path)
    assert f"traceback:{NOTICE}: 78 traced calls" in out["traceback"]
    assert f"notice {NOTICE}: k4 for provider {PROVIDER}, issued 2021-10-21" in out["notice"]
    assert "issued         2021-10-21 00:00:00 EDT (2021-10-21T04:00:00Z)" in out["notice"]
    # "effectively mitigate illegal traffic within 48 hours": from the end of
    # the letter's day (its hour is not stated).
    assert "mitigation due 2021-10-24T04:00:00Z" in out["notice"]
    # The letter: "within fourteen (14) days of the date of this letter
    # (November 5, 2021)": to the end of that day, Eastern Time (EDT).
    assert (
        "report due     2021-11-05 end of day ET: 2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)"
        in out["notice"]
    )
    assert "precedes any determination" in out["fcc_refused"]
    assert "fcc_notified=2021-11-09T04:59:59Z" in out["fcc"]  # 2021-11-08 23:59:59 EST
    show = out["show"]
    assert "#1 issued" in show and "#2 fcc_notified: " + FCC_SUMMARY in show
    assert "k4 state at 2021-11-10 07:00:00 EST (2021-11-10T12:00:00Z): block" in show

    rep = json.loads(
        sipscreen(proxy.config_path, "report", "provider", PROVIDER, "--format", "json").stdout
    )
    assert rep["provider"] == PROVIDER
    (notice,) = rep["notices"]
    assert notice["id"] == NOTICE
    assert notice["kind"] == "k4"
    assert notice["issued"].startswith("2021-10-21")
    assert notice["mitigation_due"] == "2021-10-24T04:00:00Z"
    assert notice["report_due"] == "2021-11-06T04:00:00Z"  # late from this instant on
    assert notice["fcc_notified"] == "2021-11-09T04:59:59Z"
    assert notice["letter"] == LETTER.name
    tb = rep["traceback"][NOTICE]
    assert tb["rows"] == 78
    assert sum(tb["campaigns"].values()) == 78
    assert tb["campaigns"]["SSA Imposter"] > 0
    assert tb["first"].startswith("2021-08-") and tb["last"].startswith("2021-10-")
    assert any(K4 in b and NOTICE in b for b in rep["basis"])


def test_before_deadline_calls_pass_and_are_flagged(
    tmp_path: Path, key_prefix: str, redis_url: str, start_proxy: Any, sipp_uas: Any
) -> None:
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port, redis_url, key_prefix, trunks=TRUNKS, args=["--clock", BEFORE], start=False
    )
    load_seed_letter(proxy.config_path)
    proxy.start()
    assert "replay clock in force" in proxy.stderr()

    res = place_calls(tmp_path, proxy, "uac_screen.xml", [(c, CALLEE) for c in CALLERS], "pre")
    assert res.failed == 0, res.stderr + res.messages[-3000:]
    assert res.successful == len(CALLERS)
    assert count_received(res.messages, "SIP/2.0 200") >= len(CALLERS)
    assert count_received(res.messages, "SIP/2.0 603") == 0
    assert uas.received("INVITE") == len(CALLERS)

    # Flagged: counted and recorded as a would-block of the k4 notice.
    assert wait_for(
        lambda: (
            proxy.metric("sipscreen_invites_total", verdict="would_block", rule="notice_k4")
            >= len(CALLERS)
        )
    )
    assert proxy.metric("sipscreen_invites_total", verdict="blocked") == 0
    recs = wait_for(lambda: at_least(exported(proxy.config_path, "--provider", PROVIDER)))
    assert len(recs) == len(CALLERS)
    for r in recs:
        assert r["action"] == "would_block"
        assert r["rule"] == "notice_k4"
        assert r["citation"] == K4
        assert r["source"].rsplit(":", 1)[0] == TRUNK_IP and r["transport"] == "udp"
        assert r["ts"].startswith("2021-10-22")  # the replayed instant
        assert NOTICE in r["reason"] and "2021-10-24T04:00:00Z" in r["reason"]
        assert "2021-11-05 23:59:59 EDT" in r["reason"]


def test_after_deadline_blocks_k4_but_911_goes_through(
    tmp_path: Path, key_prefix: str, redis_url: str, start_proxy: Any, sipp_uas: Any
) -> None:
    uas = sipp_uas("uas_rr.xml")
    # The replay clock from the config file this time ([proxy] clock).
    proxy = start_proxy(
        uas.port,
        redis_url,
        key_prefix,
        trunks=TRUNKS,
        sections={"proxy": {"clock": AFTER}, "answer": ANALYTICS_603PLUS},
        start=False,
    )
    load_seed_letter(proxy.config_path)
    proxy.start()
    assert "replay clock in force" in proxy.stderr()

    # Every call from the trunk: the configured analytics answer (603+, opted in).
    res = place_calls(
        tmp_path, proxy, "uac_block_603plus.xml", [(c, CALLEE) for c in CALLERS], "post"
    )
    assert res.failed == 0, res.stderr + res.messages[-3000:]
    assert res.successful == len(CALLERS)
    assert count_received(res.messages, "SIP/2.0 603 Network Blocked") >= len(CALLERS)
    assert REASON in res.messages.replace("\r\n", "\n").replace("\n", "\r\n")
    assert wait_for(
        lambda: (
            proxy.metric("sipscreen_invites_total", verdict="blocked", rule="notice_k4")
            >= len(CALLERS)
        )
    )
    assert uas.received("INVITE") == 0  # every INVITE decided: none reached the softswitch
    lines = [json.loads(ln) for ln in proxy.stdout().splitlines() if ln.startswith("{")]
    k4_lines = [ln for ln in lines if ln["rule"] == "notice_k4"]
    assert len(k4_lines) == len(CALLERS)
    assert all(ln["citation"] == K4 and ln["action"] == "reject" for ln in k4_lines)
    assert all(ln["status"] == "603" and ln["provider"] == PROVIDER for ln in k4_lines)

    recs = wait_for(
        lambda: at_least(exported(proxy.config_path, "--provider", PROVIDER, "--rule", "notice_k4"))
    )
    assert len(recs) == len(CALLERS)
    assert {r["caller"] for r in recs} == set(CALLERS)
    for r in recs:
        assert r["citation"] == K4 and r["action"] == "reject" and r["status"] == "603"
        assert r["ts"].startswith("2021-11-10")
        assert "within 48 hours" in r["reason"] and "2021-11-05 23:59:59 EDT" in r["reason"]
        assert "FCC was notified 2021-11-09T04:59:59Z" in r["reason"]

    # 911 from the same trunk, same caller: relayed to the softswitch.
    res911 = place_calls(tmp_path, proxy, "uac_screen.xml", [(CALLERS[0], "911")], "e911")
    assert res911.failed == 0, res911.stderr + res911.messages[-3000:]
    assert res911.successful == 1
    assert count_received(res911.messages, "SIP/2.0 200") >= 1
    assert uas.received("INVITE") == 1
    assert "INVITE sip:911@" in uas.messages()
    assert wait_for(
        lambda: proxy.metric("sipscreen_invites_total", verdict="allowed", rule="emergency") >= 1
    )
    assert proxy.metric("sipscreen_invites_total", verdict="blocked", rule="notice_k4") == len(
        CALLERS
    )


def test_bad_clock_is_a_config_error(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "proxy", "run", "--clock", "next tuesday"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2
    assert "--clock" in res.stderr and "ISO-8601" in res.stderr


def test_replay_clock_advances_in_real_time() -> None:
    from proxy.config import load_config
    from proxy.server.loops import decision_clock, replay_clock

    clock = replay_clock(1_000.0, anchor=time.time() - 2.0)
    assert 1_002.0 <= clock() < 1_010.0
    cfg = load_config(None, {"clock": "2021-11-10T12:00:00Z"})
    assert cfg.clock_start == 1636545600.0
    start = decision_clock(cfg)()
    assert 1636545600.0 <= start < 1636545600.0 + 60
    # A bare date is the start of that day, US Eastern (EST: 05:00Z), as every CLI date.
    assert load_config(None, {"clock": "2021-11-10"}).clock_start == 1636520400.0
    assert decision_clock(load_config(None)) is time.time
