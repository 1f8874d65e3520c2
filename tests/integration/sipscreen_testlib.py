"""Test helpers shared by tests/conftest.py and the integration and
conformance tests: free ports, a private redis-server, the proxy as a
subprocess, SIPp runs and their statistics.

Everything binds to 127.0.0.1; every external process is bounded by a
timeout. Imported as `sipscreen_testlib` (tests/conftest.py puts this
folder on sys.path).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AnyStr, TypeVar

import pytest

from proxy.config import load_config
from proxy.server.bootstrap import redis_answers
from proxy.store.snapshot_store import SnapshotStore

ROOT = Path(__file__).resolve().parent.parent.parent
SIPP_DIR = ROOT / "tests" / "sipp"
REDIS_URL = os.environ.get("SIPSCREEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
LOOPS = ("uvloop", "asyncio")


# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------


_STAMP = re.compile(r";sdt=[0-9a-f]{16}>")


def unstamped(entry: AnyStr) -> AnyStr:
    """A Record-Route / Route entry of ours without its dialog stamp (``;sdt=`` and 16
    hex digits, proxy/sip/core.py STAMP_PARAM), for comparing entries across dialogs."""
    if isinstance(entry, bytes):
        return _STAMP.sub(">", entry.decode("latin-1")).encode("latin-1")
    return _STAMP.sub(">", entry)


def free_udp_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (for udp+tcp listeners)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise RuntimeError("no free port")


def free_tcp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------


def delete_prefix(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


@dataclass
class RedisServer:
    """A private redis-server on a free port (tests that stop/restart Redis)."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server not installed")
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                # Data survives a stop/start (the Redis-restart test).
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if redis_answers(self.url):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# ---------------------------------------------------------------------------
# The proxy as a subprocess
# ---------------------------------------------------------------------------


