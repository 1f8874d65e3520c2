"""`sipscreen rmd`: Robocall Mitigation Database snapshots (47 CFR 64.6305(g)).

RMD keys written here (docs/REDIS.md):
  rmd:current              STRING  version in force, "<as-of date>.<seq>"
  rmd:versions             ZSET    version -> as-of date as YYYYMMDD
  rmd:snap:<version>       HASH    rmd_number -> JSON of the filer (rules.rmd.to_record)
  rmd:meta:<version>       HASH    as_of, as_of_source, file, filers, imported, previous, ...
  rmd:undo:<version>       HASH    rmd_number -> its filer hash before that import (JSON)
  rmd:filer:<rmd_number>   HASH    status (listed/absent/removed), name, frn, ocn,
                                   implementation (STIR/SHAKEN claim), listed_since,
                                   absent_since, removed_since, removal_order
  rmd:history:<rmd_number> LIST    JSON events (listed, missing from export, removed, rollback)
  rmd:by_frn, rmd:by_ocn   HASH    FRN (and other FRNs) / OCN -> rmd_number
`rmd import` (proxy/commands/rmd_import.py) writes the new snapshot under a
new version first, then switches `rmd:current`, the filer statuses and every
tied `provider:<id>` rmd_status/rmd_order/rmd_since in one MULTI/EXEC: a
failed import leaves the previous snapshot in force. `rmd rollback` reverses
the last import in one MULTI/EXEC (a removal order recorded since stays);
`rmd remove` records an FCC removal order; `rmd status` prints a filer's
status and history, or with no id the snapshots.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    day_arg,
    today_et,
    wrap,
)
from proxy.commands.imports import import_flags
from proxy.commands.rmd_filers import (
    filer_hashes,
    history_event,
    provider_changes,
    still_current,
    version_seq,
)
from proxy.commands.rmd_import import rmd_import
from rules import rmd as rrmd


async def _rmd_rollback(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    version = await r.get(prefix + "rmd:current") or ""
    if not version:
        raise AdminError("no RMD snapshot in force; nothing to roll back")
    meta = await r.hgetall(prefix + f"rmd:meta:{version}")
    previous = meta.get("previous", "")
    if not previous:
        raise AdminError(f"{version}: no earlier RMD snapshot recorded to restore")
    undo = await r.hgetall(prefix + f"rmd:undo:{version}")
    current = await filer_hashes(r, prefix, sorted(undo))
    states: dict[str, dict[str, str] | None] = {}
    for num, js in undo.items():
        was: dict[str, str] | None = json.loads(js) if js else None
        cur = current.get(num, {})
        if cur.get("removal_order"):
            # A removal order recorded since stays: it is not part of the import.
            base = was or {k: cur[k] for k in ("name", "frn", "ocn") if k in cur}
            was = {
                **base,
                "status": rrmd.REMOVED,
                "removal_order": cur["removal_order"],
                "removed_since": cur.get("removed_since", ""),
            }
        states[num] = was
    by_frn = await r.hgetall(prefix + "rmd:by_frn")
    by_ocn = await r.hgetall(prefix + "rmd:by_ocn")
    provs = await provider_changes(r, prefix, states, by_frn, by_ocn, has_snapshot=True)
    day = today_et(now)
    async with r.pipeline(transaction=True) as tx:
        await still_current(tx, prefix, version)
        for num, st in states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            if st:
                tx.hset(fk, mapping=st)
            tx.rpush(
                prefix + f"rmd:history:{num}",
                history_event(day, "import rolled back", version=version, restored=previous),
            )
        for key, fields, _ in provs:
            tx.hset(key, mapping=fields)
        tx.set(prefix + "rmd:current", previous)
        tx.zrem(prefix + "rmd:versions", version)
        tx.delete(
            prefix + f"rmd:snap:{version}",
            prefix + f"rmd:meta:{version}",
            prefix + f"rmd:undo:{version}",
        )
        await tx.execute()
    print(f"RMD snapshot {version} rolled back; {previous} is in force again")
    print(f"{len(states)} filer(s) restored")
    for _, _, desc in provs:
        print(f"  {desc}")
    return 0


async def _rmd_remove(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    num = args.rmd_number or ""
    if not num and args.frn:
        num = await r.hget(prefix + "rmd:by_frn", args.frn) or ""
        if not num:
            raise AdminError(f"--frn {args.frn}: no RMD filer with this FRN; use --rmd-number")
    norm = rrmd.normalise_rmd_number(num)
    if norm is None:
        raise AdminError(f"--rmd-number: not an RMD number: {num!r}")
    day = day_arg(args.date, "--date") if args.date else today_et(now)
    fk = prefix + f"rmd:filer:{norm}"
    cur = await r.hgetall(fk)
    st = {
        **cur,
        "status": rrmd.REMOVED,
        "removal_order": args.order,
        "removed_since": cur.get("removed_since") or day,
    }
    by_frn = await r.hgetall(prefix + "rmd:by_frn")
    by_ocn = await r.hgetall(prefix + "rmd:by_ocn")
    has = bool(await r.exists(prefix + "rmd:current"))
    provs = await provider_changes(r, prefix, {norm: st}, by_frn, by_ocn, has_snapshot=has)
    async with r.pipeline(transaction=True) as tx:
        tx.hset(fk, mapping=st)
        tx.rpush(prefix + f"rmd:history:{norm}", history_event(day, "removed", order=args.order))
        for key, fields, _ in provs:
            tx.hset(key, mapping=fields)  # 47 CFR 64.6305(g)
        await tx.execute()
    print(
        f"{norm}: removed by {args.order} on {st['removed_since']}; "
        f"{len(provs)} provider(s) updated"
    )
    for _, _, desc in provs:
        print(f"  {desc}")
    return 0


def _status_line(h: Mapping[str, str]) -> str:
    """What a filer's status means, in words (absent and removed differ)."""
    status = h.get("status", "")
    if status == rrmd.REMOVED:
        return (
            "removed"
            + (f" by order {h['removal_order']}" if h.get("removal_order") else " (no order named)")
            + (f" on {h['removed_since']}" if h.get("removed_since") else "")
            + " (47 CFR 64.6305(g): traffic refused)"
        )
    if status == rrmd.ABSENT:
        return (
            "absent: missing from the RMD export"
            + (f" since the export of {h['absent_since']}" if h.get("absent_since") else "")
            + "; no removal order recorded (47 CFR 64.6305(g): traffic refused)"
        )
    if status == rrmd.LISTED:
        return "listed" + (f" since {h['listed_since']}" if h.get("listed_since") else "")
    return status or "unknown"


