"""Shared fixtures: real Redis with a per-test key prefix, the proxy as a
subprocess, a SIPp callee, a private redis-server, and the event-loop
parameter (uvloop and the stdlib loop).

Helpers live in tests/integration/sipscreen_testlib.py. Every external
process is stopped at teardown; a proxy that printed a traceback fails the
test that started it.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

from sipscreen_testlib import (  # noqa: E402
    LOOPS,
    REDIS_URL,
    SIPP_DIR,
    ProxyFactory,
    ProxyProcess,
    RedisServer,
    SippServer,
    _sipp,
    delete_prefix,
    free_tcp_port,
    free_udp_port,
    redis_answers,
    write_config,
)


@pytest.fixture
def redis_url() -> str:
    if not redis_answers(REDIS_URL):
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix on the shared Redis; its keys are deleted after."""
    prefix = f"sipscreen-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    import redis

    r = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    yield r
    r.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(free_tcp_port(), tmp_path)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[ProxyFactory]:
    """Factory: start_proxy(softswitch_port, redis_url, prefix, loop=..., ...).

    Extra TOML sections go in `sections`, extra CLI flags in `args`. At
    teardown the proxy is stopped and the test fails if it printed a
    traceback.
    """
    started: list[ProxyProcess] = []

    def factory(
        softswitch_port: int,
        redis_url: str,
        prefix: str,
        *,
        loop: str = "uvloop",
        workers: int = 1,
        tcp: bool = False,
        monitor: bool = False,
        sections: dict[str, Any] | None = None,
        args: list[str] | None = None,
        trunks: list[dict[str, str]] | None = None,
        start: bool = True,
    ) -> ProxyProcess:
        port = free_udp_port()
        mport = free_tcp_port()
        listen = [f"udp:127.0.0.1:{port}"] + ([f"tcp:127.0.0.1:{port}"] if tcp else [])
        proxy_sec: dict[str, Any] = {
            "listen": listen,
            "softswitch": f"udp:127.0.0.1:{softswitch_port}",
            "workers": workers,
            "monitor": monitor,
            "loop": loop,
            "log_level": "INFO",
        }
        doc: dict[str, Any] = {
            "proxy": proxy_sec,
            "redis": {"url": redis_url, "key_prefix": prefix, "embedded": False},
            "metrics": {"listen": f"127.0.0.1:{mport}"},
        }
        for name, body in (sections or {}).items():
            if isinstance(body, dict) and isinstance(doc.get(name), dict):
                doc[name] = {**doc[name], **body}
            else:
                doc[name] = body
        if trunks:
            doc["trunk"] = trunks
        cfg = write_config(tmp_path / f"sipscreen-{port}.toml", **doc)
        p = ProxyProcess(cfg, port, mport, list(args or []), tmp_path)
        started.append(p)
        if start:
            p.start()
        return p

    yield factory
    problems = []
    for p in started:
        p.stop()
        err = p.stderr()
        if "Traceback" in err:
            problems.append(f"proxy on {p.port} printed a traceback:\n{err[-4000:]}")
    if problems:
        pytest.fail("\n".join(problems))


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


@pytest.fixture
def sipp_uas(tmp_path: Path) -> Iterator[Callable[..., SippServer]]:
    """Factory: sipp_uas(scenario="uas_rr.xml", transport="u1") -> SippServer."""
    servers: list[SippServer] = []

    def factory(scenario: str = "uas_rr.xml", transport: str = "u1") -> SippServer:
        binary = _sipp()
        port = free_udp_port()
        msg = tmp_path / f"uas-{port}.msg"
        sf = str(SIPP_DIR / scenario)
        proc = subprocess.Popen(
            [
                binary,
                "-sf",
                sf,
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-t",
                transport,
                "-nostdin",
                "-trace_msg",
                "-message_file",
                str(msg),
                "-timeout",
                "300s",
            ],
            cwd=str(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        srv = SippServer(proc, port, msg)
        servers.append(srv)
        time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError("sipp UAS exited at start")
        return srv

    yield factory
    for s in servers:
        s.stop()
