#!/usr/bin/env python3
"""From a redis-cli write to the first INVITE decided by it, end to end.

How this works: a real proxy (``python -m proxy run``) listens on a free
127.0.0.1 port in front of a stand-in softswitch (a UDP socket here that
only records what reaches it), on a scratch key prefix of the local Redis.
This script plays a trunk: it sends an INVITE from one caller every
``--interval`` ms with a new Call-ID each time, and sees each one either
rejected (a 6xx comes back to it) or forwarded (it reaches the softswitch
socket). Each round it writes ``SADD <prefix>block:caller <caller>`` from a
separate plain Redis connection (what an operator's redis-cli does) and
measures the time from that write to the sending of the first INVITE that
came back rejected; then ``SREM`` and the time to the first INVITE
forwarded again. The INVITE interval bounds the resolution (the figure is
an upper bound by at most one interval). Medians and p99 over ``--rounds``.

Everything binds to 127.0.0.1 and the run is bounded by --rounds and
--timeout. The scratch keys are deleted at the end.

    python3 benchmarks/bench_edit_to_invite.py --rounds 200
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
CALLER = "+13105551234"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def invite(n: int, uac_port: int, proxy_port: int) -> tuple[bytes, bytes]:
    call_id = f"edit-{n}-{uuid.uuid4().hex[:8]}@127.0.0.1".encode()
    msg = (
        f"INVITE sip:+12135550199@127.0.0.1:{proxy_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bK-e{n}\r\n"
        f"From: <sip:{CALLER}@127.0.0.1:{uac_port}>;tag=t{n}\r\n"
        f"To: <sip:+12135550199@127.0.0.1:{proxy_port}>\r\n"
        f"Call-ID: {call_id.decode()}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{CALLER}@127.0.0.1:{uac_port}>\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    return call_id, msg


def call_id_of(data: bytes) -> bytes | None:
    for line in data.split(b"\r\n"):
        low = line[:8].lower()
        if low.startswith(b"call-id:") or low.startswith(b"i:"):
            return line.split(b":", 1)[1].strip()
    return None


class Trunk:
    """Sends INVITEs at a fixed interval; classifies each by what happened."""

    def __init__(self, proxy_port: int, softswitch: socket.socket, interval: float) -> None:
        self.proxy_port = proxy_port
        self.ss = softswitch
        self.uac = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.uac.bind(("127.0.0.1", 0))
        self.port = self.uac.getsockname()[1]
        self.interval = interval
        self.n = 0
        self.sent: dict[bytes, float] = {}
        self.outcome: dict[bytes, str] = {}
        self.next_send = time.perf_counter()

    def pump(self, until: float) -> None:
        """Send on schedule and read replies until the perf_counter `until`."""
        while True:
            now = time.perf_counter()
            if now >= until:
                return
            if now >= self.next_send:
                self.n += 1
                cid, msg = invite(self.n, self.port, self.proxy_port)
                self.sent[cid] = time.perf_counter()
                self.uac.sendto(msg, ("127.0.0.1", self.proxy_port))
                self.next_send += self.interval
            wait = max(0.0, min(self.next_send, until) - time.perf_counter())
            ready, _, _ = select.select([self.uac, self.ss], [], [], wait)
            for s in ready:
                data = s.recv(65535)
                cid = call_id_of(data)
                if cid is None or cid not in self.sent:
                    continue
                if s is self.ss and data.startswith(b"INVITE"):
                    self.outcome.setdefault(cid, "forwarded")
                elif s is self.uac and data[8:9] in (b"6", b"4", b"5"):
                    self.outcome.setdefault(cid, "rejected")

    def first_after(self, t_write: float, want: str, timeout: float) -> float | None:
        """Seconds from t_write to the send of the first INVITE with `want`."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.pump(time.perf_counter() + self.interval)
            sent = self.sent
            hits = [sent[c] for c, o in self.outcome.items() if o == want and sent[c] >= t_write]
            if hits:
                return min(hits) - t_write
        return None


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--interval", type=float, default=1.0, help="ms between INVITEs")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    ap.add_argument("--timeout", type=float, default=2.0, help="per edit, seconds")
    a = ap.parse_args()

    prefix = f"sipscreen-bench-edit-{uuid.uuid4().hex[:8]}:"
    r = redis.Redis.from_url(a.redis)
    proxy_port, ss_port = free_port(), free_port()
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", ss_port))
    tmp = Path(tempfile.mkdtemp(prefix="sipscreen-bench-edit-"))
    cfg = tmp / "c.toml"
    cfg.write_text(
        "[proxy]\n"
        f'listen = ["udp:127.0.0.1:{proxy_port}"]\n'
        f'softswitch = "udp:127.0.0.1:{ss_port}"\n'
        f'loop = "{a.loop}"\nlog_level = "WARNING"\n'
        "[redis]\n"
        f'url = "{a.redis}"\nkey_prefix = "{prefix}"\nembedded = false\n'
        '[metrics]\nlisten = "off"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "proxy.err", "wb"),  # noqa: SIM115
    )
    block, unblock = [], []
    try:
        trunk = Trunk(proxy_port, ss, a.interval / 1000)
        # Wait until the proxy forwards our INVITEs (snapshot loaded).
        if trunk.first_after(time.perf_counter(), "forwarded", 30.0) is None:
            print("proxy never forwarded a call; see", tmp / "proxy.err")
            return 1
        key = prefix + "block:caller"
        for _ in range(a.rounds):
            t = time.perf_counter()
            r.sadd(key, CALLER)
            d = trunk.first_after(t, "rejected", a.timeout)
            if d is not None:
                block.append(d)
            t = time.perf_counter()
            r.srem(key, CALLER)
            d = trunk.first_after(t, "forwarded", a.timeout)
            if d is not None:
                unblock.append(d)
        missed = 2 * a.rounds - len(block) - len(unblock)
        print(
            f"redis-cli write -> first INVITE decided by it ({a.rounds} rounds, "
            f"one INVITE every {a.interval:g} ms, loop {a.loop}, {trunk.n} INVITEs)"
        )
        for name, xs in (("SADD block:caller", block), ("SREM block:caller", unblock)):
            if xs:
                print(
                    f"  {name:<18} p50 {statistics.median(xs) * 1e3:7.2f} ms   "
                    f"p99 {pct(xs, 0.99) * 1e3:7.2f} ms   max {max(xs) * 1e3:7.2f} ms"
                )
        print(f"  edits not seen within {a.timeout:g} s: {missed}")
        return 0 if missed == 0 else 1
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k in r.scan_iter(match=prefix + "*"):
            r.delete(k)
        ss.close()


if __name__ == "__main__":
    sys.exit(main())
