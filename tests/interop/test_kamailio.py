"""Interop suite (issue 14): real peers on loopback around sipscreen.

pjsua2 caller -> sipscreen -> Kamailio (softswitch: registrar, usrloc, tm,
rr; tests/interop/kamailio-softswitch.cfg) -> pjsua2 callee registered with
Kamailio. Both UAs talk UDP, or both TCP only (the caller calling from one
port, its Contact naming another one where it listens, as a PBX does; no
UDP transport, so it can only follow a route set entry with
``;transport=tcp``), or a TLS caller (certificate made by the test) and a
UDP callee; sipscreen talks UDP to Kamailio and runs with one worker or
two. Every scenario checks what each peer saw: the two UAs'
call states and completed transactions (tests/interop/ua.py), Kamailio's
"KSEEN" log lines for the call's Call-ID, and sipscreen's drop counters.

Kamailio listens only on 127.0.0.1, on a free port; the suite is skipped
with its reason when Kamailio or pjsua2 cannot be had (scripts/test
installs the Debian package when it is missing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import (
    REDIS_URL,
    ProxyProcess,
    delete_prefix,
    free_tcp_port,
    free_udp_port,
    options_ping,
    redis_answers,
    stop_process,
    unstamped,
    write_config,
)

pytestmark = [pytest.mark.pjsua, pytest.mark.interop]

HERE = Path(__file__).resolve().parent
CFG = HERE / "kamailio-softswitch.cfg"
CALLER = "+12127368000"
BLOCKED = "+12127369999"
CALLEE = "+13125557000"
COMBOS = [("udp", 1), ("tcp", 1), ("udp", 2), ("tcp", 2), ("tls", 1), ("tls", 2)]


def make_certs(d: Path) -> dict[str, str]:
    """A test CA and one certificate for 127.0.0.1 (server and client), PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipscreen interop CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"tls_ca": d / "ca.pem", "tls_cert": d / "cert.pem", "tls_key": d / "key.pem"}
    paths["tls_ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["tls_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["tls_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return {k: str(v) for k, v in paths.items()}


def _kamailio_bin() -> str | None:
    return shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else None
    )


def _module_dir() -> str | None:
    import glob

    for d in (*sorted(glob.glob("/usr/lib/*/kamailio/modules")), "/usr/lib/kamailio/modules"):
        if os.path.exists(os.path.join(d, "tm.so")):
            return d
    return None


@dataclass
class Kamailio:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self, call_id: str) -> list[str]:
        """The KSEEN/KREPLY/KNO... lines logged for ``call_id``."""
        text = self.log.read_text(errors="replace")
        return [ln for ln in text.splitlines() if f"ci={call_id}" in ln and " K" in ln]

    def methods(self, call_id: str) -> list[str]:
        """The methods of the requests Kamailio received for ``call_id``, in order."""
        out = []
        for ln in self.lines(call_id):
            m = re.search(r"KSEEN (\S+) ", ln)
            if m:
                out.append(m.group(1))
        return out


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    pytest.importorskip("pjsua2")
    exe = _kamailio_bin()
    if exe is None:
        pytest.skip("Kamailio is not installed (Debian package kamailio)")
    mdir = _module_dir()
    if mdir is None:
        pytest.skip("Kamailio's modules (tm.so ...) are not installed")
    d = tmp_path_factory.mktemp("kamailio")
    port = free_udp_port()
    log = d / "kamailio.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                exe,
                "-f",
                str(CFG),
                "-L",
                mdir,
                "-l",
                f"udp:127.0.0.1:{port}",
                "-l",
                f"tcp:127.0.0.1:{port}",
                "-DD",
                "-E",
                "-Y",
                str(d),
                "-P",
                str(d / "kamailio.pid"),
                "-m",
                "32",
                "-M",
                "8",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    k = Kamailio(port, proc, log)
    try:
        deadline = time.monotonic() + 10
        while options_ping("127.0.0.1", port) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Kamailio did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield k
    finally:
        stop_process(proc)


