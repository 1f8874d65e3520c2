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
`rmd import` reads the CSV export and hands its text to rules.rmd.parse_rmd_csv;
it writes the new snapshot under a new version first, then switches
`rmd:current`, the filer statuses and every tied `provider:<id>`
rmd_status/rmd_order/rmd_since in one MULTI/EXEC: a failed import leaves
the previous snapshot in force; `rmd rollback` reverses the last one.
`rmd remove` records an FCC removal order; `rmd status` prints a filer or
the snapshots. The import rules shared with nanpa are in imports.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from redis.exceptions import WatchError

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    day_arg,
    iso,
    read_file,
    today_et,
    wrap,
)
from proxy.commands.imports import (
    check_bad_rows,
    drop_guard_answer,
    import_flags,
    max_share,
    would_refuse,
)
from proxy.commands.rmd_filers import (
    as_of_score,
    filer_hashes,
    provider_changes,
    version_seq,
)
from rules import rmd as rrmd
from rules.imports import drop_guard


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() and total:
        width = 30
        fill = width * done // total
        print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


async def _load_rmd_snapshot(r: Client, prefix: str, version: str) -> dict[str, rrmd.Filer]:
    old: dict[str, rrmd.Filer] = {}
    if version:
        for num, js in (await r.hgetall(prefix + f"rmd:snap:{version}")).items():
            old[num] = rrmd.from_record(json.loads(js))
    return old


async def _still_current(tx: Client, prefix: str, version: str) -> None:
    """WATCH `rmd:current` and check it still names ``version`` (what the
    import or rollback was computed from); then start the MULTI. Another
    import in between makes EXEC fail (WatchError), not interleave."""
    key = prefix + "rmd:current"
    await tx.watch(key)
    if (await tx.get(key) or "") != version:
        await tx.unwatch()
        raise AdminError("the RMD snapshot in force changed meanwhile (another import?); run again")
    tx.multi()


def _event(day: str, event: str, **extra: str) -> str:
    return json.dumps({"date": day, "event": event, **extra}, separators=(",", ":"))


