"""SIPp / proxy process helpers shared by run_compare.py and bench_calls.py.

How this works: one benchmark step is SIPp UAC -> system under test -> SIPp
UAS on 127.0.0.1. The UAS (benchmarks/sipp/uas_rr.xml) starts first, then the
proxy (started fresh for every step so no transaction left over from the
previous step weighs on the next), which must answer a SIP probe before the
step starts: an OPTIONS with Max-Forwards 0 (any answer means it listens,
RFC 3261 §16.3 item 2) and an INVITE from a blocked caller, whose answer
must be 603 (the same final answer from both proxies). Then the UAC
(benchmarks/sipp/uac_screen.xml) sends rate x duration calls bounded by
``-m`` and a wall-clock timeout. CPU of the proxy is utime+stime from
/proc/<pid>/stat summed over the process and all its descendants, read
before and after. SIPp's ``-trace_stat`` CSV gives successful/failed calls
and retransmissions, ``-trace_rtt`` the INVITE -> final response times
(whole milliseconds: SIPp's clock ticks in ms, so ``0`` means under 1 ms).

Every process binds 127.0.0.1, runs in its own session and is killed (its
whole process group) when the step ends or the interpreter exits.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import importlib.util
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIPP_DIR = HERE / "sipp"
KAMAILIO_CFG = HERE / "kamailio" / "kamailio.cfg"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------
# process bookkeeping: everything we start is killed on exit


_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_group(p: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


def kill_all() -> None:
    """Kill the process group of every process this module started."""
    for p in list(_LIVE.values()):
        _kill_group(p)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        _LIVE.pop(p.pid, None)


atexit.register(kill_all)


def _on_signal(signum: int, _frame: object) -> None:
    kill_all()
    sys.exit(128 + signum)


def install_signal_handlers() -> None:
    """Kill our children on SIGTERM/SIGINT too (scripts call this, not tests)."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def spawn(
    cmd: Sequence[str], log: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start cmd in its own session (own process group), output to log."""
    with open(log, "wb") as out:
        p = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    _LIVE[p.pid] = p
    return p


def wait_reap(p: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to timeout for p to exit; reap it with wait4 to keep its rusage."""
    deadline = time.monotonic() + timeout
    while p.returncode is None:
        try:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        except ChildProcessError:
            p.poll()
            break
        if pid == p.pid:
            _RUSAGE[p.pid] = ru.ru_utime + ru.ru_stime
            p.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop(p: subprocess.Popen[bytes] | None, grace: float = 2.0) -> None:
    """SIGTERM the process group, SIGKILL it after grace seconds."""
    if p is None:
        return
    if not wait_reap(p, 0):
        _kill_group(p, signal.SIGTERM)
        wait_reap(p, grace)
    _kill_group(p, signal.SIGKILL)  # leftover children of a dead leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=5)
    _LIVE.pop(p.pid, None)


def tree_cpu_seconds(root: int) -> float:
    """utime+stime (s) of root and every live descendant, from /proc/<pid>/stat."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            raw = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        # fields after the ")" that closes comm: state ppid ... utime(14) stime(15)
        rest = raw[raw.rindex(")") + 2 :].split()
        parent[int(d)] = int(rest[1])
        ticks[int(d)] = int(rest[11]) + int(rest[12])
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, pp in parent.items():
        children.setdefault(pp, []).append(pid)
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """Non-idle CPU seconds of the whole machine since boot (/proc/stat)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v[:8]) - idle) / CLK_TCK


_RUSAGE: dict[int, float] = {}


def _children_cpu(p: subprocess.Popen[bytes]) -> float:
    """CPU seconds of a process we reaped with wait4 (see stop())."""
    return _RUSAGE.get(p.pid, 0.0)


def callgrind_instructions(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Instructions Valgrind's callgrind counts for one run of ``argv`` (the
    ``--callgrind`` modes of bench_parse.py and bench_redirect_core.py: a run
    with N operations and one with 2N, the difference per operation)."""
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1800, env=env)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise RuntimeError("no callgrind total in: " + out.stderr[-500:])
    return int(m.group(1))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Ports:
    proxy: int = 5070
    uas: int = 5080
    uac: int = 5090

    @classmethod
    def ephemeral(cls) -> Ports:
        return cls(free_udp_port(), free_udp_port(), free_udp_port())

    def check_free(self) -> None:
        busy = [p for p in (self.proxy, self.uas, self.uac) if not udp_port_free(p)]
        if busy:
            raise RuntimeError(f"UDP port(s) {busy} on {HOST} already in use")


# --------------------------------------------------------------------------
# dependencies and machine description


def which_kamailio() -> str | None:
    return shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else None
    )


def ladder_args(
    description: str, rates: str, rate_unit: str, systems: str
) -> argparse.ArgumentParser:
    """The options every side-by-side ladder (run_compare.py, run_redirect.py) takes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rates", default=rates, help=f"{rate_unit} steps")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per step")
    ap.add_argument("--workers", type=int, default=2, help="sipscreen workers = Kamailio children")
    ap.add_argument("--blocked", type=int, default=100_000, help="blocklist size")
    ap.add_argument("--blocked-pct", type=float, default=5.0, help="%% of calls from blocked")
    ap.add_argument("--systems", default=systems)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="Markdown report")
    ap.add_argument("--workdir", default=None, help="keep logs/data here (default: temp dir)")
    ap.add_argument("--redis-url", default=None, help="use this Redis (default: own server)")
    ap.add_argument(
        "--records-redis",
        choices=("shared", "own"),
        default="shared",
        help="sipscreen's decision records: on the blocklist's Redis (shared, the default "
        "config) or on a second Redis of their own ([records] redis_url)",
    )
    ap.add_argument("--ports", default="5070,5080,5090", help="proxy,uas,uac UDP ports or 'auto'")
    ap.add_argument("--max-failing", type=int, default=2, help="stop a ladder after N failing")
    add_install_flag(ap)
    ap.add_argument("--csv-lines", type=int, default=200_000, help="SIPp caller file lines")
    ap.add_argument("--seed", type=int, default=20240601)
    return ap