async def _rmd_versions(r: Client, prefix: str) -> int:
    current = await r.get(prefix + "rmd:current") or ""
    versions = await r.zrange(prefix + "rmd:versions", 0, -1)
    if not versions:
        print("no RMD snapshot imported")
        return 0
    for v in sorted(versions, key=version_seq):
        m = await r.hgetall(prefix + f"rmd:meta:{v}")
        mark = "*" if v == current else " "
        print(
            f"{mark} {v}  as of {m.get('as_of', '?')}  {m.get('filers', '?')} filers  "
            f"imported {m.get('imported', '?')}  {m.get('file', '')}"
        )
    return 0


async def _rmd_status(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    if not args.id:
        return await _rmd_versions(r, prefix)
    num = rrmd.normalise_rmd_number(args.id) or ""
    if not num:
        num = await r.hget(prefix + "rmd:by_frn", args.id) or await r.hget(
            prefix + "rmd:by_ocn", args.id.upper()
        )
        if not num:
            raise AdminError(f"{args.id}: no RMD filer with this RMD number, FRN or OCN")
    h = await r.hgetall(prefix + f"rmd:filer:{num}")
    if not h:
        has = bool(await r.exists(prefix + "rmd:current"))
        print(f"{num}: {'not_listed: in no imported RMD export' if has else 'unknown (no RMD)'}")
        return 0
    print(f"{num} {h.get('name', '')}: {_status_line(h)}")
    for k in (
        "frn",
        "ocn",
        "listed_since",
        "absent_since",
        "removed_since",
        "removal_order",
        "version",
    ):
        if h.get(k):
            print(f"  {k}: {h[k]}")
    for ev in await r.lrange(prefix + f"rmd:history:{num}", 0, -1):
        e = json.loads(ev)
        extra = e.get("order") or e.get("version") or ""
        print(f"  {e['date']} {e['event']} {extra}")
    return 0


def register(sub: Subparsers) -> None:
    rmd = sub.add_parser("rmd", help="Robocall Mitigation Database snapshots").add_subparsers(
        dest="rmd_command", required=True
    )
    p = rmd.add_parser(
        "import",
        help="import an RMD CSV export",
        description="Import the FCC's Robocall Mitigation Database CSV export (the export's "
        "field names or the listing's display labels, docs/FORMATS.md) as a new snapshot "
        "versioned by its as-of date, and print the diff with the one in force; filers that "
        "vanished are marked absent (47 CFR 64.6305(g)). All or nothing: bad rows are "
        "reported as FILE:LINE and nothing is imported unless --skip-bad-rows.",
    )
    p.add_argument("file", help="the RMD CSV export")
    p.add_argument("--as-of", help="date the export describes (default: its newest last_updated)")
    import_flags(p, guard=True)
    p.set_defaults(handler=wrap(rmd_import))
    p = rmd.add_parser("rollback", help="restore the RMD snapshot in force before the last import")
    p.set_defaults(handler=wrap(_rmd_rollback))
    p = rmd.add_parser("remove", help="record an FCC removal order")
    p.add_argument("--order", required=True, help='e.g. "DA 25-694"')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--frn", help="the filer's 10-digit FCC Registration Number")
    g.add_argument("--rmd-number", help="the filer's RMD number, e.g. RMD0001410")
    p.add_argument("--date", help="date of the order, YYYY-MM-DD (default today)")
    p.set_defaults(handler=wrap(_rmd_remove))
    p = rmd.add_parser("status", help="a filer's status and history (no id: the snapshots)")
    p.add_argument("id", nargs="?", help="RMD number, FRN or OCN")
    p.set_defaults(handler=wrap(_rmd_status))