def options_ping(host: str, port: int, timeout: float = 0.5) -> bytes | None:
    """Send one OPTIONS to the proxy itself; return the response or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout)
    lport = s.getsockname()[1]
    branch = "z9hG4bK" + uuid.uuid4().hex
    msg = (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:ping@127.0.0.1:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()
    try:
        s.sendto(msg, (host, port))
        data, _ = s.recvfrom(65535)
        return data
    except OSError:
        return None
    finally:
        s.close()


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM a child still running, wait `timeout` s, then SIGKILL it (and reap)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass
class ProxyProcess:
    config_path: Path
    port: int
    metrics_port: int
    args: list[str]
    log_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)
    host = "127.0.0.1"  # where start() waits for the OPTIONS answer (not a field)

    def __post_init__(self) -> None:
        self.stdout_path = self.log_dir / f"proxy-{self.port}.out"
        self.stderr_path = self.log_dir / f"proxy-{self.port}.err"

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "proxy",
                    "run",
                    "--config",
                    str(self.config_path),
                    *self.args,
                ],
                cwd=str(ROOT),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited early:\n{self.stderr()}\n{self.stdout()}")
            resp = options_ping(self.host, self.port)
            if resp is not None and resp.startswith(b"SIP/2.0 200"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"proxy did not answer OPTIONS:\n{self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def metrics_text(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        stop_process(self.proc, timeout)
        rc = self.proc.returncode
        self.proc = None
        return int(rc)


def write_config(path: Path, **sections: dict[str, Any] | list[dict[str, Any]]) -> Path:
    """Write a TOML config from {section: {key: value}} / {section: [tables]}."""

    def val(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []
    for name, body in sections.items():
        if isinstance(body, list):
            for table in body:
                lines.append(f"[[{name}]]")
                lines += [f"{k} = {val(v)}" for k, v in table.items()]
                lines.append("")
        else:
            plain = {k: v for k, v in body.items() if not isinstance(v, dict)}
            subs = {k: v for k, v in body.items() if isinstance(v, dict)}
            if plain:
                lines.append(f"[{name}]")
                lines += [f"{k} = {val(v)}" for k, v in plain.items()]
                lines.append("")
            for sub, sbody in subs.items():
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {val(v)}" for k, v in sbody.items()]
                lines.append("")
    path.write_text("\n".join(lines))
    return path


ProxyFactory = Callable[..., ProxyProcess]


# ---------------------------------------------------------------------------
# SIPp
# ---------------------------------------------------------------------------


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    stats: dict[str, str]
    stdout: str
    stderr: str
    messages: str


def _sipp() -> str:
    binary = shutil.which("sipp")
    if binary is None:
        pytest.skip("sipp not installed")
    return binary


def write_callers(path: Path, rows: list[tuple[str, str]], sequential: bool = True) -> Path:
    """SIPp injection file: field0 caller, field1 callee."""
    lines = ["SEQUENTIAL" if sequential else "RANDOM"]
    lines += [f"{a};{b};" for a, b in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _read_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


def run_sipp(
    scenario: str,
    target: str,
    workdir: Path,
    *,
    calls: int,
    rate: float = 20,
    inf: Path | None = None,
    transport: str = "u1",
    timeout: float = 60.0,
    extra: list[str] | None = None,
) -> SippResult:
    """Run a SIPp UAC to completion (-m calls at -r rate), bounded in time."""
    assert calls <= 200 and rate <= 50, "keep loads small (2-core CI)"
    binary = _sipp()
    port = free_udp_port()
    tag = uuid.uuid4().hex[:8]
    stf = workdir / f"sipp-{tag}.csv"
    msgf = workdir / f"sipp-{tag}.msg"
    sf = scenario if "/" in scenario or scenario in ("uac", "uas") else str(SIPP_DIR / scenario)
    cmd = [binary]
    cmd += ["-sn", sf] if sf in ("uac", "uas") else ["-sf", sf]
    cmd += [
        target,
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        transport,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-recv_timeout",
        "8000",
        "-trace_stat",
        "-stf",
        str(stf),
        "-fd",
        "1",
        "-trace_msg",
        "-message_file",
        str(msgf),
        "-pause_msg_ign",
    ]
    if inf is not None:
        cmd += ["-inf", str(inf)]
    cmd += extra or []
    proc = subprocess.run(
        cmd, cwd=str(workdir), capture_output=True, timeout=timeout + 30, check=False
    )
    stats = _read_stats(stf)

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    return SippResult(
        proc.returncode,
        num("SuccessfulCall(C)"),
        num("FailedCall(C)"),
        stats,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
        msgf.read_text(errors="replace") if msgf.exists() else "",
    )


def count_received(log: str, start: str) -> int:
    """Messages in a SIPp -trace_msg log received with a start line
    beginning with `start` ("INVITE", "SIP/2.0 603")."""
    count = 0
    for chunk in log.split("message received")[1:]:
        body = chunk.split("\n", 1)[1] if "\n" in chunk else ""
        first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
        if first.startswith(start + " ") or first == start:
            count += 1
    return count


@dataclass
class SippServer:
    """A SIPp UAS (stand-in softswitch) running in the background."""

    proc: subprocess.Popen[bytes]
    port: int
    msg_path: Path

    def messages(self) -> str:
        return self.msg_path.read_text(errors="replace") if self.msg_path.exists() else ""

    def received(self, method: str) -> int:
        """How many `method` requests the UAS received (from its message log)."""
        return count_received(self.messages(), method)

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def udp_recorder(port: int | None = None) -> Iterator[tuple[socket.socket, int]]:
    """A bare UDP socket standing in for the softswitch (records datagrams)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port or 0))
    try:
        yield s, s.getsockname()[1]
    finally:
        s.close()


def recv_datagram(sock: socket.socket, timeout: float) -> bytes | None:
    """One datagram from `sock` within `timeout` seconds, or None."""
    sock.settimeout(timeout)
    try:
        return sock.recvfrom(70000)[0]
    except TimeoutError:
        return None


# ---------------------------------------------------------------------------
# Polling and one-call helpers
# ---------------------------------------------------------------------------


T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float = 10.0, interval: float = 0.1) -> T:
    """Poll `cond` every `interval` s until it returns something true or
    `timeout` seconds pass; returns its last answer (one last look after the
    deadline). The one polling helper of the suite, with `until` (asyncio):
    wait for what a test needs, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    return cond()


def stays(cond: Callable[[], object], duration: float, interval: float = 0.05) -> bool:
    """True when `cond` holds at every look for `duration` seconds (an
    absence: a packet that must not arrive, a count that must not move)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not cond():
            return False
        time.sleep(interval)
    return bool(cond())


async def until(cond: Callable[[], object], timeout: float = 5.0) -> float:
    """asyncio: wait until `cond()` holds, looking every 0.5 ms (so a quick
    change is timed closely); returns the seconds it took, fails after
    `timeout` (a bound for a busy machine: it returns as soon as true)."""
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout:.1f} s")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - t0