async def _rmd_import(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    path = args.file
    filers, errors = rrmd.parse_rmd_csv(read_file(path))
    check_bad_rows(path, errors, args)
    if not filers:
        raise AdminError(f"{path}: no valid filer rows; previous RMD snapshot kept")
    new = rrmd.index_filers(filers)
    # The snapshot describes the database as of its newest change, not the
    # day it was downloaded or imported.
    if args.as_of:
        as_of, source = day_arg(args.as_of, "--as-of"), "--as-of"
    else:
        as_of, source = rrmd.as_of_date(filers), "newest last_updated"
    if not as_of:
        as_of, source = today_et(now), "import day (the file has no last_updated; see --as-of)"
    old_version = await r.get(prefix + "rmd:current") or ""
    old_meta = await r.hgetall(prefix + f"rmd:meta:{old_version}") if old_version else {}
    old_as_of = old_meta.get("as_of", "")
    if old_as_of and as_of < old_as_of:
        raise AdminError(
            f"{path}: as of {as_of}, older than the RMD snapshot in force ({old_version}, as of "
            f"{old_as_of}); import exports oldest first, or give --as-of"
        )
    old = await _load_rmd_snapshot(r, prefix, old_version)
    diff = rrmd.diff_snapshots(old, new)
    why = drop_guard("filers", len(old), len(new), len(diff.gone), max_share(args))

    # The filer hashes as they will be after this import (the version is
    # numbered once the import is sure to happen).
    t = now()
    nums = sorted(set(new) | set(old))
    current = await filer_hashes(r, prefix, nums)
    states: dict[str, dict[str, str]] = {}
    events: list[tuple[str, str]] = []  # (rmd_number, event)
    for num, f in new.items():
        cur = current.get(num, {})
        st = {**cur, "name": f.business_name, "frn": f.frn, "ocn": f.ocn}
        st["implementation"] = f.implementation  # STIR/SHAKEN claim (report shaken)
        st["status"] = rrmd.filer_status(True, True, cur.get("removal_order", ""))
        if cur.get("status") in (None, rrmd.ABSENT) or not cur.get("listed_since"):
            st["listed_since"] = as_of
            st.pop("absent_since", None)
            events.append((num, "listed"))
        if st != cur:
            states[num] = st
    for f in diff.gone:
        num = f.rmd_number
        cur = current.get(num) or {"name": f.business_name, "frn": f.frn, "ocn": f.ocn}
        st = {**cur, "status": rrmd.filer_status(False, True, cur.get("removal_order", ""))}
        st.setdefault("absent_since", as_of)
        if st != cur:
            states[num] = st
        events.append((num, "missing from export"))
    by_frn = {f.frn: n for n, f in new.items()}
    for n, f in new.items():
        for other in f.other_frns:
            by_frn.setdefault(other, n)
    by_ocn = {f.ocn: n for n, f in new.items() if f.ocn}
    known_frn = {**(await r.hgetall(prefix + "rmd:by_frn")), **by_frn}
    known_ocn = {**(await r.hgetall(prefix + "rmd:by_ocn")), **by_ocn}
    provs = await provider_changes(
        r, prefix, {**current, **states}, known_frn, known_ocn, has_snapshot=True
    )

    head = f"RMD snapshot: {len(new)} filers as of {as_of} ({source})"
    if errors:
        head += f"; {len(errors)} bad rows skipped" if args.skip_bad_rows else ""
    if args.dry_run:
        print("dry run: nothing written")
    print(head)
    if old_version:
        print(f"replaces {old_version} ({len(old)} filers)")
    print(diff.summary())
    for _, _, desc in provs:
        print(f"  {desc}")
    drop_guard_answer(args, path, why, "the download")
    if args.dry_run:
        return 2 if would_refuse(args, errors, why) else 0

    version = f"{as_of}.{int(await r.incr(prefix + 'rmd:seq'))}"
    for st in states.values():
        st["version"] = version
    snap_key = prefix + f"rmd:snap:{version}"
    items = list(new.items())
    try:
        for i in range(0, len(items), 1000):
            async with r.pipeline(transaction=False) as p:
                for num, f in items[i : i + 1000]:
                    p.hset(snap_key, num, json.dumps(rrmd.to_record(f), separators=(",", ":")))
                await p.execute()
            _progress(min(i + 1000, len(items)), len(items))
    except BaseException:
        await r.delete(snap_key)
        raise
    meta = {
        "as_of": as_of,
        "as_of_source": source,
        "file": str(Path(path).resolve()),
        "filers": str(len(new)),
        "imported": iso(t),
        "previous": old_version,
        "bad_rows_skipped": str(len(errors)),
        "accepted_removals": why or "",
    }
    # The undo record: each filer hash this import changes, as it was ("" =
    # none). `rmd rollback` puts them back (keeping removal orders).
    undo = {n: json.dumps(current[n]) if n in current else "" for n in states}
    async with r.pipeline(transaction=True) as tx:
        try:
            await _still_current(tx, prefix, old_version)
        except AdminError:
            await r.delete(snap_key)
            raise
        tx.hset(prefix + f"rmd:meta:{version}", mapping=meta)
        if undo:
            tx.hset(prefix + f"rmd:undo:{version}", mapping=undo)
        tx.zadd(prefix + "rmd:versions", {version: as_of_score(as_of)})
        tx.set(prefix + "rmd:current", version)
        if by_frn:
            tx.hset(prefix + "rmd:by_frn", mapping=by_frn)
        if by_ocn:
            tx.hset(prefix + "rmd:by_ocn", mapping=by_ocn)
        for num, st in states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            tx.hset(fk, mapping=st)
        for num, ev in events:
            tx.rpush(prefix + f"rmd:history:{num}", _event(as_of, ev, version=version))
        for key, fields, _ in provs:
            tx.hset(key, mapping=fields)  # 47 CFR 64.6305(g)
        try:
            await tx.execute()
        except WatchError:
            await r.delete(snap_key)
            raise
    print(f"in force: {version} (undo: sipscreen rmd rollback)")
    return 0


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
        await _still_current(tx, prefix, version)
        for num, st in states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            if st:
                tx.hset(fk, mapping=st)
            tx.rpush(
                prefix + f"rmd:history:{num}",
                _event(day, "import rolled back", version=version, restored=previous),
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
        tx.rpush(prefix + f"rmd:history:{norm}", _event(day, "removed", order=args.order))
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
    p.set_defaults(handler=wrap(_rmd_import))
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
