"""`[records] redis_url`: the decision records on a Redis of their own.

Why: every worker follows the snapshot's edits through MONITOR, and Redis
echoes every command it runs to every MONITOR client: with the records on the
blocklist's server, each record (an XADD and its index writes, about seven
commands) was read back by every worker of every host, and cost that Redis
CPU per follower (benchmarks/RESULTS.md, ninth session). With their own
server they are written there, spooled and replayed there, and read from there
by `records export` and `report provider`; the blocklist's MONITOR feed sees none
of them.

Real processes: the proxy (2 workers), the shared Redis for the snapshot, a
private redis-server for the records, the CLI as a subprocess.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import redis
from sipscreen_testlib import (
    recv_datagram,
    run_cli,
    stays,
    udp_invite,
    udp_recorder,
    wait_for,
    write_config,
)

BLOCKED = "+12127364801"


class _Monitor:
    """MONITOR on a Redis in a thread: the lines that name ``needle``."""

    def __init__(self, url: str, needle: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=None)
        self.needle = needle
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    def _run(self) -> None:
        try:
            with self.client.monitor() as m:
                self.ready.set()
                for cmd in m.listen():
                    line = str(cmd.get("command", ""))
                    if self.needle in line:
                        self.lines.append(line)
        except (redis.ConnectionError, ValueError, OSError):
            pass  # closed at the end of the test

    def close(self) -> None:
        self.client.connection_pool.disconnect()


def test_records_go_to_their_own_redis_and_stay_out_of_the_monitor_feed(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    redis_client: Any,
    private_redis: Any,
    start_proxy: Any,
) -> None:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    redis_client.hset(key_prefix + "provider:acme", mapping={"name": "Acme"})
    rec = redis.Redis.from_url(private_redis.url, socket_timeout=5, decode_responses=True)
    mon = _Monitor(redis_url, key_prefix + "records")
    sections = {"records": {"redis_url": private_redis.url, "sample_allowed": 0.0}}
    trunks = [{"cidr": "127.0.0.0/8", "provider": "acme"}]
    try:
        with udp_recorder() as (ss, ss_port):
            proxy = start_proxy(
                ss_port, redis_url, key_prefix, workers=2, sections=sections, trunks=trunks
            )
            ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ua.bind(("127.0.0.1", 0))
            lport = ua.getsockname()[1]
            try:
                for n in range(4):
                    inv = udp_invite(lport, proxy.port, BLOCKED, n, "recredis")
                    ua.sendto(inv, ("127.0.0.1", proxy.port))
                    got = recv_datagram(ua, 5)
                    assert got is not None and got.startswith(b"SIP/2.0 603"), got
                # An edit on the blocklist's server still reaches the workers.
                redis_client.srem(key_prefix + "block:caller", BLOCKED)

                def forwarded() -> bool:
                    n = time.monotonic_ns()
                    inv = udp_invite(lport, proxy.port, BLOCKED, n, "recredis")
                    ua.sendto(inv, ("127.0.0.1", proxy.port))
                    got = recv_datagram(ss, 0.5)
                    return got is not None and f"recredis-{n}-".encode() in got

                wait_for(forwarded, timeout=10)
            finally:
                ua.close()
            stream = key_prefix + "records"

            def settled() -> int:
                # the four calls, plus any probe above that came before the SREM
                # did (also a blocked, recorded call); then no more arriving
                n = rec.xlen(stream)
                return n if n >= 4 and stays(lambda: rec.xlen(stream) == n, 0.5) else 0

            n_records = wait_for(settled, timeout=10)
            assert n_records >= 4
            rows = rec.xrange(stream)
            assert len(rows) == n_records
            seen = list(mon.lines)  # before this test's own reads below
            assert seen == []
            assert {f["caller"] for _id, f in rows} == {BLOCKED}
            assert {f["rule"] for _id, f in rows} == {"caller_block"}
            assert {f"recredis-{i}-" for i in range(4)} <= {
                f["call_id"][: f["call_id"].index("-", 9) + 1] for _id, f in rows
            }
            # their indexes are there too, and nothing of them on the snapshot's server
            assert rec.exists(f"{key_prefix}records:ix:caller:{BLOCKED}")
            assert redis_client.exists(key_prefix + "records") == 0
            assert not list(redis_client.scan_iter(match=key_prefix + "records*"))
            cfg = proxy.config_path
        # The CLI reads them where they are.
        out = run_cli(cfg, "records", "export", "--caller", BLOCKED, "--format", "json")
        assert out.returncode == 0, out.stderr
        assert len([json.loads(x) for x in out.stdout.splitlines()]) == n_records
        out = run_cli(cfg, "report", "provider", "acme", "--format", "json")
        assert out.returncode == 0, out.stderr
        assert "caller_block" in out.stdout
    finally:
        mon.close()
        rec.close()


def test_records_redis_url_is_checked(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "bad.toml", records={"redis_url": "http://127.0.0.1:6379"})
    out = run_cli(cfg, "records", "export")
    assert out.returncode == 2
    assert "records.redis_url: must start with redis://" in out.stderr
