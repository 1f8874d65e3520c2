"""`sipscreen run` on a first try: a busy address ends with a message naming
it (no traceback, exit 1); the embedded redis-server keeps its data in
--data-dir with the append-only file on, and says so in the banner; the
sample data goes only into a Redis with no key under the prefix, and every
change made to a Redis (the sample data, CONFIG SET notify-keyspace-events)
is printed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import ROOT, free_tcp_port, free_udp_port

from proxy.config import load_config
from proxy.server.bootstrap import seed_sample_data


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=str(ROOT),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("what", ["udp", "tcp", "metrics"])
def test_busy_address_is_named(what: str, redis_url: str, key_prefix: str) -> None:
    port = free_udp_port()
    mport = free_tcp_port()
    listen = ["--listen", f"udp:127.0.0.1:{port}"]
    if what == "tcp":
        tport = free_tcp_port()
        listen += ["--listen", f"tcp:127.0.0.1:{tport}"]
    kind = socket.SOCK_DGRAM if what == "udp" else socket.SOCK_STREAM
    busy_port = {"udp": port, "tcp": tport if what == "tcp" else 0, "metrics": mport}[what]
    with socket.socket(socket.AF_INET, kind) as holder:
        holder.bind(("127.0.0.1", busy_port))
        if kind == socket.SOCK_STREAM:
            holder.listen(1)
        res = _run(
            "run",
            *listen,
            "--metrics",
            f"127.0.0.1:{mport}",
            "--redis",
            redis_url,
            "--key-prefix",
            key_prefix,
            "--no-embedded-redis",
        )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    where = {
        "udp": f"udp:127.0.0.1:{port}",
        "tcp": f"tcp:127.0.0.1:{busy_port}",
        "metrics": f"metrics http://127.0.0.1:{mport}/metrics",
    }[what]
    assert f"sipscreen: cannot listen on {where}: Address already in use" in res.stderr
    assert "listening on" not in res.stdout


def test_sample_data_only_into_an_empty_prefix(
    redis_url: str, key_prefix: str, redis_client: Any
) -> None:
    # An operator's Redis: some data under the prefix, none of the sample's
    # keys. Nothing may be added to it.
    redis_client.hset(key_prefix + "provider:acme", mapping={"rmd_status": "listed"})
    cfg = load_config(None, {"redis_url": redis_url, "key_prefix": key_prefix})
    assert seed_sample_data(cfg) == 0
    assert redis_client.keys(key_prefix + "*") == [key_prefix + "provider:acme"]


class _Proxy:
    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", *args],
            cwd=str(ROOT),
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        return out, err


@pytest.fixture
def run_proxy() -> Iterator[Any]:
    started: list[_Proxy] = []

    def factory(args: list[str]) -> _Proxy:
        p = _Proxy(args)
        started.append(p)
        return p

    yield factory
    for p in started:
        p.stop()


def _wait_banner(p: _Proxy, timeout: float = 20.0) -> str:
    """Lines of stdout up to the 'block a number' banner line."""
    assert p.proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "block a number with" in line:
            return "".join(lines)
    out, err = p.stop()
    raise AssertionError("no banner:\n" + "".join(lines) + out + err)


def test_embedded_redis_keeps_its_data(tmp_path: Path, run_proxy: Any) -> None:
    import redis

    data = tmp_path / "state"
    rport = free_tcp_port()  # nothing answers there: the embedded one starts
    args = [
        "--redis",
        f"redis://127.0.0.1:{rport}/0",
        "--data-dir",
        str(data),
        "--listen",
        f"udp:127.0.0.1:{free_udp_port()}",
        "--metrics",
        "off",
    ]
    p = run_proxy(args)
    banner = _wait_banner(p)
    assert f"data kept in {data} (append-only file on" in banner
    assert "seeded 5 sample-data commands" in banner
    r = redis.Redis.from_url(f"redis://127.0.0.1:{rport}/0", decode_responses=True)
    try:
        assert r.config_get("appendonly")["appendonly"] == "yes"
        r.sadd("sipscreen:block:caller", "+12127364899")
        r.srem("sipscreen:block:caller", "+12127364801")  # a sample entry removed
    finally:
        r.close()
    out, err = p.stop()
    assert p.proc.returncode == 0, err
    assert "CONFIG SET notify-keyspace-events" in err
    assert (data / "appendonly.aof").exists() or (data / "appendonlydir").exists()

    # Restarted: the data is back, the sample is not seeded again.
    p = run_proxy(args)
    banner = _wait_banner(p)
    assert "seeded" not in banner
    r = redis.Redis.from_url(f"redis://127.0.0.1:{rport}/0", decode_responses=True)
    try:
        members = r.smembers("sipscreen:block:caller")
    finally:
        r.close()
    assert "+12127364899" in members and "+12127364801" not in members
    p.stop()
