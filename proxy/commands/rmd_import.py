"""`sipscreen rmd import`: a Robocall Mitigation Database export becomes the
snapshot in force (47 CFR 64.6305(g)).

How this works, step by step (keys in proxy/commands/rmd.py):
1. read the CSV export and hand its text to rules.rmd.parse_rmd_csv; a bad
   row refuses the file unless --skip-bad-rows (imports.check_bad_rows);
2. date it: --as-of, else its newest last_updated, else the import day; an
   export older than the snapshot in force is refused (``_as_of``);
3. diff it with the snapshot in force and apply the drop guard
   (rules.imports.drop_guard);
4. plan the filer hashes as they will be, their history events and every
   tied provider's RMD fields (``_plan``), and print the diff (``_show``);
   a dry run stops here;
5. write the new snapshot under a new version (``_write_snapshot``), then
   switch `rmd:current`, the filers and the providers in one MULTI/EXEC
   under WATCH (``_switch``): a failed import leaves the previous snapshot
   in force and its own snapshot key deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.exceptions import WatchError

from proxy.commands.common import AdminError, Client, Clock, day_arg, iso, read_file, today_et
from proxy.commands.imports import check_bad_rows, drop_guard_answer, max_share, would_refuse
from proxy.commands.rmd_filers import (
    as_of_score,
    filer_hashes,
    history_event,
    provider_changes,
    still_current,
)
from rules import rmd as rrmd
from rules.errors import RowError
from rules.imports import drop_guard

__all__ = ["rmd_import"]


@dataclass
class _Plan:
    """What an import changes, computed before anything is written."""

    new: dict[str, rrmd.Filer]
    as_of: str
    current: dict[str, dict[str, str]]  # filer hashes in Redis now
    states: dict[str, dict[str, str]] = field(default_factory=dict)  # as they will be
    events: list[tuple[str, str]] = field(default_factory=list)  # (rmd_number, event)
    by_frn: dict[str, str] = field(default_factory=dict)
    by_ocn: dict[str, str] = field(default_factory=dict)
    provs: list[tuple[str, dict[str, str], str]] = field(default_factory=list)


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


def _as_of(args: argparse.Namespace, filers: list[rrmd.Filer], now: Clock) -> tuple[str, str]:
    """The date the export describes and where it came from. The snapshot
    describes the database as of its newest change, not the day it was
    downloaded or imported."""
    if args.as_of:
        as_of, source = day_arg(args.as_of, "--as-of"), "--as-of"
    else:
        as_of, source = rrmd.as_of_date(filers), "newest last_updated"
    if not as_of:
        as_of, source = today_et(now), "import day (the file has no last_updated; see --as-of)"
    return as_of, source


def _filer_states(plan: _Plan, gone: Sequence[rrmd.Filer]) -> None:
    """The filer hashes as they will be after the import (the version is
    stamped once the import is sure to happen) and their history events."""
    for num, f in plan.new.items():
        cur = plan.current.get(num, {})
        st = {**cur, "name": f.business_name, "frn": f.frn, "ocn": f.ocn}
        st["implementation"] = f.implementation  # STIR/SHAKEN claim (report shaken)
        st["status"] = rrmd.filer_status(True, True, cur.get("removal_order", ""))
        if cur.get("status") in (None, rrmd.ABSENT) or not cur.get("listed_since"):
            st["listed_since"] = plan.as_of
            st.pop("absent_since", None)
            plan.events.append((num, "listed"))
        if st != cur:
            plan.states[num] = st
    for f in gone:
        num = f.rmd_number
        cur = plan.current.get(num) or {"name": f.business_name, "frn": f.frn, "ocn": f.ocn}
        st = {**cur, "status": rrmd.filer_status(False, True, cur.get("removal_order", ""))}
        st.setdefault("absent_since", plan.as_of)
        if st != cur:
            plan.states[num] = st
        plan.events.append((num, "missing from export"))


async def _plan(
    r: Client,
    prefix: str,
    new: dict[str, rrmd.Filer],
    old: dict[str, rrmd.Filer],
    gone: Sequence[rrmd.Filer],
    as_of: str,
) -> _Plan:
    nums = sorted(set(new) | set(old))
    plan = _Plan(new, as_of, await filer_hashes(r, prefix, nums))
    _filer_states(plan, gone)
    plan.by_frn = {f.frn: n for n, f in new.items()}
    for n, f in new.items():
        for other in f.other_frns:
            plan.by_frn.setdefault(other, n)
    plan.by_ocn = {f.ocn: n for n, f in new.items() if f.ocn}
    known_frn = {**(await r.hgetall(prefix + "rmd:by_frn")), **plan.by_frn}
    known_ocn = {**(await r.hgetall(prefix + "rmd:by_ocn")), **plan.by_ocn}
    plan.provs = await provider_changes(
        r, prefix, {**plan.current, **plan.states}, known_frn, known_ocn, has_snapshot=True
    )
    return plan


def _show(
    args: argparse.Namespace,
    plan: _Plan,
    source: str,
    errors: list[RowError],
    old_version: str,
    old: dict[str, rrmd.Filer],
    diff: rrmd.RmdDiff,
) -> None:
    head = f"RMD snapshot: {len(plan.new)} filers as of {plan.as_of} ({source})"
    if errors:
        head += f"; {len(errors)} bad rows skipped" if args.skip_bad_rows else ""
    if args.dry_run:
        print("dry run: nothing written")
    print(head)
    if old_version:
        print(f"replaces {old_version} ({len(old)} filers)")
    print(diff.summary())
    for _, _, desc in plan.provs:
        print(f"  {desc}")


async def _write_snapshot(r: Client, snap_key: str, new: dict[str, rrmd.Filer]) -> None:
    """`rmd:snap:<version>`, 1,000 filers a round trip; deleted on failure."""
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


async def _switch(
    r: Client,
    prefix: str,
    plan: _Plan,
    version: str,
    old_version: str,
    meta: dict[str, str],
) -> None:
    """One MULTI/EXEC under WATCH of `rmd:current`: the new version in
    force, its meta and undo record, the filers, their history and the tied
    providers (47 CFR 64.6305(g)). Refused: the new snapshot key is deleted."""
    snap_key = prefix + f"rmd:snap:{version}"
    # The undo record: each filer hash this import changes, as it was ("" =
    # none). `rmd rollback` puts them back (keeping removal orders).
    undo = {n: json.dumps(plan.current[n]) if n in plan.current else "" for n in plan.states}
    async with r.pipeline(transaction=True) as tx:
        try:
            await still_current(tx, prefix, old_version)
        except AdminError:
            await r.delete(snap_key)
            raise
        tx.hset(prefix + f"rmd:meta:{version}", mapping=meta)
        if undo:
            tx.hset(prefix + f"rmd:undo:{version}", mapping=undo)
        tx.zadd(prefix + "rmd:versions", {version: as_of_score(plan.as_of)})
        tx.set(prefix + "rmd:current", version)
        if plan.by_frn:
            tx.hset(prefix + "rmd:by_frn", mapping=plan.by_frn)
        if plan.by_ocn:
            tx.hset(prefix + "rmd:by_ocn", mapping=plan.by_ocn)
        for num, st in plan.states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            tx.hset(fk, mapping=st)
        for num, ev in plan.events:
            tx.rpush(prefix + f"rmd:history:{num}", history_event(plan.as_of, ev, version=version))
        for key, fields, _ in plan.provs:
            tx.hset(key, mapping=fields)  # 47 CFR 64.6305(g)
        try:
            await tx.execute()
        except WatchError:
            await r.delete(snap_key)
            raise


async def rmd_import(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    path = args.file
    filers, errors = rrmd.parse_rmd_csv(read_file(path))
    check_bad_rows(path, errors, args)
    if not filers:
        raise AdminError(f"{path}: no valid filer rows; previous RMD snapshot kept")
    new = rrmd.index_filers(filers)
    as_of, source = _as_of(args, filers, now)
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

    t = now()
    plan = await _plan(r, prefix, new, old, diff.gone, as_of)
    _show(args, plan, source, errors, old_version, old, diff)
    drop_guard_answer(args, path, why, "the download")
    if args.dry_run:
        return 2 if would_refuse(args, errors, why) else 0

    version = f"{as_of}.{int(await r.incr(prefix + 'rmd:seq'))}"
    for st in plan.states.values():
        st["version"] = version
    await _write_snapshot(r, prefix + f"rmd:snap:{version}", new)
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
    await _switch(r, prefix, plan, version, old_version, meta)
    print(f"in force: {version} (undo: sipscreen rmd rollback)")
    return 0
