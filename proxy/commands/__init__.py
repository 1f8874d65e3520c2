"""The data subcommands of the `sipscreen` CLI (everything but `run`).

How this works: `add_subcommands(sub)` registers `check`, `rmd`, `provider`,
`notice`, `order`, `traceback`, `dno`, `nanpa`, `block`, `unblock`, `allow`,
`records`, `report` and `redis`, one module per command group, each with a
`register(sub)`; each subcommand sets `args.handler(args, redis_url,
prefix, now) -> int` (proxy/cli.py calls it). A handler runs one asyncio job
against Redis with the pure parsers of `rules/` (the command reads the file
and hands them its text) and returns the exit code: 0 done, 2 bad input
(one line naming the file line and field, never a traceback), 1 Redis
unreachable. `check` differs: 0 allowed, 1 blocked, 2 bad input, 3 Redis
unreachable, and it decides with the running proxy's settings.

  check.py        check: the decision for one call, `--at` a past instant
  rmd.py          rmd rollback / remove / status (registers rmd import too)
  rmd_import.py   rmd import, step by step
  rmd_filers.py   the RMD fields of filers and providers (shared)
  provider.py     provider set
  notice.py       notice add / respond / determine / fcc-notified / correct / show / list
  notice_history.py  the notice hash and its append-only history (shared)
  order.py        order add / list / remove (Final Determination Orders)
  tracebacks.py   traceback import
  dno.py          dno import
  nanpa.py        nanpa import / rollback
  blocklists.py   block / unblock / allow
  records.py      records export
  report.py       report provider / shaken
  redis_state.py  redis confirm-empty
  imports.py      what every file import shares: bad rows, drop guard, set switch
  common.py       the handler wrapper, AdminError, date options, file reading
"""

from __future__ import annotations

from proxy.commands import (
    blocklists,
    check,
    dno,
    nanpa,
    notice,
    order,
    provider,
    records,
    redis_state,
    report,
    rmd,
    tracebacks,
)
from proxy.commands.common import AdminError, Subparsers

__all__ = ["AdminError", "add_subcommands"]

# In the order `sipscreen --help` lists them.
_GROUPS = (
    check,
    rmd,
    provider,
    notice,
    order,
    tracebacks,
    dno,
    nanpa,
    blocklists,
    records,
    report,
    redis_state,
)


def add_subcommands(sub: Subparsers) -> None:
    """Register the data subcommands on the `sipscreen` parser."""
    for group in _GROUPS:
        group.register(sub)
