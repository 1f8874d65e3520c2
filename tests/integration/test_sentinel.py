"""Redis that fails over: the proxy behind Redis Sentinel (issue 12).

A primary, a replica and three sentinels (quorum 2) on free loopback ports,
Debian's redis-server and redis-sentinel (or `redis-server --sentinel`); the
proxy runs against `redis+sentinel://.../mymaster`. SIGKILL the primary under
SIPp load: calls keep being screened from the snapshot, the sentinels promote
the replica, the proxy's feed reconnects to it (same `meta:generation`, so not
"data lost"), an edit made on the new primary reaches the proxy, and the
decision records of the calls made during the outage end up in the stream.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import count_received, free_tcp_port, run_sipp, wait_for, write_callers

from proxy.config import ConfigError, load_config
from proxy.redis_url import parse_sentinel_url, sync_client

CALLEE = "+13125557000"
MASTER = "mymaster"


def _redis_server() -> str:
    for b in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if b and Path(b).exists():
            return b
    pytest.skip("redis-server not installed")


def _sentinel_cmd(conf: Path) -> list[str]:
    if shutil.which("redis-sentinel"):
        return [str(shutil.which("redis-sentinel")), str(conf)]
    return [_redis_server(), str(conf), "--sentinel"]


def _ping(port: int) -> bool:
    import redis

    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(r.ping())
    except Exception:
        return False
    finally:
        r.close()


class Cluster:
    """Primary + replica + 3 sentinels, every one bound to 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.primary = free_tcp_port()
        self.replica = free_tcp_port()
        self.sentinels = [free_tcp_port() for _ in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}"

    def _server(self, name: str, port: int, *extra: str) -> None:
        d = self.dir / name
        d.mkdir()
        self.procs[name] = subprocess.Popen(
            [_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
            + ["--appendonly", "no", "--dir", str(d), "--logfile", str(d / "redis.log")]
            + list(extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self._server("primary", self.primary)
        self._server("replica", self.replica, "--replicaof", "127.0.0.1", str(self.primary))
        assert wait_for(lambda: _ping(self.primary) and _ping(self.replica))
        import redis

        rep = redis.Redis(host="127.0.0.1", port=self.replica, decode_responses=True)
        assert wait_for(lambda: rep.info("replication").get("master_link_status") == "up", 15)
        rep.close()
        for i, port in enumerate(self.sentinels):
            d = self.dir / f"sentinel{i}"
            d.mkdir()
            conf = d / "sentinel.conf"
            conf.write_text(
                f"bind 127.0.0.1\nport {port}\ndir {d}\nlogfile {d / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 3000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.procs[f"sentinel{i}"] = subprocess.Popen(
                _sentinel_cmd(conf),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        # Each sentinel knows the replica and the two other sentinels.
        for port in self.sentinels:
            s = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=1)
            ok = wait_for(
                lambda s=s, port=port: (
                    _ping(port)
                    and len(s.execute_command("SENTINEL", "REPLICAS", MASTER)) == 1
                    and len(s.execute_command("SENTINEL", "SENTINELS", MASTER)) == 2
                ),
                20,
            )
            s.close()
            if not ok:
                pytest.fail(f"sentinel on {port} did not see the replica and its peers")

    def kill_primary(self) -> None:
        p = self.procs["primary"]
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_sentinel_url_parse_and_config_errors(tmp_path: Path) -> None:
    s = parse_sentinel_url("redis+sentinel://:pw@127.0.0.1:26379,[::1]:26380/main/3")
    assert s.sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert (s.master, s.db, s.password) == ("main", 3, "pw")
    for bad, why in (
        ("redis+sentinel://127.0.0.1:26379", "no master name"),
        ("redis+sentinel://127.0.0.1:0/m", "port must be"),
        ("redis+sentinel://127.0.0.1:1/m/notadb", "/mastername/<db number>"),
        ("sentinel://127.0.0.1:1/m", "redis+sentinel://"),
    ):
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[redis]\nurl = "{bad}"\n')
        with pytest.raises(ConfigError, match=re.escape(why)) as ei:
            load_config(str(cfg))
        assert "redis.url" in str(ei.value)
    cfg = tmp_path / "k.toml"
    cfg.write_text(
        '[redis]\nsentinels = ["127.0.0.1:26379", "127.0.0.1:26380"]\nmaster_name = "m"\n'
    )
    assert load_config(str(cfg)).redis_url == "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/m"
    cfg.write_text('[redis]\nsentinels = ["127.0.0.1:26379"]\n')
    with pytest.raises(ConfigError, match="redis.master_name"):
        load_config(str(cfg))


def test_failover_under_load(
    tmp_path: Path, cluster: Cluster, start_proxy: Any, sipp_uas: Any
) -> None:
    prefix = "sipscreen-test-sentinel:"
    r = sync_client(cluster.url, decode_responses=True, socket_timeout=2)
    blocked_before = "+12127369001"
    blocked_after = "+12127369002"
    blocked_cli = "+12127369003"
    r.sadd(prefix + "block:caller", blocked_before)
    r.close()
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port,
        cluster.url,
        prefix,
        loop="asyncio",
        sections={"records": {"sample_allowed": 1.0}},
    )
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 1, 15)
    # Warm up: the stamp is written and replicated before the kill.
    b0 = run_sipp(
        "uac_block_603.xml",
        f"127.0.0.1:{proxy.port}",
        tmp_path,
        calls=1,
        rate=1,
        inf=write_callers(tmp_path / "b0.csv", [(blocked_before, CALLEE)]),
    )
    assert b0.successful == 1, b0.stderr[-2000:]

    # Calls during the outage: distinct callers, so their records can be counted.
    n = 40
    outage_callers = [f"+1212736{5000 + i:04d}" for i in range(n)]
    inf = write_callers(tmp_path / "out.csv", [(c, CALLEE) for c in outage_callers])
    results: dict[str, Any] = {}

    def traffic() -> None:
        results["a"] = run_sipp(
            "uac_screen.xml", f"127.0.0.1:{proxy.port}", tmp_path, calls=n, rate=10, inf=inf
        )

    t_kill = time.monotonic()
    cluster.kill_primary()
    t = threading.Thread(target=traffic)
    t.start()
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 0, 10)
    assert wait_for(lambda: proxy.metric("sipscreen_redis_up") == 1, 40), proxy.stderr()[-3000:]
    t_up = time.monotonic() - t_kill
    t.join(120)
    a = results["a"]
    assert a.failed == 0 and a.successful == n, a.stderr[-2000:]
    assert uas.received("INVITE") == n

    # The store logged the failover as it saw it; it is on the replica now.
    m = None

    def logged() -> bool:
        nonlocal m
        m = re.search(
            r"redis outage over: first full load from primary 127\.0\.0\.1:(\d+) \(Sentinel\)"
            r" ([0-9.]+) s",
            proxy.stderr(),
        )
        return m is not None

    assert wait_for(logged, 10), proxy.stderr()[-3000:]
    assert m is not None and int(m.group(1)) == cluster.replica
    failover_s = float(m.group(2))
    assert "REDIS DATA LOST" not in proxy.stderr()
    print(f"\nfailover seen by the proxy: {failover_s:.2f} s (redis_up again {t_up:.2f} s)")

    # An edit on the new primary reaches the proxy: a plain SADD, and the CLI
    # writer through the same Sentinel URL.
    r = sync_client(cluster.url, decode_responses=True, socket_timeout=2)
    r.sadd(prefix + "block:caller", blocked_after)
    cli = subprocess.run(
        [sys.executable, "-m", "proxy", "--redis", cluster.url, "--key-prefix", prefix]
        + ["block", "caller", blocked_cli, "--why", "failover test"],
        cwd=str(Path(__file__).resolve().parents[2]),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert r.sismember(prefix + "block:caller", blocked_cli)
    time.sleep(0.5)
    b = run_sipp(
        "uac_block_603.xml",
        f"127.0.0.1:{proxy.port}",
        tmp_path,
        calls=3,
        rate=3,
        inf=write_callers(
            tmp_path / "b.csv",
            [(blocked_after, CALLEE), (blocked_before, CALLEE), (blocked_cli, CALLEE)],
        ),
    )
    assert b.failed == 0 and b.successful == 3, b.stderr[-2000:]
    assert count_received(b.messages, "SIP/2.0 603 Decline") >= 3
    assert blocked_after not in uas.messages()

    # Every record of the outage calls is in the stream of the new primary.
    def outage_records() -> int:
        seen = set()
        for _id, f in r.xrange(prefix + "records", count=10000):
            if f.get("caller") in outage_callers:
                seen.add(f["caller"])
        return len(seen)

    assert wait_for(lambda: outage_records() == n, 20), outage_records()
    r.close()