@dataclass
class Setup:
    transport: str
    workers: int
    proxy: ProxyProcess
    kamailio: Kamailio
    tls: dict[str, str]

    @property
    def tls_port(self) -> int:
        text = Path(self.proxy.config_path).read_text()
        m = re.search(r"tls:127\.0\.0\.1:(\d+)", text)
        assert m is not None
        return int(m.group(1))


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{t}-w{w}" for t, w in COMBOS])
def setup(
    request: pytest.FixtureRequest,
    kamailio: Kamailio,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Setup]:
    transport, workers = request.param
    if not redis_answers(REDIS_URL):
        pytest.skip(f"no Redis at {REDIS_URL}")
    import redis

    prefix = f"sipscreen-interop-{uuid.uuid4().hex[:12]}:"
    r = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    r.sadd(prefix + "block:caller", BLOCKED)
    d = tmp_path_factory.mktemp(f"proxy-{transport}-{workers}")
    port = free_udp_port()
    mport = free_tcp_port()
    listen = [f"udp:127.0.0.1:{port}", f"tcp:127.0.0.1:{port}"]
    tls: dict[str, str] = {}
    if transport == "tls":
        pytest.importorskip("cryptography", reason="TLS scenarios make their certificate with it")
        tls = make_certs(d)
        listen.append(f"tls:127.0.0.1:{free_tcp_port()}")
    cfg = write_config(
        d / "sipscreen.toml",
        proxy={
            "listen": listen,
            "softswitch": f"udp:127.0.0.1:{kamailio.port}",
            "workers": workers,
            "log_level": "INFO",
            **tls,
        },
        redis={"url": REDIS_URL, "key_prefix": prefix, "embedded": False},
        metrics={"listen": f"127.0.0.1:{mport}"},
    )
    proxy = ProxyProcess(cfg, port, mport, [], d)
    try:
        proxy.start()
        yield Setup(transport, workers, proxy, kamailio, tls)
    finally:
        proxy.stop()
        delete_prefix(REDIS_URL, prefix)
        r.close()
    assert "Traceback" not in proxy.stderr(), proxy.stderr()[-4000:]


