"""`sipscreen records export`: the decision records as CSV or JSON lines.

How this works: the options are checked here (dates as US Eastern days,
numbers normalised, actions named) and proxy.records.export streams the
matching records, from the indexes by callee, caller or provider, else by
scanning the time range.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    records_client,
    when_arg,
    wrap,
)
from proxy.records import export as export_records
from rules.numbers import normalise

RECORD_ACTIONS = ("reject", "would_block", "monitor", "allowlist_override", "allow", "mark")


def _et_day_range(text: str) -> tuple[float, float]:
    """`records export --day`: that day in US Eastern Time, like every other
    date-only input (its first instant and its last millisecond; 23 or 25
    hours on a DST change)."""
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise AdminError(f"--day: not a day (YYYY-MM-DD): {text!r}") from None
    start = when_arg(day.isoformat(), "--day")
    return start, when_arg((day + dt.timedelta(days=1)).isoformat(), "--day") - 0.001


async def _records_export(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    since = when_arg(args.since, "--since") if args.since else None
    until = when_arg(args.until, "--until", "end") if args.until else None
    if args.day:
        if since is not None or until is not None:
            raise AdminError("--day: use either --day or --since/--until")
        since, until = _et_day_range(args.day)
    nums: dict[str, str | None] = {}
    for opt in ("caller", "callee"):
        raw = getattr(args, opt)
        nums[opt] = normalise(raw) if raw else None
        if raw and nums[opt] is None:
            raise AdminError(f"--{opt}: not a phone number: {raw!r}")
    actions = None
    if args.action:
        actions = [a.strip() for a in args.action.split(",") if a.strip()]
        bad = [a for a in actions if a not in RECORD_ACTIONS]
        if bad or not actions:
            want = ", ".join(RECORD_ACTIONS)
            raise AdminError(f"--action: expected one or more of {want}, got {args.action!r}")
    out = sys.stdout
    async with records_client(args, r) as rr:
        async for line in export_records(
            rr,
            prefix,
            since,
            until,
            nums["caller"],
            args.provider,
            args.rule,
            args.format,
            callee=nums["callee"],
            actions=actions,
            scan=args.scan,
        ):
            out.write(line)
    return 0


def register(sub: Subparsers) -> None:
    rec = sub.add_parser("records", help="decision records").add_subparsers(
        dest="records_command", required=True
    )
    p = rec.add_parser(
        "export",
        help="records as CSV or JSON lines, by callee, caller, provider, day",
        description="Records by time (when written). --callee, --caller and --provider "
        "read the indexes (fast); without them the whole time range is scanned.",
    )
    p.add_argument("--since", help="from this date/time, YYYY-MM-DD (US Eastern day) or ISO")
    p.add_argument("--until", help="up to this date/time, YYYY-MM-DD (US Eastern day) or ISO")
    p.add_argument("--day", help="one US Eastern day, YYYY-MM-DD (instead of --since/--until)")
    p.add_argument("--callee", help="the called number (as a subscriber asks for its list)")
    p.add_argument("--caller", help="only this caller")
    p.add_argument("--provider", help="only this upstream provider id")
    p.add_argument("--rule", help="only this rule, e.g. notice_k4, rmd_gate, caller_block")
    p.add_argument(
        "--action",
        help=f"comma-separated: {', '.join(RECORD_ACTIONS)} (reject = blocked calls)",
    )
    p.add_argument(
        "--scan",
        action="store_true",
        help="scan the stream instead of the indexes (records from before the indexes)",
    )
    p.add_argument(
        "--format",
        choices=("csv", "json"),
        default="csv",
        help="csv (header row) or json (one object per line); default csv",
    )
    p.set_defaults(handler=wrap(_records_export))