def udp_invite(lport: int, proxy_port: int, caller: str, n: int = 0, label: str = "t") -> bytes:
    """A new INVITE from 127.0.0.1:``lport`` to the proxy (its own branch and
    Call-ID ``<label>-<n>-<random>``)."""
    return (
        f"INVITE sip:+13125557000@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@127.0.0.1:{lport}>;tag={label}{n}\r\n"
        f"To: <sip:+13125557000@127.0.0.1:{proxy_port}>\r\n"
        f"Call-ID: {label}-{n}-{uuid.uuid4().hex}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def run_cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m proxy --config CONFIG ARGV...`` from the repository, text out."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", "--config", str(config), *argv],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def one_call(
    scenario: str, proxy: ProxyProcess, workdir: Path, caller: str, callee: str
) -> SippResult:
    """One SIPp call from `caller` to `callee` through the proxy (scenario in tests/sipp)."""
    inf = write_callers(workdir / f"one-{time.monotonic_ns()}.csv", [(caller, callee)])
    return run_sipp(scenario, f"127.0.0.1:{proxy.port}", workdir, calls=1, rate=1, inf=inf)


async def loaded_store(cfg: Any, redis_url: str) -> SnapshotStore:
    """A SnapshotStore for the config `cfg` with what Redis holds loaded once
    (no MONITOR: the Screener tests drive it directly)."""
    store = SnapshotStore(
        redis_url,
        cfg.key_prefix,
        emergency=cfg.emergency_numbers,
        emergency_callers=cfg.emergency_callers,
    )
    await store.load_full()
    return store


def screener_config(tmp_path: Path, prefix: str, body: str = "") -> Any:
    """A loaded config for the in-process Screener tests, written to
    tmp_path/c.toml: key prefix `prefix`, sources in 10.1.0.0/16 from provider
    "acme", then the TOML `body` (more trunks, sections)."""
    p = tmp_path / "c.toml"
    p.write_text(
        f'[redis]\nkey_prefix = "{prefix}"\n'
        '[[trunk]]\ncidr = "10.1.0.0/16"\nprovider = "acme"\n' + body
    )
    return load_config(str(p), {})


def _bcd(digits: str, noa: int, plan: int = 0x10) -> bytes:
    """A number parameter's value (ITU-T Q.763 §3.10, ANSI T1.113): odd/even and
    nature of address, numbering plan and presentation, BCD digits low nibble
    first, a zero filler for an odd count."""
    nib = [int(d) for d in digits]
    odd = len(nib) % 2
    if odd:
        nib.append(0)
    pairs = bytes(nib[i] | (nib[i + 1] << 4) for i in range(0, len(nib), 2))
    return bytes([(0x80 if odd else 0) | noa, plan]) + pairs


def isup_iam(
    calling: str | None,
    noa: int = 3,
    ansi: bool = True,
    generic: tuple[tuple[int, str, int], ...] = (),
    called: str = "3125557000",
) -> bytes:
    """An encapsulated ISUP IAM (RFC 3204: from the message type code), ANSI
    T1.113 (four fixed octets, User Service Information and Called Party
    Number pointers) or ITU-T Q.763 (five fixed octets, the Called Party
    Number pointer), with a Calling Party Number (0x0A) of ``calling`` and
    nature of address ``noa`` (3 national, 4 international), and Generic
    Numbers (0xC0) of (qualifier, digits, noa)."""
    cdpn = _bcd(called, 3)
    opt = b""
    if calling is not None:
        v = _bcd(calling, noa)
        opt += bytes([0x0A, len(v)]) + v
    for qualifier, digits, gnoa in generic:
        v = bytes([qualifier]) + _bcd(digits, gnoa)
        opt += bytes([0xC0, len(v)]) + v
    opt += b"\x00"
    if ansi:
        usi = b"\x80\x90\xa2"
        fixed = bytes([0x01, 0x00, 0x60, 0x01, 0x0A])  # type, NCI, FCI, CPC
        # pointers at 5 (USI), 6 (CdPN), 7 (optional part); each counts from itself
        var = bytes([len(usi)]) + usi + bytes([len(cdpn)]) + cdpn
        return fixed + bytes([3, 2 + 1 + len(usi), 1 + len(var)]) + var + opt
    fixed = bytes([0x01, 0x00, 0x60, 0x01, 0x0A, 0x00])  # type, NCI, FCI, CPC, TMR
    var = bytes([len(cdpn)]) + cdpn
    return fixed + bytes([2, 1 + len(var)]) + var + opt


def sip_t_body(
    sdp: bytes, iam: bytes, version: str = "ansi00", boundary: str = "unique-b1"
) -> tuple[bytes, bytes]:
    """(Content-Type value, body) of a SIP-T INVITE (RFC 3372 §5, RFC 3204):
    multipart/mixed with the SDP and the IAM."""
    body = (
        f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n".encode()
        + sdp
        + f"\r\n--{boundary}\r\nContent-Type: application/ISUP; version={version}\r\n"
        "Content-Disposition: signal; handling=required\r\n\r\n".encode()
        + iam
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/mixed; boundary={boundary}".encode(), body
