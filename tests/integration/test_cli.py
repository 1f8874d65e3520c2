"""proxy/cli.py and the start-up helpers: `python -m proxy` parses its
subcommands, a bad config value exits 2 naming the key, flags override the
TOML file, and the sample data is seeded only when its keys are absent."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.cli import build_parser, run_overrides
from proxy.config import load_config
from proxy.server import attach_random_cbpf, seed_sample_data

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=str(ROOT),
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_help_lists_run() -> None:
    res = _run("--help")
    assert res.returncode == 0
    assert b"run" in res.stdout


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[proxy]\nworkers = 0\n")
    res = _run("run", "--config", str(cfg))
    assert res.returncode == 2
    assert b"proxy.workers" in res.stderr


def test_flags_override_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[proxy]\nlisten = ["udp:127.0.0.1:5999"]\n')
    args = build_parser().parse_args(
        [
            "--redis",
            "redis://127.0.0.1:6379/3",
            "run",
            "--config",
            str(cfg),
            "--listen",
            "udp:127.0.0.1:6001",
            "--listen",
            "tcp:127.0.0.1:6001",
            "--workers",
            "2",
            "--monitor",
            "--loop",
            "asyncio",
        ]
    )
    c = load_config(args.config, run_overrides(args))
    assert c.listen == (("udp", "127.0.0.1", 6001), ("tcp", "127.0.0.1", 6001))
    assert c.redis_url == "redis://127.0.0.1:6379/3"
    assert c.workers == 2 and c.monitor and c.loop == "asyncio"


def test_sample_data_seeded_once(redis_url: str, key_prefix: str, redis_client: Any) -> None:
    cfg = replace(load_config(None, {}), redis_url=redis_url, key_prefix=key_prefix)
    assert cfg.sample_data is not None
    n = seed_sample_data(cfg)
    assert n > 0
    assert redis_client.sismember(key_prefix + "block:caller", "+12025550188")
    assert redis_client.hget(key_prefix + "provider:sample-carrier", "rmd_status") == "listed"
    # An operator removed a sample entry: a restart must not put it back.
    redis_client.srem(key_prefix + "block:caller", "+12025550188")
    assert seed_sample_data(cfg) == 0
    assert not redis_client.sismember(key_prefix + "block:caller", "+12025550188")


def test_cbpf_program_attaches() -> None:
    import socket

    socks = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if socks else 0))
            socks.append(s)
        attach_random_cbpf(socks[0], 2)  # raises OSError if the kernel refuses it
        # Datagrams from ONE source port reach both sockets.
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.bind(("127.0.0.1", 0))
        port = socks[0].getsockname()[1]
        for i in range(64):
            tx.sendto(b"x%d" % i, ("127.0.0.1", port))
        tx.close()
        counts = []
        for s in socks:
            s.setblocking(False)
            n = 0
            while True:
                try:
                    s.recv(100)
                    n += 1
                except BlockingIOError:
                    break
            counts.append(n)
        assert sum(counts) == 64
        assert all(c > 0 for c in counts), counts
    finally:
        for s in socks:
            s.close()


def test_check_maps_source_ip_through_the_trunk_map(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: Any
) -> None:
    """`sipscreen check --source IP` names the provider the config's trunk map
    gives that IP, so the RMD gate (47 CFR 64.6305(g)) is explained for it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\nembedded = false\n'
        '[[trunk]]\ncidr = "127.0.0.2/32"\nprovider = "gone-co"\n'
    )
    redis_client.hset(key_prefix + "provider:gone-co", mapping={"rmd_status": "removed"})
    res = _run("--config", str(cfg), "check", "--caller", "+13105551234", "--source", "127.0.0.2")
    assert res.returncode == 1, res.stderr  # 1: blocked
    assert b"verdict: BLOCKED by rmd_gate (47 CFR 64.6305(g))" in res.stdout
    res = _run("--config", str(cfg), "check", "--caller", "+13105551234", "--source", "127.0.0.3")
    assert res.returncode == 0, res.stderr  # 0: allowed
    # 127.0.0.3 is on no trunk: no unmapped_provider_policy key = monitor, counted.
    assert b"verdict: ALLOWED by default" in res.stdout
    assert b"would block: unmapped_provider (47 CFR 64.6305(g))" in res.stdout


def test_check_decides_with_the_configs_settings(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: Any
) -> None:
    """`check` uses the config's unmapped_provider_policy, emergency numbers and
    emergency callers (not built-in defaults), and exits 0 allowed, 1 blocked,
    2 bad input."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\nembedded = false\n'
        "[proxy]\n"
        'unmapped_provider_policy = "block"\n'
        'emergency_numbers = ["911", "933", "3105550100"]\n'
        'emergency_callers = ["+13105550911"]\n'
    )
    base = ("--config", str(cfg), "check", "--source", "127.0.0.9")
    res = _run(*base, "--caller", "+13105551234")
    assert res.returncode == 1, res.stdout
    assert b"verdict: BLOCKED by unmapped_provider (47 CFR 64.6305(g))" in res.stdout
    res = _run(*base, "--caller", "+13105550911")  # a PSAP calling out
    assert res.returncode == 0 and b"ALLOWED by emergency" in res.stdout, res.stdout
    assert b"emergency caller" in res.stdout
    res = _run(*base, "--caller", "+13105551234", "--callee", "310-555-0100")  # a PSAP line
    assert res.returncode == 0 and b"ALLOWED by emergency" in res.stdout, res.stdout
    res = _run(*base, "--caller", "+13105551234", "--callee", "urn:service:sos.police")
    assert res.returncode == 0 and b"ALLOWED by emergency" in res.stdout, res.stdout
    assert _run(*base, "--caller", "not-a-number").returncode == 2
    helptext = _run("check", "--help").stdout
    assert b"0 allowed" in helptext and b"1 blocked" in helptext