def ladder_ports(spec: str) -> Ports:
    """``--ports``: 'auto' (free ephemeral ports) or proxy,uas,uac; checked free."""
    ports = Ports.ephemeral() if spec == "auto" else Ports(*[int(p) for p in spec.split(",")])
    ports.check_free()
    return ports


def ladder_workdir(
    path: str | None, prefix: str
) -> tuple[Path, tempfile.TemporaryDirectory[str] | None]:
    """``--workdir`` (kept), else a temporary directory (the caller cleans it up)."""
    if path:
        work = Path(path)
        work.mkdir(parents=True, exist_ok=True)
        return work, None
    tmp = tempfile.TemporaryDirectory(prefix=prefix)
    return Path(tmp.name), tmp


def add_install_flag(ap: argparse.ArgumentParser) -> None:
    """``--install``: the opt-in to apt-get the missing SIPp/Kamailio packages."""
    ap.add_argument(
        "--install",
        action="store_true",
        help="apt-get install what is missing (sipp, kamailio; root on Debian/Ubuntu); "
        "default: say what is missing and exit 2",
    )
    ap.add_argument(
        "--no-install", dest="install", action="store_false", help="the default: never apt-get"
    )


def ensure_deps(install: bool = False) -> list[str]:
    """Check sipp and kamailio; apt-get install them if missing and asked to
    (``install``, the ``--install`` flag).

    Returns the human-readable problems left (empty when all is there).
    """
    missing = {"sipp": "sip-tester", "kamailio": "kamailio"}
    have = {"sipp": shutil.which("sipp"), "kamailio": which_kamailio()}
    need = [pkg for name, pkg in missing.items() if not have[name]]
    if need and install:
        apt = shutil.which("apt-get")
        if apt and os.geteuid() == 0:
            print(f"installing {' '.join(need)} with apt-get", flush=True)
            subprocess.run([apt, "update"], check=False)
            subprocess.run(
                [apt, "install", "-y", *need],
                check=False,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
        have = {"sipp": shutil.which("sipp"), "kamailio": which_kamailio()}
    hint = "apt-get unavailable or not root here" if install else "or rerun with --install as root"
    return [
        f"{name} not found (Debian/Ubuntu: apt-get install -y {pkg}; {hint})"
        for name, pkg in missing.items()
        if not have[name]
    ]


def require_sipp(problems: list[str]) -> None:
    """Exit 2 with what is missing when SIPp (the load generator) is not there."""
    if any(p.startswith("sipp") for p in problems):
        print("cannot benchmark: " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(2)


def kamailio_tls(install: bool = False) -> str | None:
    """None when Kamailio's tls module is there (apt-get installs
    kamailio-tls-modules if missing and asked to: ``--install``), else why not."""
    import glob

    pattern = "/usr/lib/*/kamailio/modules/tls.so"
    if not glob.glob(pattern) and install and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "kamailio-tls-modules"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if glob.glob(pattern):
        return None
    return "Kamailio's tls module not found (apt-get install -y kamailio-tls-modules)"


def sipscreen_available() -> str | None:
    """None when `python -m proxy run` can be started, else why not."""
    sys.path.insert(0, str(REPO))
    try:
        if importlib.util.find_spec("proxy.__main__") is None:
            return "proxy/__main__.py does not exist yet (python -m proxy run)"
    finally:
        sys.path.remove(str(REPO))
    r = subprocess.run(
        [sys.executable, "-m", "proxy", "run", "--help"],
        cwd=REPO,
        capture_output=True,
        timeout=30,
    )
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).decode(errors="replace").strip().splitlines()[-1:]
        return f"`python -m proxy run --help` failed: {' '.join(tail)}"
    return None


def _first_line(cmd: Sequence[str]) -> str:
    try:
        r = subprocess.run(list(cmd), capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    for line in (r.stdout + r.stderr).decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()
    return "n/a"


def machine_info() -> dict[str, str]:
    cpu = "n/a"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "n/a"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    rmem = "n/a"
    with contextlib.suppress(OSError):
        rmem = Path("/proc/sys/net/core/rmem_max").read_text().strip()
    try:
        import uvloop  # noqa: PLC0415

        uv = str(getattr(uvloop, "__version__", "?"))
    except ImportError:
        uv = "not installed"
    kam = which_kamailio()
    return {
        "kamailio": _first_line([kam, "-v"]).removeprefix("version: ") if kam else "absent",
        "sipp": _first_line(["sipp", "-v"]) if shutil.which("sipp") else "absent",
        "python": platform.python_version(),
        "uvloop": uv,
        "kernel": platform.release(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "net.core.rmem_max": rmem,
    }


# --------------------------------------------------------------------------
# SIP probes (readiness and "is the blocklist loaded, answered 603?")


def _sip_exchange(port: int, msg: bytes, timeout: float) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(timeout)
        s.sendto(msg.replace(b"@LPORT@", str(s.getsockname()[1]).encode()), (HOST, port))
        try:
            while True:
                data, _ = s.recvfrom(65535)
                status = data.split(b" ", 2)[1] if data.startswith(b"SIP/2.0 ") else b""
                if not status.startswith(b"1"):  # skip provisionals
                    return data
        except (TimeoutError, ConnectionRefusedError):
            return None


def wait_ready(port: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    """Poll with OPTIONS Max-Forwards 0 until any final answer (or timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        tag = uuid.uuid4().hex[:12]
        msg = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:@LPORT@;branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{HOST}:@LPORT@>;tag={tag}\r\n"
            f"To: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: ready-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        if _sip_exchange(port, msg, 0.3) is not None:
            return True
    return False


def probe_blocked(port: int, caller: str) -> int:
    """INVITE from a blocked caller; returns the final status (0 = none)."""
    tag = uuid.uuid4().hex[:12]
    ruri = f"sip:+12025550199@{HOST}:{port}"
    common = (
        f"Via: SIP/2.0/UDP {HOST}:@LPORT@;branch=z9hG4bK{tag}\r\n"
        f"From: <sip:{caller}@{HOST}:@LPORT@>;tag={tag}\r\n"
        f"Call-ID: probe-{tag}\r\nMax-Forwards: 70\r\n"
    )
    invite = (
        f"INVITE {ruri} SIP/2.0\r\n{common}To: <{ruri}>\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:{caller}@{HOST}:@LPORT@>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    status = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        lport = str(s.getsockname()[1]).encode()
        s.settimeout(2.0)
        s.sendto(invite.replace(b"@LPORT@", lport), (HOST, port))
        with contextlib.suppress(TimeoutError, ConnectionRefusedError, ValueError, IndexError):
            while status == 0:
                data, _ = s.recvfrom(65535)
                code = int(data.split(b" ", 2)[1])
                if code < 200:
                    continue
                status = code
                to = next(ln for ln in data.split(b"\r\n") if ln.lower().startswith(b"to:"))
                # RFC 3261 §17.1.1.3: ACK for a non-2xx final answer, same branch,
                # To with the tag of the answer
                ack = (
                    f"ACK {ruri} SIP/2.0\r\n{common}".encode()
                    + to
                    + b"\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                )
                s.sendto(ack.replace(b"@LPORT@", lport), (HOST, port))
    return status


# --------------------------------------------------------------------------
# systems under test


@dataclass
class Env:
    """Where one benchmark run keeps its data, logs and generated configs."""

    work: Path  # temp dir: data/, logs, rendered configs
    data: Path  # gen_data output
    ports: Ports
    workers: int
    redis_url: str
    key_prefix: str
    blocked_sample: str  # one blocked caller, for the probe
    blocked_size: int
    # run_compare --transport tls: the callers' side over TLS (tls_uac.py, as
    # the Debian SIPp has no TLS), on tls_port with make_tls's certificate
    transport: str = "udp"
    tls_port: int = 0
    tls: dict[str, str] | None = None
    # the SIPp UAC scenario in benchmarks/sipp/ (run_compare --signed: uac_signed.xml)
    uac_xml: str = "uac_screen.xml"
    # --records-redis own: sipscreen's [records] redis_url (None: the blocklist's Redis)
    records_url: str | None = None


class System:
    name = "?"
    needs_proxy = True

    def start(self, env: Env, tag: str) -> subprocess.Popen[bytes] | None:
        raise NotImplementedError

    def worker_split(self) -> str:
        """How the system's workers shared the step's datagrams ("" if unknown)."""
        return ""

    def target_port(self, env: Env) -> int:
        return env.ports.proxy if self.needs_proxy else env.ports.uas


class Direct(System):
    """SIPp UAC straight to the SIPp UAS: the ceiling of the load generator."""

    name = "direct"
    needs_proxy = False

    def start(self, env: Env, tag: str) -> subprocess.Popen[bytes] | None:
        return None


def _ht_slots(env: Env) -> int:
    """Kamailio htable slots for the blocklist: a power of two, 2^20 to 2^31."""
    return 1 << max(20, min(31, env.blocked_size.bit_length()))


class Kamailio(System):
    """Kamailio 5.6, tm + Record-Route + htable blocklist (kamailio/kamailio.cfg)."""

    name = "kamailio"

    def render(self, env: Env) -> Path:
        run = env.work / "kamailio-run"
        run.mkdir(exist_ok=True)
        text = KAMAILIO_CFG.read_text()
        for k, v in {
            "@DBTEXT_DIR@": str(env.data / "dbtext"),
            "@RUN_DIR@": str(run),
            "@PROXY_PORT@": str(env.ports.proxy),
            "@UAS_PORT@": str(env.ports.uas),
            # db_text refuses a query past max_result_rows (default 100,000)
            "@MAX_ROWS@": str(max(100_000, env.blocked_size + 1)),
            # htable slots 2^size (2..31): at least one per key, so that the
            # hash chains stay short at 10 M as they do at 100 k (2^20 gave
            # chains of ~10 keys at 10 M, and Kamailio then carried 1,716 of
            # 4,000 calls/s)
            "@HT_SIZE@": str(_ht_slots(env).bit_length() - 1),
        }.items():
            text = text.replace(k, v)
        if env.transport == "tls":
            text = _kamailio_tls(text, env)
        cfg = env.work / "kamailio.cfg"
        cfg.write_text(text)
        return cfg

    def start(self, env: Env, tag: str) -> subprocess.Popen[bytes] | None:
        kam = which_kamailio()
        assert kam is not None
        cfg = self.render(env)
        # shared memory: finished transactions linger 5 s (anchor: 512 MiB ran
        # out at 4,000 calls/s), plus the htable (400 B a key ran out of shm
        # at 10 M keys, so 800 B) and its slots (64 B each, generous). The Debian
        # build's default allocator is q_malloc (debug, first-fit: 63% of a
        # child's CPU in qm_malloc at 1,000 calls/s); production setups use
        # TLSF or f_malloc, so the fair peer runs with -x tlsf -X tlsf.
        shm = 4096 + env.blocked_size * 800 // (1 << 20) + _ht_slots(env) * 64 // (1 << 20)
        # private memory: db_text builds the whole blocklist query result in
        # the loading process's pkg memory (~100 B a row) before htable takes it
        pkg = 16 + env.blocked_size * 128 // (1 << 20)
        return spawn(
            [kam, "-f", str(cfg), "-DD", "-E", "-m", str(shm), "-M", str(pkg),
             "-x", "tlsf", "-X", "tlsf",
             "-A", f"CHILDREN={env.workers}"],
            env.work / f"kamailio-{tag}.log",
        )  # fmt: skip


def make_tls(d: Path) -> dict[str, str]:
    """A throw-away CA and an ECDSA P-256 certificate for 127.0.0.1 (PEM files in
    ``d``): the one certificate both proxies serve in a ``--transport tls`` run."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipscreen bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    out = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return {k: str(v) for k, v in out.items()}


def _kamailio_tls(text: str, env: Env) -> str:
    """The benchmark config with a TLS listener (tls module, make_tls's certificate,
    TLS 1.2+; the client fixes the cipher suite) and CHILDREN TCP/TLS workers."""
    assert env.tls is not None
    tls_cfg = env.work / "kamailio-tls.cfg"
    tls_cfg.write_text(
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        f"require_certificate = no\nprivate_key = {env.tls['key']}\n"
        f"certificate = {env.tls['cert']}\n\n"
        "[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n"
        "require_certificate = no\n"
    )
    text = text.replace(
        "disable_tcp=yes",
        f"disable_tcp=no\nenable_tls=yes\ntcp_children=CHILDREN\n"
        f"listen=tls:{HOST}:{env.tls_port}\n"
        f'alias="{HOST}:{env.tls_port}"\ntcp_connection_lifetime=3605',
        1,
    )
    return text.replace(
        'loadmodule "tm.so"',
        f'loadmodule "tls.so"\nmodparam("tls", "config", "{tls_cfg}")\nloadmodule "tm.so"',
        1,
    )


SIPSCREEN_TOML = """\
# sipscreen benchmark configuration (written by benchmarks/harness.py).
# Same job as benchmarks/kamailio/kamailio.cfg: caller blocklist from Redis
# (loaded into memory at start), Record-Route, every block answered with a
# plain 603 Decline, no per-call logging (log level WARNING), no trunk map
# (no provider, so the RMD gate and provider rules have nothing to match).
[proxy]
listen = ["udp:{host}:{proxy}"]
softswitch = "udp:{host}:{uas}"
workers = {workers}
record_route = true
loop = "uvloop"
log_level = "WARNING"
no_snapshot_policy = "closed"
sample_data = ""

[redis]
url = "{redis_url}"
key_prefix = "{prefix}"
embedded = false

[metrics]
listen = "{host}:{metrics}"

[answer.deterministic]
kind = "603"

[answer.analytics]
kind = "603"
"""


class Sipscreen(System):
    """`python -m proxy run` with the benchmark TOML above."""

    name = "sipscreen"
    metrics_port = 0

    def worker_split(self) -> str:
        """Each worker's share of the datagrams it received, from the proxy's
        own `sipscreen_worker_datagrams_total{worker}` (SIPp sends every call
        from one address and port: the spreading is what is measured)."""
        import urllib.request

        try:
            url = f"http://{HOST}:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=3) as r:
                text = r.read().decode()
        except OSError:
            return ""
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("sipscreen_worker_datagrams_total{"):
                worker = line.split('worker="', 1)[1].split('"', 1)[0]
                counts[worker] = counts.get(worker, 0.0) + float(line.rsplit(" ", 1)[1])
        total = sum(counts.values())
        if len(counts) < 2 or not total:
            return ""
        return "worker split " + "/".join(
            f"{100 * counts[w] / total:.0f}%" for w in sorted(counts, key=int)
        )

    def render(self, env: Env) -> Path:
        cfg = env.work / "sipscreen.toml"
        self.metrics_port = free_tcp_port()
        text = SIPSCREEN_TOML.format(
            host=HOST,
            proxy=env.ports.proxy,
            uas=env.ports.uas,
            redis_url=env.redis_url,
            prefix=env.key_prefix,
            workers=env.workers,
            metrics=self.metrics_port,
        )
        if env.records_url:
            text += f'\n[records]\nredis_url = "{env.records_url}"\n'
        if env.transport == "tls":
            assert env.tls is not None
            text = text.replace(
                f'listen = ["udp:{HOST}:{env.ports.proxy}"]',
                f'listen = ["udp:{HOST}:{env.ports.proxy}", "tls:{HOST}:{env.tls_port}"]\n'
                f'tls_cert = "{env.tls["cert"]}"\ntls_key = "{env.tls["key"]}"',
            )
        cfg.write_text(text)
        return cfg

    def start(self, env: Env, tag: str) -> subprocess.Popen[bytes] | None:
        cfg = self.render(env)
        cmd = [
            sys.executable, "-m", "proxy", "run", "--config", str(cfg),
            "--listen", f"udp:{HOST}:{env.ports.proxy}",
            *(["--listen", f"tls:{HOST}:{env.tls_port}"] if env.transport == "tls" else []),
            "--softswitch", f"udp:{HOST}:{env.ports.uas}",
            "--redis", env.redis_url, "--key-prefix", env.key_prefix,
            "--workers", str(env.workers), "--no-embedded-redis",
        ]  # fmt: skip
        return spawn(cmd, env.work / f"sipscreen-{tag}.log", cwd=REPO)


SYSTEMS: dict[str, type[System]] = {"sipscreen": Sipscreen, "kamailio": Kamailio, "direct": Direct}


# --------------------------------------------------------------------------
# Redis for sipscreen: our own throw-away server unless a URL is given


def _throwaway_redis(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the run's own on a free loopback port (nothing saved)."""
    port = free_tcp_port()
    proc = spawn(
        ["redis-server", "--bind", HOST, "--port", str(port), "--save", "",
         "--appendonly", "no"],
        log,
    )  # fmt: skip
    url = f"redis://{HOST}:{port}/0"
    for _ in range(100):
        r = subprocess.run(["redis-cli", "-u", url, "ping"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            break
        time.sleep(0.05)
    return proc, url


@contextlib.contextmanager
def records_redis(work: Path, where: str) -> Iterator[str | None]:
    """``--records-redis``: "shared" yields None (the records go to the
    blocklist's Redis, sipscreen's default); "own" starts a second throw-away
    server for them (``[records] redis_url``, out of the MONITOR feed)."""
    if where != "own":
        yield None
        return
    proc, url = _throwaway_redis(work / "redis-records.log")
    try:
        yield url
    finally:
        stop(proc)


@contextlib.contextmanager
def ladder_env(
    a: argparse.Namespace, work: Path, data: Path, ports: Ports, prefix: str, sample: str
) -> Iterator[Env]:
    """A ladder's Env (ladder_args' options): the blocklist's Redis, and the
    records' own one with ``--records-redis own``."""
    with (
        redis_with_blocklist(work, data, a.redis_url, prefix) as url,
        records_redis(work, a.records_redis) as records_url,
    ):
        yield Env(
            work, data, ports, a.workers, url, prefix, sample, a.blocked, records_url=records_url
        )


def records_line(where: str) -> str:
    """The report line saying where sipscreen's decision records went."""
    if where == "own":
        return (
            "- sipscreen's decision records: on a second Redis of their own "
            "(`--records-redis own`, `[records] redis_url`), out of the workers' MONITOR feed"
        )
    return "- sipscreen's decision records: on the blocklist's Redis (the default config)"


@contextlib.contextmanager
def redis_with_blocklist(work: Path, data: Path, url: str | None, prefix: str) -> Iterator[str]:
    """Yield a Redis URL whose ``<prefix>block:caller`` holds the blocklist."""
    proc = None
    if url is None:
        proc, url = _throwaway_redis(work / "redis.log")
    sys.path.insert(0, str(HERE))
    try:
        import gen_data  # noqa: PLC0415
    finally:
        sys.path.remove(str(HERE))
    resp = work / "redis_blocklist.resp"
    with open(data / "blocklist.txt") as bl:
        gen_data.write_resp(str(resp), (ln.strip() for ln in bl), prefix)
    with open(resp, "rb") as f:
        subprocess.run(["redis-cli", "-u", url, "--pipe"], stdin=f, capture_output=True, check=True)
    try:
        yield url
    finally:
        subprocess.run(
            ["redis-cli", "-u", url, "UNLINK", f"{prefix}block:caller"], capture_output=True
        )
        stop(proc)


# --------------------------------------------------------------------------
# one step: results


@dataclass
class StepResult:
    system: str
    rate: int
    duration: float
    attempted: int = 0  # -m
    successful: int = 0
    failed: int = 0
    retrans: int = 0  # UAC + UAS retransmissions
    achieved: float = 0.0  # successful calls / elapsed s
    p50_ms: float | None = None
    p99_ms: float | None = None
    under_1ms_pct: float | None = None
    cpu_s: float | None = None  # proxy processes, all workers and children
    probe: int | None = None  # final status answered to the blocked probe
    declined: int = 0  # 603 answers received by the UAC (blocked callers)
    answered_200: int = 0  # 200 answers to INVITEs (calls put through)
    machine_cpu_s: float | None = None  # all non-idle CPU of the machine in the step
    sipp_cpu_s: float | None = None  # SIPp UAC + UAS
    note: str = ""

    @property
    def incomplete(self) -> int:
        return max(self.attempted - self.successful - self.failed, 0)

    @property
    def clean(self) -> bool:
        """All -m calls succeeded, none failed, and the rate was carried (>= 90%)."""
        return (
            self.failed == 0
            and self.successful == self.attempted > 0
            and self.achieved >= 0.9 * self.rate
        )

    @property
    def other_cpu_s(self) -> float | None:
        """Machine CPU not spent by the proxy or SIPp: other work on the box."""
        if self.machine_cpu_s is None:
            return None
        return max(self.machine_cpu_s - (self.cpu_s or 0.0) - (self.sipp_cpu_s or 0.0), 0.0)

    @property
    def cpu_us_per_call(self) -> float | None:
        if self.cpu_s is None or not self.successful:
            return None
        return self.cpu_s * 1e6 / self.successful


def _hms_us(v: str) -> float:
    """SIPp duration 'hh:mm:ss' or 'hh:mm:ss:usec' -> seconds."""
    parts = [int(x) for x in v.split(":")]
    s = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return s + (parts[3] / 1e6 if len(parts) > 3 else 0.0)


def read_stat(path: Path) -> dict[str, str]:
    """Last row of a SIPp -trace_stat CSV as {column: value}."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


_ROW = re.compile(rb"^\s+(\d{3}) <-+\s+(?:[BE]-RTD1\s+)?(\d+)", re.M)


def read_answers(log: Path) -> dict[int, int]:
    """Responses received per status, from the last SIPp scenario screen in log.

    The first row of a status in the screen is the one of the INVITE
    transaction (a later 200 row is the BYE's)."""
    try:
        text = log.read_bytes()
    except OSError:
        return {}
    start = text.rfind(b"Scenario Screen")
    out: dict[int, int] = {}
    for m in _ROW.finditer(text, max(start, 0)):
        out.setdefault(int(m.group(1)), int(m.group(2)))
    return out


def read_rtt(path: Path) -> list[float]:
    """RTD 1 samples (ms) of a SIPp -trace_rtt file."""
    out: list[float] = []
    with contextlib.suppress(OSError), open(path) as fh:
        for line in fh:
            f = line.strip().split(";")
            if len(f) >= 3 and f[2] == "1":
                with contextlib.suppress(ValueError):
                    out.append(float(f[1]))
    return out


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    k = max(0, min(len(sorted_vals) - 1, math.ceil(q / 100.0 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def run_step(
    system: System, env: Env, rate: int, duration: float, tag: str, ready_timeout: float = 60.0
) -> StepResult:
    """Start UAS, the system, check it, load it with the UAC, collect results."""
    # a big blocklist takes a while to load (Kamailio's db_text: minutes at 10 M)
    ready_timeout = max(ready_timeout, 60.0 + env.blocked_size / 10_000)
    res = StepResult(system.name, rate, duration, attempted=max(1, int(rate * duration)))
    step = env.work / tag
    shutil.rmtree(step, ignore_errors=True)
    step.mkdir(parents=True)
    uas = proxy = None
    try:
        uas = spawn(
            ["sipp", "-sf", str(SIPP_DIR / "uas_rr.xml"), "-i", HOST, "-p", str(env.ports.uas),
             "-nostdin", "-trace_stat", "-stf", str(step / "uas_stat.csv"), "-fd", "1",
             "-buff_size", "4194304"],
            step / "uas.log", cwd=step,
        )  # fmt: skip
        proxy = system.start(env, tag)
        if proxy is not None:
            if not wait_ready(env.ports.proxy, ready_timeout, proxy):
                res.note = f"{system.name} did not answer an OPTIONS probe"
                if proxy.poll() is not None:
                    res.note += f" (exited {proxy.returncode}, see {system.name}-{tag}.log)"
                return res
            # listening is not enough: the blocklist must be loaded (a proxy
            # without its snapshot may answer 503 or forward); wait for a 603
            deadline = time.monotonic() + ready_timeout
            while True:
                res.probe = probe_blocked(env.ports.proxy, env.blocked_sample)
                if res.probe == 603 or time.monotonic() > deadline or proxy.poll() is not None:
                    break
                time.sleep(0.2)
            if res.probe != 603:
                res.note = f"blocked probe answered {res.probe or 'nothing'} (want 603)"
        time.sleep(0.3)
        cpu0 = tree_cpu_seconds(proxy.pid) if proxy is not None else None
        busy0 = machine_busy_seconds()
        wall = duration * 2 + 40  # calls can take 32 s (Timer B) past the last INVITE
        uac_cmd = [
            "sipp", "-sf", str(SIPP_DIR / env.uac_xml), "-inf", str(env.data / "callers.csv"),
            f"{HOST}:{system.target_port(env)}", "-i", HOST, "-p", str(env.ports.uac),
            "-r", str(rate), "-rp", "1000", "-m", str(res.attempted),
            "-l", str(max(1000, rate * 40)), "-pause_msg_ign", "-nostdin",
            "-recv_timeout", "10000", "-timeout", f"{int(wall)}s",
            "-buff_size", "4194304",
            "-trace_stat", "-stf", str(step / "uac_stat.csv"), "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1",
        ]  # fmt: skip
        if env.transport == "tls":
            _tls_uac(env, system, res, step, rate, wall, cpu0, busy0, proxy, uas)
            return res
        uac = spawn(uac_cmd, step / "uac.log", cwd=step)
        if not wait_reap(uac, wall + 15):
            res.note = (res.note + "; " if res.note else "") + "UAC killed at wall-clock bound"
        stop(uac)
        if proxy is not None and cpu0 is not None:
            res.cpu_s = tree_cpu_seconds(proxy.pid) - cpu0
        res.machine_cpu_s = machine_busy_seconds() - busy0
        res.sipp_cpu_s = _children_cpu(uac) + tree_cpu_seconds(uas.pid)
        split = system.worker_split()
        if split:
            res.note = (res.note + "; " if res.note else "") + split
        time.sleep(1.2)  # UAS writes its stat line every second
        answers = read_answers(step / "uac.log")
        res.declined, res.answered_200 = answers.get(603, 0), answers.get(200, 0)
        st, ust = read_stat(step / "uac_stat.csv"), read_stat(step / "uas_stat.csv")
        if st:
            res.successful = int(st.get("SuccessfulCall(C)", 0))
            res.failed = int(st.get("FailedCall(C)", 0))
            res.retrans = int(st.get("Retransmissions(C)", 0)) + int(
                ust.get("Retransmissions(C)", 0) or 0
            )
            elapsed = _hms_us(st.get("ElapsedTime(C)", "0:0:0"))
            res.achieved = res.successful / elapsed if elapsed > 0 else 0.0
            total = int(st.get("ResponseTimeRepartition1_<1", 0) or 0)
            allrt = sum(
                int(v or 0) for k, v in st.items() if k.startswith("ResponseTimeRepartition1_")
            )
            if allrt:
                res.under_1ms_pct = 100.0 * total / allrt
        else:
            res.note = (res.note + "; " if res.note else "") + "no SIPp statistics"
        rtt_files = step.glob(f"{Path(env.uac_xml).stem}_*_rtt.csv")
        rtts = sorted(v for f in rtt_files for v in read_rtt(f))
        if rtts:
            res.p50_ms, res.p99_ms = percentile(rtts, 50), percentile(rtts, 99)
        return res
    finally:
        stop(uas)
        stop(proxy, grace=5.0)


def _tls_uac(
    env: Env,
    system: System,
    res: StepResult,
    step: Path,
    rate: int,
    wall: float,
    cpu0: float | None,
    busy0: float,
    proxy: subprocess.Popen[bytes] | None,
    uas: subprocess.Popen[bytes],
) -> None:
    """The load of one ``--transport tls`` step: tls_uac.py (full calls over TLS,
    the same generator for every system) instead of the SIPp UAC."""
    import json

    assert env.tls is not None
    out = step / "uac.json"
    uac = spawn(
        [sys.executable, str(HERE / "tls_uac.py"), "--port", str(env.tls_port),
         "--ca", env.tls["ca"], "--callers", str(env.data / "callers.csv"),
         "--rate", str(rate), "--calls", str(res.attempted), "--timeout", str(wall),
         "--out", str(out)],
        step / "uac.log", cwd=step,
    )  # fmt: skip
    if not wait_reap(uac, wall + 15):
        res.note = (res.note + "; " if res.note else "") + "UAC killed at wall-clock bound"
    stop(uac)
    if proxy is not None and cpu0 is not None:
        res.cpu_s = tree_cpu_seconds(proxy.pid) - cpu0
    res.machine_cpu_s = machine_busy_seconds() - busy0
    res.sipp_cpu_s = _children_cpu(uac) + tree_cpu_seconds(uas.pid)
    try:
        r = json.loads(out.read_text())
    except (OSError, ValueError):
        res.note = (res.note + "; " if res.note else "") + "no TLS UAC summary"
        return
    res.successful, res.failed = int(r["successful"]), int(r["failed"])
    res.declined, res.answered_200 = int(r["declined"]), int(r["answered_200"])
    res.achieved = res.successful / r["elapsed"] if r["elapsed"] > 0 else 0.0
    rtd = r["rtd_ms"]
    if rtd:
        res.p50_ms = round(percentile(rtd, 50), 2)
        res.p99_ms = round(percentile(rtd, 99), 2)
        res.under_1ms_pct = 100.0 * sum(1 for v in rtd if v < 1.0) / len(rtd)
    if r.get("cipher"):
        env_note = f"{r['cipher'][1]} {r['cipher'][0]}"
        res.note = (res.note + "; " if res.note else "") + env_note
    # the generator's own account: was it the bottleneck, and how did calls fail
    gen = (
        f"generator {r.get('procs', 1)} proc x {r.get('connections', 0)} conns, "
        f"offered {float(r.get('offered_cps', 0.0)):.0f}/s, "
        f"lag max {r.get('send_lag_max_ms', 0)} ms, CPU {float(r.get('cpu_s', 0.0)):.2f} s"
    )
    if r.get("fail_status"):
        gen += ", failed by status " + ", ".join(f"{k}: {v}" for k, v in r["fail_status"].items())
    res.note = (res.note + "; " if res.note else "") + gen


# --------------------------------------------------------------------------
# reporting


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


TABLE_HEAD = (
    "| system | rate (calls/s) | achieved calls/s | successful | 603 | failed | not completed "
    "| retrans | INVITE→final p50 / p99 (ms) | <1 ms | proxy CPU s | CPU µs/call "
    "| SIPp CPU s | other CPU s | clean |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
    "| ---: | ---: | --- |\n"
)


def table(results: Sequence[StepResult]) -> str:
    rows = []
    for r in results:
        lat = "n/a" if r.p50_ms is None else f"{r.p50_ms:g} / {_fmt(r.p99_ms, 'g')}"
        rows.append(
            f"| {r.system} | {r.rate} | {r.achieved:.0f} | {r.successful} | {r.declined} "
            f"| {r.failed} "
            f"| {r.incomplete} | {r.retrans} | {lat} | {_fmt(r.under_1ms_pct, '.1f')}% "
            f"| {_fmt(r.cpu_s, '.2f')} | {_fmt(r.cpu_us_per_call, '.0f')} "
            f"| {_fmt(r.sipp_cpu_s, '.2f')} | {_fmt(r.other_cpu_s, '.2f')} "
            f"| {'yes' if r.clean else 'no'}{' — ' + r.note if r.note else ''} |"
        )
    return TABLE_HEAD + "\n".join(rows) + "\n"


def max_clean(results: Sequence[StepResult], system: str) -> int:
    """Highest rate step of system with every call completed and none failed."""
    return max((r.rate for r in results if r.system == system and r.clean), default=0)


def run_ladder(
    systems: Sequence[System],
    rates: Sequence[int],
    max_failing: int,
    step: Callable[[System, int], StepResult],
) -> list[StepResult]:
    """Every rate in turn, ``step(system, rate)`` for each system, their order
    rotated per rate so that no system always runs first; a system leaves the
    ladder after ``max_failing`` steps in a row that were not clean."""
    results: list[StepResult] = []
    failing = {s.name: 0 for s in systems}
    for i, rate in enumerate(rates):
        active = [s for s in systems if failing[s.name] < max_failing]
        if not active:
            break
        active = active[i % len(active) :] + active[: i % len(active)]
        for s in active:
            r = step(s, rate)
            results.append(r)
            failing[s.name] = 0 if r.clean else failing[s.name] + 1
    return results


def report_head(title: str, command: str, started: object, every: str) -> list[str]:
    """The first lines of a RESULTS.md section a ladder writes: its title, the
    command and time that wrote it (``started``: a datetime), then a blank line."""
    return [
        title,
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC "
        f"(this section is overwritten by every {every}).",
        "",
    ]


def machine_lines() -> list[str]:
    """``machine_info()`` as Markdown list items."""
    return [f"- {k}: {v}" for k, v in machine_info().items()]
