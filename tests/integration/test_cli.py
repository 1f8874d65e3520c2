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
from proxy.server.bootstrap import seed_sample_data
from proxy.server.sockets import attach_random_cbpf

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
    assert redis_client.sismember(key_prefix + "block:caller", "+12127364801")
    assert redis_client.hget(key_prefix + "provider:sample-carrier", "rmd_status") == "listed"
    # An operator removed a sample entry: a restart must not put it back.
    redis_client.srem(key_prefix + "block:caller", "+12127364801")
    assert seed_sample_data(cfg) == 0
    assert not redis_client.sismember(key_prefix + "block:caller", "+12127364801")


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


def _leaf_commands() -> list[list[str]]:
    """Every runnable command line prefix: `run`, `check`, `rmd status`, ..."""
    import argparse

    out: list[list[str]] = []

    def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(path)
        for a in subs:
            for name, child in a.choices.items():
                walk(child, [*path, name])

    walk(build_parser(), [])
    return out


def test_global_flags_anywhere() -> None:
    # --config/--redis/--key-prefix before the command, after it, and after a
    # nested subcommand (`rmd status`, `notice list`) alike; a flag given
    # early is not reset by a parser that did not see it.
    leaves = _leaf_commands()
    assert ["rmd", "status"] in leaves and ["notice", "list"] in leaves
    for cmd in leaves:
        parser = build_parser()
        g = ["--config", "c.toml", "--redis", "redis://127.0.0.1:6390/2", "--key-prefix", "t:"]
        for argv in ([*g, *cmd], [*cmd, *g]):
            try:
                ns, _rest = parser.parse_known_args(argv)
            except SystemExit:  # required positionals missing: still must know the flags
                ns = None
            if ns is not None:
                assert (ns.config, ns.redis, ns.key_prefix) == (
                    "c.toml",
                    "redis://127.0.0.1:6390/2",
                    "t:",
                ), cmd
    ns = build_parser().parse_args(
        ["--redis", "redis://127.0.0.1:6390/2", "rmd", "status", "RMD0000001", "--key-prefix", "x:"]
    )
    assert (ns.redis, ns.key_prefix, ns.id) == ("redis://127.0.0.1:6390/2", "x:", "RMD0000001")
    ns = build_parser().parse_args(["notice", "list", "--redis", "redis://127.0.0.1:6390/2"])
    assert ns.redis == "redis://127.0.0.1:6390/2" and ns.config is None


def test_subcommand_help_describes_every_option() -> None:
    import argparse

    for cmd in _leaf_commands():
        p = build_parser()
        for name in cmd:
            sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
            p = sub.choices[name]
        undocumented = [
            a.dest for a in p._actions if not a.help and not isinstance(a, argparse._HelpAction)
        ]
        assert not undocumented, f"sipscreen {' '.join(cmd)}: no help for {undocumented}"


def test_unblock_says_when_not_blocked(redis_url: str, key_prefix: str, redis_client: Any) -> None:
    g = ["--redis", redis_url, "--key-prefix", key_prefix]
    res = _run("block", "caller", "+12127364800", *g)
    assert res.returncode == 0, res.stderr
    res = _run("unblock", "caller", "+12127364800", "+12127364802", *g)
    assert res.returncode == 1
    assert b"unblocked caller: +12127364800" in res.stdout
    assert b"caller not blocked: +12127364802" in res.stderr
    assert not redis_client.sismember(key_prefix + "block:caller", "+12127364800")
    res = _run("unblock", "prefix", "+1212736", *g)
    assert res.returncode == 1 and b"prefix not blocked: +1212736" in res.stderr
    res = _run("block", "provider", "acme", *g)
    assert _run("unblock", "provider", "acme", *g).returncode == 0


def test_run_refuses_placeholder_603plus_and_607(tmp_path: Path) -> None:
    # 603+ left at the sample's placeholder redress contact, and 607 for a
    # network block: `run` stops before binding anything, naming the key.
    cases = {
        '[answer.analytics]\nkind = "603+"\nredress_url = "https://redress.example/"\n': (
            b"sipscreen: config error: answer.analytics.redress_url: redress URL "
            b"'https://redress.example/' is a placeholder"
        ),
        '[answer.deterministic]\nkind = "607"\n': (
            b'sipscreen: config error: answer.deterministic.kind: "607" (Unwanted, RFC 8197)'
        ),
    }
    for body, message in cases.items():
        cfg = tmp_path / "answers.toml"
        cfg.write_text(body)
        res = _run("run", "--config", str(cfg), "--metrics", "off")
        assert res.returncode == 2, res.stderr
        assert message in res.stderr
        assert b"Traceback" not in res.stderr and b"listening" not in res.stdout


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