def run_ua(s: Setup, scenario: str, caller: str = CALLER, target: str = CALLEE, **kw: Any) -> Any:
    args = {
        "kamailio": s.kamailio.port,
        "proxy": s.tls_port if s.transport == "tls" else s.proxy.port,
        **s.tls,
        "transport": s.transport,
        "scenario": scenario,
        "caller": caller,
        "target": target,
        "callee": CALLEE,
        **kw,
    }
    proc = subprocess.run(
        [sys.executable, str(HERE / "ua.py"), json.dumps(args)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + proc.stderr.decode(errors="replace")[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["registered"], res
    return res


def _no_drops(s: Setup) -> None:
    for reason in ("tcp_no_connection", "tcp_connect_failed"):
        assert s.proxy.metric("sipscreen_dropped_total", reason=reason) == 0, reason


def _answered(s: Setup, res: Any, hangs_up: str) -> tuple[Any, Any, list[str]]:
    caller = res["caller"]
    assert caller["final"] == 200, res
    assert len(res["callee"]) == 1, res
    callee = res["callee"][0]
    assert callee["call_id"] == caller["call_id"]
    assert caller["disconnected"] and callee["disconnected"], res
    # the side that hangs up is DISCONNECTED at once; the other one answered the BYE
    bye_to = callee if hangs_up == "caller" else caller
    assert "uas BYE 200" in bye_to["tsx"], res
    seen = s.kamailio.methods(caller["call_id"])
    assert seen.count("INVITE") >= 1 and "ACK" in seen and "BYE" in seen, seen
    return caller, callee, seen


def test_caller_hangs_up(setup: Setup) -> None:
    res = run_ua(setup, "caller_bye")
    _answered(setup, res, "caller")
    _no_drops(setup)


def test_callee_hangs_up(setup: Setup) -> None:
    """Issue 14 item 1: the callee's BYE reaches a TCP caller at its Contact."""
    res = run_ua(setup, "callee_bye")
    _answered(setup, res, "callee")
    _no_drops(setup)


def test_reinvite_both_ways(setup: Setup) -> None:
    res = run_ua(setup, "reinvite")
    caller, callee, seen = _answered(setup, res, "caller")
    assert res["notes"] == ["caller reinvite ok", "callee reinvite ok"], res
    assert "uas INVITE 200" in callee["tsx"] and "uas INVITE 200" in caller["tsx"], res
    assert seen.count("INVITE") == 3, seen
    _no_drops(setup)


def test_cancel_before_answer(setup: Setup) -> None:
    res = run_ua(setup, "cancel")
    caller = res["caller"]
    assert caller["final"] == 487, res
    assert len(res["callee"]) == 1 and res["callee"][0]["disconnected"], res
    assert res["callee"][0]["last"][0] == 487, res
    seen = setup.kamailio.methods(caller["call_id"])
    assert "INVITE" in seen and "CANCEL" in seen and "BYE" not in seen, seen


def test_prack(setup: Setup) -> None:
    res = run_ua(setup, "caller_bye", prack=True)
    caller, callee, seen = _answered(setup, res, "caller")
    assert "EARLY" in caller["states"], res
    # the PRACK (RFC 3262) went through sipscreen and Kamailio, and its 200 came back
    assert "PRACK" in seen, seen
    replies = [ln for ln in setup.kamailio.lines(caller["call_id"]) if "KREPLY" in ln]
    assert any("KREPLY 200 PRACK" in ln for ln in replies), replies
    _no_drops(setup)


def test_blocked_caller_never_reaches_kamailio(setup: Setup) -> None:
    res = run_ua(setup, "blocked", caller=BLOCKED)
    caller = res["caller"]
    assert caller["final"] in (603, 607, 608), res
    assert res["callee"] == [], res
    assert caller["call_id"] and setup.kamailio.lines(caller["call_id"]) == []


def test_emergency_call_through_blocklist(setup: Setup) -> None:
    """911 from a blocked caller is relayed (47 CFR 64.1200(k)): the PSAP stand-in answers."""
    res = run_ua(setup, "emergency", caller=BLOCKED, target="911")
    caller, _callee, _seen = _answered(setup, res, "caller")
    lines = setup.kamailio.lines(caller["call_id"])
    assert any("KSEEN INVITE ruri=sip:911@" in ln for ln in lines), lines


def test_route_set_each_caller_follows(setup: Setup) -> None:
    """The entry facing the caller names its transport: sips: for a TLS caller (RFC
    3261 §16.6 step 4, RFC 5630 §4.3; never transport=tls, deprecated by §26.2.2),
    transport=tcp for a TCP one, plain sip: over UDP, where a UDP or TCP caller never
    sees a sips: entry. pjsua2 follows it: its re-INVITE's Route starts with that
    entry, and its ACKs, re-INVITE and BYE reach Kamailio through sipscreen, which
    removed both its entries (RFC 3261 §16.4; RFC 5658 double Record-Route)."""
    res = run_ua(setup, "reinvite")
    caller, _callee, seen = _answered(setup, res, "caller")
    assert res["notes"] == ["caller reinvite ok", "callee reinvite ok"], res
    rr = caller["record_route"]
    port = setup.tls_port if setup.transport == "tls" else setup.proxy.port
    facing = {
        "tls": f"<sips:127.0.0.1:{port};lr>",
        "tcp": f"<sip:127.0.0.1:{port};transport=tcp;lr>",
        "udp": f"<sip:127.0.0.1:{port};lr>",
    }[setup.transport]
    # the 200's Record-Route: Kamailio's, then ours (facing Kamailio, then the caller)
    assert unstamped(rr[-1]) == facing, rr
    assert all("transport=tls" not in e for e in rr), rr
    if setup.transport != "tls":
        assert all(not e.startswith("<sips:") for e in rr), rr
    # the caller's route set is the Record-Route reversed (RFC 3261 §12.1.2)
    sent = [route for method, route in caller["routes"] if method == "INVITE" and route]
    assert sent and sent[0] == rr[::-1], (caller["routes"], rr)
    assert seen.count("ACK") == 3 and seen.count("BYE") == 1, seen
    lines = setup.kamailio.lines(caller["call_id"])
    assert not any("KNOROUTE" in ln for ln in lines), lines
    # what reached Kamailio in the dialog names Kamailio alone: sipscreen removed
    # both its entries (the callee's requests go to sipscreen after Kamailio)
    caller_side = [ln for ln in lines if re.search(r"KSEEN (ACK|BYE|INVITE) ", ln)][1:]
    assert caller_side, lines
    for ln in caller_side:
        rt = ln.split(" rt=", 1)[1]
        assert "sips:" not in rt and "transport=tls" not in rt, ln
        assert rt.startswith(f"<sip:127.0.0.1:{setup.kamailio.port};"), ln
    _no_drops(setup)
