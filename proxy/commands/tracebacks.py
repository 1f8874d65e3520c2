"""`sipscreen traceback import`: a letter's Attachment A (traced calls).

How this works: the file is read here and its text handed to
rules.traceback.parse_attachment_a; the calls replace `traceback:<owner>`
(the notice or the provider) in one MULTI/EXEC, all or nothing.
"""

from __future__ import annotations

import argparse
import json

from proxy.commands.common import AdminError, Client, Clock, Subparsers, read_file, wrap
from proxy.commands.imports import check_bad_rows, import_flags
from rules import traceback as rtraceback


async def _traceback_import(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    calls, errors = rtraceback.parse_attachment_a(read_file(args.file))
    check_bad_rows(args.file, errors, args)
    if not calls:
        raise AdminError(f"{args.file}: no traced calls found")
    owner = args.notice or args.provider
    if not owner:
        raise AdminError("--notice ID or --provider ID is required")
    key = prefix + f"traceback:{owner}"
    async with r.pipeline(transaction=True) as tx:
        tx.delete(key)
        for c in calls:
            tx.rpush(
                key,
                json.dumps(
                    {
                        "line": c.line,
                        "customer": c.customer,
                        "notified": [x.isoformat() for x in c.notified],
                        "call_time": c.call_time.isoformat(),
                        "caller_id": c.caller_id,
                        "called_number": c.called_number,
                        "campaign": c.campaign,
                        "violation": c.violation,
                    },
                    separators=(",", ":"),
                ),
            )
        await tx.execute()
    s = rtraceback.summarise(calls)
    print(f"traceback:{owner}: {s.rows} traced calls, {s.distinct_customers} distinct customers")
    if s.first_call and s.last_call:
        print(f"  calls from {s.first_call.isoformat()} to {s.last_call.isoformat()}")
    for name, count in s.campaigns.items():
        print(f"  {count:4d}  {name}")
    return 0


def register(sub: Subparsers) -> None:
    tb = sub.add_parser("traceback", help="traceback evidence").add_subparsers(
        dest="traceback_command", required=True
    )
    p = tb.add_parser(
        "import",
        help="import an Attachment A table",
        description="Import the traced calls of a letter's Attachment A (tab-separated "
        "text copied from the PDF; the letter before the header row is skipped).",
    )
    p.add_argument("file", help="the letter or its Attachment A as text")
    p.add_argument("--notice", help="notice id the calls belong to")
    p.add_argument("--provider", help="provider id (default: the notice's)")
    import_flags(p, guard=False)
    p.set_defaults(handler=wrap(_traceback_import))
