"""The data subcommands of the `sipscreen` CLI (everything but `run`).

How this works: `add_subcommands(sub)` registers `check`, `rmd`, `provider`,
`notice`, `traceback`, `dno`, `nanpa`, `block`, `unblock`, `allow`,
`records` and `report`; each sets `args.handler(args, redis_url, prefix,
now) -> int` (proxy/cli.py calls it). A handler runs one asyncio job against
Redis with the pure parsers of `rules/` and returns the exit code: 0 done,
2 bad input (one line naming the file line and field, never a traceback),
1 Redis unreachable.

RMD keys written here (docs/REDIS.md):
  rmd:current              STRING  version in force, "<as-of date>.<seq>"
  rmd:versions             ZSET    version -> as-of date as YYYYMMDD
  rmd:snap:<version>       HASH    rmd_number -> JSON of the filer (rules.rmd.to_record)
  rmd:meta:<version>       HASH    as_of, as_of_source, file, filers, imported, previous, ...
  rmd:undo:<version>       HASH    rmd_number -> its filer hash before that import (JSON)
  rmd:filer:<rmd_number>   HASH    status (listed/absent/removed), name, frn, ocn,
                                   listed_since, absent_since, removed_since, removal_order
  rmd:history:<rmd_number> LIST    JSON events (listed, missing from export, removed, rollback)
  rmd:by_frn, rmd:by_ocn   HASH    FRN (and other FRNs) / OCN -> rmd_number
An import writes the new snapshot under a new version first, then switches
`rmd:current`, the filer statuses and every tied `provider:<id>`
rmd_status/rmd_order/rmd_since in one MULTI/EXEC: a failed import leaves
the previous snapshot in force; `rmd rollback` reverses the last one.

Every import (rmd, nanpa, dno, traceback) is all-or-nothing: a file with a
bad row changes nothing (exit 2, each bad row printed as `FILE:LINE: column
'X': ...`) unless `--skip-bad-rows`. `rmd import` and `nanpa import` also
refuse a file that would drop more than `--max-removed-share` (config
`[imports] max_removed_share`, default 5%) of the entries in force, or that
has far fewer rows, unless `--accept-removals`; `--dry-run` shows the diff
and exits as the import would. The NANPA set in force before an import is
kept as `nanpa:npa:prev` / `nanpa:nxx:prev` for `nanpa rollback`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

from redis.exceptions import RedisError, WatchError

from proxy.records import export as export_records
from proxy.records import summary as records_summary
from proxy.store import SnapshotStore, StoreError, _client
from rules import dno as rdno
from rules import nanpa as rnanpa
from rules import notices as rnotices
from rules import rmd as rrmd
from rules import traceback as rtraceback
from rules.engine import decide, explain
from rules.errors import RowError
from rules.facts import CallFacts
from rules.imports import DEFAULT_MAX_REMOVED_SHARE, bad_rows_message, drop_guard
from rules.numbers import normalise

__all__ = ["AdminError", "add_subcommands"]

Handler = Callable[[argparse.Namespace, str, str, Callable[[], float]], int]
Job = Callable[[argparse.Namespace, Any, str, Callable[[], float]], Awaitable[int]]


class AdminError(ValueError):
    """Bad input: printed as one line, exit code 2."""


def _iso(ts: float) -> str:
    return rnotices.epoch_to_iso(ts)


def _when(text: str, what: str) -> float:
    try:
        return rnotices.parse_date(text).timestamp()
    except ValueError:
        raise AdminError(f"{what}: not a date: {text!r}") from None


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise AdminError(f"{path}: {exc.strerror or exc}") from None


def _row_errors(path: str, errors: list[RowError]) -> None:
    for e in errors:
        col = f" column {e.column!r}:" if e.column else ""
        print(f"{path}:{e.line}:{col} {e.message}", file=sys.stderr)


def _wrap(job: Job) -> Handler:
    def handler(
        args: argparse.Namespace, redis_url: str, prefix: str, now: Callable[[], float]
    ) -> int:
        async def main() -> int:
            r = _client(redis_url)
            try:
                return await job(args, r, prefix, now)
            finally:
                await r.aclose()

        try:
            return asyncio.run(main())
        except (AdminError, StoreError) as exc:
            print(f"sipscreen: error: {exc}", file=sys.stderr)
            return 2
        except WatchError:
            print("sipscreen: error: the data changed meanwhile; nothing written", file=sys.stderr)
            return 2
        except (RedisError, OSError) as exc:
            print(f"sipscreen: Redis at {redis_url} failed: {exc}", file=sys.stderr)
            return 1

    return handler


def _store(r: Any, prefix: str, now: Callable[[], float]) -> SnapshotStore:
    url = "redis://"  # not used: _data is set to the open client
    s = SnapshotStore(url, prefix, emergency=frozenset({"911", "933"}), k4_deadline="report")
    s.clock = now
    s._data = r
    return s


def _meta(args: argparse.Namespace) -> dict[str, str]:
    out = {"why": getattr(args, "why", None) or "", "by": getattr(args, "by", None) or ""}
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


async def _check(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    caller = normalise(args.caller)
    if caller is None:
        raise AdminError(f"--caller: not a phone number: {args.caller!r}")
    callee = normalise(args.callee) if args.callee else None
    at = _when(args.at, "--at") if args.at else now()
    provider = args.provider
    if provider is None and args.source and getattr(args, "trunks", None) is not None:
        provider = args.trunks.lookup(args.source)
    store = _store(r, prefix, now)
    snap = await store.load_full()
    if args.at:  # 47 CFR 64.6305(g) as it stood that day (versioned RMD snapshots)
        await _rmd_at(r, prefix, snap, args.at, at)
    if args.k4_deadline:
        snap.k4_deadline = args.k4_deadline
    facts = CallFacts(
        caller=caller,
        callee=callee,
        provider=provider,
        source_ip=args.source or "",
        call_id="check",
    )
    checks = explain(snap, facts, at)
    verdict = decide(snap, facts, at)
    if args.json:
        print(
            json.dumps(
                {
                    "caller": caller,
                    "callee": callee,
                    "provider": provider,
                    "at": _iso(at),
                    "snapshot_version": snap.version,
                    "checks": [
                        {"rule": c.rule.label, "matched": c.matched, "why": c.why} for c in checks
                    ],
                    "verdict": {
                        "blocked": verdict.blocked,
                        "rule": verdict.rule.label,
                        "citation": verdict.rule.citation,
                        "reason": verdict.reason,
                        "would_block": verdict.would_block.label if verdict.would_block else None,
                    },
                },
                indent=2,
            )
        )
        return 0
    print(f"caller {caller}  callee {callee or '-'}  provider {provider or '-'}  at {_iso(at)}")
    print(f"snapshot {snap.version}")
    for c in checks:
        mark = "MATCH" if c.matched else "  -  "
        print(f"  [{mark}] {c.rule.label:<18} {c.rule.citation:<22} {c.why}")
    word = "BLOCKED" if verdict.blocked else "ALLOWED"
    print(f"verdict: {word} by {verdict.rule.label} ({verdict.rule.citation}): {verdict.reason}")
    if verdict.would_block is not None:
        print(f"would block: {verdict.would_block.label} ({verdict.would_block.citation})")
    return 0


# ---------------------------------------------------------------------------
# rmd
# ---------------------------------------------------------------------------


async def _scan(r: Any, pattern: str) -> list[str]:
    return [k async for k in r.scan_iter(match=pattern, count=1000)]


def _day(text: str, what: str) -> str:
    """ISO date of a CLI date: a bare date as given, an instant's US Eastern date."""
    try:
        when = rnotices.parse_when(text)
    except ValueError:
        raise AdminError(f"{what}: not a date: {text!r}") from None
    if isinstance(when, dt.datetime):
        return rnotices.eastern_date(when).isoformat()
    return when.isoformat()


def _today(now: Callable[[], float]) -> str:
    return rnotices.eastern_date(dt.datetime.fromtimestamp(now(), dt.UTC)).isoformat()


def _max_share(args: argparse.Namespace) -> float:
    share = getattr(args, "max_removed_share", None)
    return DEFAULT_MAX_REMOVED_SHARE if share is None else float(share)


def _share_arg(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 0.05 or 5%)") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1 (or 0%..100%), got {text!r}")
    return v


def _bad_rows(path: str, errors: list[RowError], args: argparse.Namespace) -> None:
    """Print each bad row; refuse the whole file unless --skip-bad-rows."""
    _row_errors(path, errors)
    if errors and not getattr(args, "skip_bad_rows", False):
        if getattr(args, "dry_run", False):
            print(f"dry run: {bad_rows_message(path, errors)}")
            return
        raise AdminError(bad_rows_message(path, errors))


def _refused(args: argparse.Namespace, errors: list[RowError], why: str | None) -> bool:
    """Would the import (or the one a dry run shows) be refused?"""
    bad = bool(errors) and not getattr(args, "skip_bad_rows", False)
    return bad or (why is not None and not getattr(args, "accept_removals", False))


def _version_seq(version: str) -> tuple[str, int]:
    # "2025-09-01.3" -> ("2025-09-01", 3); a version of the old scheme -> (v, 0).
    day, _, seq = version.rpartition(".")
    return (day, int(seq)) if seq.isdigit() and day else (version, 0)


def _as_of_score(day: str) -> int:
    return int(day.replace("-", ""))  # 2025-09-01 -> 20250901: readable and ordered


async def _hgetall_many(r: Any, keys: list[str]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i in range(0, len(keys), 1000):
        async with r.pipeline(transaction=False) as p:
            for k in keys[i : i + 1000]:
                p.hgetall(k)
            out.extend(await p.execute())
    return out


async def _filers(r: Any, prefix: str, nums: list[str]) -> dict[str, dict[str, str]]:
    """rmd:filer:<num> of each number that has one."""
    hashes = await _hgetall_many(r, [prefix + f"rmd:filer:{n}" for n in nums])
    return {n: h for n, h in zip(nums, hashes, strict=True) if h}


async def _providers(r: Any, prefix: str) -> list[tuple[str, dict[str, str]]]:
    keys = [
        k
        for k in sorted(await _scan(r, prefix + "provider:*"))
        if k.count(":") == prefix.count(":") + 1
    ]
    return list(zip(keys, await _hgetall_many(r, keys), strict=True))


def _filer_num(h: Mapping[str, str], by_frn: Mapping[str, str], by_ocn: Mapping[str, str]) -> str:
    """The RMD number a provider hash is tied to: its own, else by FRN, else by OCN."""
    return (
        h.get("rmd_number", "")
        or (by_frn.get(h["frn"], "") if h.get("frn") else "")
        or (by_ocn.get(h["ocn"], "") if h.get("ocn") else "")
    )


def _since(filer: Mapping[str, str]) -> str:
    status = filer.get("status", "")
    return {
        rrmd.REMOVED: filer.get("removed_since", ""),
        rrmd.ABSENT: filer.get("absent_since", ""),
        rrmd.LISTED: filer.get("listed_since", ""),
    }.get(status, "")


def _provider_rmd(filer: Mapping[str, str] | None, has_snapshot: bool) -> dict[str, str]:
    """rmd_status / rmd_order / rmd_since of a provider tied to ``filer``."""
    if not has_snapshot:
        return {"rmd_status": "unknown", "rmd_order": "", "rmd_since": ""}
    if not filer:
        return {"rmd_status": rrmd.NOT_LISTED, "rmd_order": "", "rmd_since": ""}
    status = filer.get("status", rrmd.LISTED)
    order = filer.get("removal_order", "") if status == rrmd.REMOVED else ""
    if status == rrmd.REMOVED and not order:
        # Written before absent and removed were told apart: missing from an
        # export, no order recorded.
        return {"rmd_status": rrmd.ABSENT, "rmd_order": "", "rmd_since": _since(filer)}
    return {"rmd_status": status, "rmd_order": order, "rmd_since": _since(filer)}


async def _provider_changes(
    r: Any,
    prefix: str,
    filers: Mapping[str, Mapping[str, str] | None],
    by_frn: Mapping[str, str],
    by_ocn: Mapping[str, str],
    has_snapshot: bool,
) -> list[tuple[str, dict[str, str], str]]:
    """(key, fields to write, description) of each provider whose RMD fields change.

    ``filers`` holds the filer hashes as they will be (None: deleted); a
    provider tied to another number reads it from Redis.
    """
    out: list[tuple[str, dict[str, str], str]] = []
    provs = await _providers(r, prefix)
    nums = [_filer_num(h, by_frn, by_ocn) for _, h in provs]
    more = await _filers(r, prefix, sorted({n for n in nums if n and n not in filers}))
    for (key, h), num in zip(provs, nums, strict=True):
        if not (h.get("rmd_number") or h.get("frn") or h.get("ocn")):
            continue  # not tied to an RMD identity: its rmd_status is the operator's
        filer = (filers[num] if num in filers else more.get(num)) if num else None
        want = _provider_rmd(filer, has_snapshot)
        fields = {k: v for k, v in want.items() if h.get(k, "") != v}
        if fields:
            was = h.get("rmd_status", "-")
            pid = key[len(prefix) + len("provider:") :]
            out.append((key, fields, f"provider:{pid}: {was} -> {want['rmd_status']}"))
    return out


async def _filer_status(r: Any, prefix: str, h: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """RMD fields of a provider hash (for `provider set`) and its RMD number."""
    by_frn = {h["frn"]: await r.hget(prefix + "rmd:by_frn", h["frn"]) or ""} if h.get("frn") else {}
    by_ocn = {h["ocn"]: await r.hget(prefix + "rmd:by_ocn", h["ocn"]) or ""} if h.get("ocn") else {}
    num = _filer_num(h, by_frn, by_ocn)
    filer = await r.hgetall(prefix + f"rmd:filer:{num}") if num else {}
    # 47 CFR 64.6305(g): a provider absent from the RMD is "not listed" once
    # an RMD snapshot exists to compare with.
    has = bool(await r.exists(prefix + "rmd:current"))
    return _provider_rmd(filer, has), num


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() and total:
        width = 30
        fill = width * done // total
        print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


async def _load_rmd_snapshot(r: Any, prefix: str, version: str) -> dict[str, rrmd.Filer]:
    old: dict[str, rrmd.Filer] = {}
    if version:
        for num, js in (await r.hgetall(prefix + f"rmd:snap:{version}")).items():
            old[num] = rrmd.from_record(json.loads(js))
    return old


async def _still_current(tx: Any, prefix: str, version: str) -> None:
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


async def _rmd_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    path = args.file
    filers, errors = rrmd.parse_rmd_csv(_read(path))
    _bad_rows(path, errors, args)
    if not filers:
        raise AdminError(f"{path}: no valid filer rows; previous RMD snapshot kept")
    new = rrmd.index_filers(filers)
    # The snapshot describes the database as of its newest change, not the
    # day it was downloaded or imported.
    if args.as_of:
        as_of, source = _day(args.as_of, "--as-of"), "--as-of"
    else:
        as_of, source = rrmd.as_of_date(filers), "newest last_updated"
    if not as_of:
        as_of, source = _today(now), "import day (the file has no last_updated; see --as-of)"
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
    why = drop_guard("filers", len(old), len(new), len(diff.gone), _max_share(args))

    # The filer hashes as they will be after this import (the version is
    # numbered once the import is sure to happen).
    t = now()
    nums = sorted(set(new) | set(old))
    current = await _filers(r, prefix, nums)
    states: dict[str, dict[str, str]] = {}
    events: list[tuple[str, str]] = []  # (rmd_number, event)
    for num, f in new.items():
        cur = current.get(num, {})
        st = {**cur, "name": f.business_name, "frn": f.frn, "ocn": f.ocn}
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
    provs = await _provider_changes(
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
    if why is not None:
        if args.dry_run:
            print(f"dry run: the import would be refused: {path}: {why}")
        elif not args.accept_removals:
            raise AdminError(
                f"{path}: {why}; nothing imported (check the download; --accept-removals "
                "imports it anyway)"
            )
        else:
            print(f"accepted (--accept-removals): {why}")
    if args.dry_run:
        return 2 if _refused(args, errors, why) else 0

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
        "imported": _iso(t),
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
        tx.hset(prefix + f"rmd:meta:{version}", mapping=cast(Any, meta))
        if undo:
            tx.hset(prefix + f"rmd:undo:{version}", mapping=cast(Any, undo))
        tx.zadd(prefix + "rmd:versions", {version: _as_of_score(as_of)})
        tx.set(prefix + "rmd:current", version)
        if by_frn:
            tx.hset(prefix + "rmd:by_frn", mapping=cast(Any, by_frn))
        if by_ocn:
            tx.hset(prefix + "rmd:by_ocn", mapping=cast(Any, by_ocn))
        for num, st in states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            tx.hset(fk, mapping=cast(Any, st))
        for num, ev in events:
            tx.rpush(prefix + f"rmd:history:{num}", _event(as_of, ev, version=version))
        for key, fields, _ in provs:
            tx.hset(key, mapping=cast(Any, fields))  # 47 CFR 64.6305(g)
        try:
            await tx.execute()
        except WatchError:
            await r.delete(snap_key)
            raise
    print(f"in force: {version} (undo: sipscreen rmd rollback)")
    return 0


async def _rmd_rollback(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    version = await r.get(prefix + "rmd:current") or ""
    if not version:
        raise AdminError("no RMD snapshot in force; nothing to roll back")
    meta = await r.hgetall(prefix + f"rmd:meta:{version}")
    previous = meta.get("previous", "")
    if not previous:
        raise AdminError(f"{version}: no earlier RMD snapshot recorded to restore")
    undo = await r.hgetall(prefix + f"rmd:undo:{version}")
    current = await _filers(r, prefix, sorted(undo))
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
    provs = await _provider_changes(r, prefix, states, by_frn, by_ocn, has_snapshot=True)
    day = _today(now)
    async with r.pipeline(transaction=True) as tx:
        await _still_current(tx, prefix, version)
        for num, st in states.items():
            fk = prefix + f"rmd:filer:{num}"
            tx.delete(fk)
            if st:
                tx.hset(fk, mapping=cast(Any, st))
            tx.rpush(
                prefix + f"rmd:history:{num}",
                _event(day, "import rolled back", version=version, restored=previous),
            )
        for key, fields, _ in provs:
            tx.hset(key, mapping=cast(Any, fields))
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


async def _rmd_remove(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    num = args.rmd_number or ""
    if not num and args.frn:
        num = await r.hget(prefix + "rmd:by_frn", args.frn) or ""
        if not num:
            raise AdminError(f"--frn {args.frn}: no RMD filer with this FRN; use --rmd-number")
    norm = rrmd.normalise_rmd_number(num)
    if norm is None:
        raise AdminError(f"--rmd-number: not an RMD number: {num!r}")
    day = _day(args.date, "--date") if args.date else _today(now)
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
    provs = await _provider_changes(r, prefix, {norm: st}, by_frn, by_ocn, has_snapshot=has)
    async with r.pipeline(transaction=True) as tx:
        tx.hset(fk, mapping=cast(Any, st))
        tx.rpush(prefix + f"rmd:history:{norm}", _event(day, "removed", order=args.order))
        for key, fields, _ in provs:
            tx.hset(key, mapping=cast(Any, fields))  # 47 CFR 64.6305(g)
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


async def _rmd_versions(r: Any, prefix: str) -> int:
    current = await r.get(prefix + "rmd:current") or ""
    versions = await r.zrange(prefix + "rmd:versions", 0, -1)
    if not versions:
        print("no RMD snapshot imported")
        return 0
    for v in sorted(versions, key=_version_seq):
        m = await r.hgetall(prefix + f"rmd:meta:{v}")
        mark = "*" if v == current else " "
        print(
            f"{mark} {v}  as of {m.get('as_of', '?')}  {m.get('filers', '?')} filers  "
            f"imported {m.get('imported', '?')}  {m.get('file', '')}"
        )
    return 0


async def _rmd_status(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
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


async def _rmd_at(r: Any, prefix: str, snap: Any, at_text: str, at: float) -> None:
    """Set each provider's RMD status in ``snap`` to what it was on the day of
    ``at`` (`check --at`): 47 CFR 64.6305(g) as it stood then, from the
    snapshot in force that day (newest as-of on or before it) and the removal
    orders dated on or before it. No snapshot that old: status unknown."""
    day = _day(at_text, "--at")
    rows = await r.zrangebyscore(prefix + "rmd:versions", 0, _as_of_score(day), withscores=True)
    versions = sorted((str(v) for v, _ in rows), key=_version_seq)
    meta = await _hgetall_many(r, [prefix + f"rmd:meta:{v}" for v in versions])
    as_of = [m.get("as_of") or _version_seq(v)[0] for v, m in zip(versions, meta, strict=True)]
    by_frn = await r.hgetall(prefix + "rmd:by_frn")
    by_ocn = await r.hgetall(prefix + "rmd:by_ocn")
    for pid, p in list(snap.providers.items()):
        h = {"rmd_number": p.rmd_number, "frn": p.frn, "ocn": p.ocn}
        if not (p.rmd_number or p.frn or p.ocn):
            continue
        num = _filer_num(h, by_frn, by_ocn)
        filer = await r.hgetall(prefix + f"rmd:filer:{num}") if num else {}
        listed = seen = False
        listed_since = absent_since = ""
        for v, a in zip(versions, as_of, strict=True):
            present = bool(num) and bool(await r.hexists(prefix + f"rmd:snap:{v}", num))
            if present and not listed:
                listed_since = a
            if not present and listed:
                absent_since = a
            listed, seen = present, seen or present
        order = filer.get("removal_order", "")
        if order and filer.get("removed_since", "") > day:
            order = ""  # ordered after that day
        status = rrmd.filer_status(listed, seen, order) if versions else "unknown"
        since = {
            rrmd.REMOVED: filer.get("removed_since", ""),
            rrmd.ABSENT: absent_since,
            rrmd.LISTED: listed_since,
        }.get(status, "")
        snap.providers[pid] = dataclasses.replace(
            p, rmd_status=status, rmd_order=order if status == rrmd.REMOVED else "", rmd_since=since
        )
    base = snap.version.split("+rmd:")[0]
    snap.version = base + (f"+rmd:{versions[-1]}" if versions else "+rmd:none-by-" + day)


# ---------------------------------------------------------------------------
# provider, notice, traceback
# ---------------------------------------------------------------------------


async def _provider_set(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    fields: dict[str, str] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.rmd_number is not None:
        n = rrmd.normalise_rmd_number(args.rmd_number)
        if n is None:
            raise AdminError(f"--rmd-number: not an RMD number: {args.rmd_number!r}")
        fields["rmd_number"] = n
    if args.frn is not None:
        f = rrmd.normalise_frn(args.frn)
        if f is None:
            raise AdminError(f"--frn: not a 10-digit FRN: {args.frn!r}")
        fields["frn"] = f
    if args.ocn is not None:
        fields["ocn"] = args.ocn.upper()
    if args.monitor_only is not None:
        fields["monitor_only"] = "1" if args.monitor_only == "yes" else "0"
    cur = await r.hgetall(prefix + f"provider:{args.id}")
    merged = {**cur, **fields}
    rmd_fields, _ = await _filer_status(r, prefix, merged)
    if merged.get("rmd_number") or merged.get("frn") or merged.get("ocn"):
        fields.update(rmd_fields)
    elif "rmd_status" not in cur:
        fields["rmd_status"] = "unknown"
    store = _store(r, prefix, now)
    written = await store.set_provider(args.id, **fields)
    print(f"provider:{args.id} " + " ".join(f"{k}={v}" for k, v in sorted(written.items())))
    return 0


async def _notice_add(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    letter_name = ""
    issued: dt.date | dt.datetime
    if args.letter:
        text = _read(args.letter)
        letter_name = Path(args.letter).name
        if not args.issued:
            try:
                issued = rnotices.extract_letter_facts(text).issued
            except ValueError as exc:
                raise AdminError(f"{args.letter}: {exc}") from None
    if args.issued:
        try:
            issued = rnotices.parse_when(args.issued)
        except ValueError:
            raise AdminError(f"--issued: not a date: {args.issued!r}") from None
    elif not args.letter:
        raise AdminError("--issued DATE or --letter FILE is required")
    day = issued.strftime("%Y%m%d")
    nid = args.id or f"{args.kind}-{args.provider}-{day}"
    campaigns = [c for c in (args.campaign or [])]
    for c in campaigns:
        try:
            from rules.snapshot import parse_campaigns

            parse_campaigns(c)
        except ValueError as exc:
            raise AdminError(f"--campaign: {exc}") from None
    n = rnotices.new_notice(nid, args.provider, args.kind, issued, campaigns, letter_name)
    await r.hset(prefix + f"notice:{nid}", mapping=cast(Any, rnotices.notice_to_record(n)))
    print(f"notice {nid}: {args.kind} for provider {args.provider}, issued {_iso(n.issued)}")
    # 47 CFR 64.1200(k)(4): 48 hours to mitigate, 14 days to report.
    print(f"  mitigation due {_iso(n.mitigation_due)}")
    print(f"  report due     {_iso(n.report_due)}")
    return 0


async def _notice_set(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    key = prefix + f"notice:{args.id}"
    if not await r.exists(key):
        raise AdminError(f"notice {args.id}: not found")
    fields = {}
    for name in ("mitigated", "reported", "fcc_notified"):
        v = getattr(args, name, None)
        if v:
            fields[name] = _iso(_when(v, f"--{name.replace('_', '-')}"))
    if not fields:
        raise AdminError("give --mitigated DATE or --reported DATE")
    await r.hset(key, mapping=cast(Any, fields))
    print(f"notice {args.id}: " + " ".join(f"{k}={v}" for k, v in fields.items()))
    return 0


async def _notices(r: Any, prefix: str, provider: str | None) -> list[Any]:
    out = []
    for key in sorted(await _scan(r, prefix + "notice:*")):
        nid = key[len(prefix) + len("notice:") :]
        if ":" in nid:
            continue
        h = await r.hgetall(key)
        try:
            n = rnotices.notice_from_record(h, nid)
        except ValueError:
            continue
        if provider is None or n.provider == provider:
            out.append(n)
    return out


async def _notice_list(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    for n in await _notices(r, prefix, args.provider):
        resp = [
            f"{k}={_iso(v)}"
            for k, v in (
                ("mitigated", n.mitigated),
                ("reported", n.reported),
                ("fcc_notified", n.fcc_notified),
            )
            if v is not None
        ]
        print(
            f"{n.id}\t{n.kind}\t{n.provider}\tissued {_iso(n.issued)}\t"
            f"mitigation due {_iso(n.mitigation_due)}\treport due {_iso(n.report_due)}\t"
            + (" ".join(resp) or "no response recorded")
        )
    return 0


async def _traceback_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    calls, errors = rtraceback.parse_attachment_a(_read(args.file))
    _bad_rows(args.file, errors, args)
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


# ---------------------------------------------------------------------------
# dno, nanpa: atomic replacement of a whole set
# ---------------------------------------------------------------------------


async def _replace_set(r: Any, key: str, members: list[str], keep_previous: bool = False) -> None:
    """Fill ``<key>:import-tmp`` and switch it in with one RENAME.

    ``keep_previous``: the set in force becomes ``<key>:prev`` in the same
    MULTI/EXEC (``nanpa rollback`` swaps them back).
    """
    tmp = f"{key}:import-tmp"
    await r.delete(tmp)
    for i in range(0, len(members), 5000):
        await r.sadd(tmp, *members[i : i + 5000])
    if not members:
        await r.delete(key)
        return
    async with r.pipeline(transaction=True) as tx:
        if keep_previous:
            if await r.exists(key):
                tx.rename(key, f"{key}:prev")
            else:
                tx.delete(f"{key}:prev")
        tx.rename(tmp, key)  # atomic switch
        await tx.execute()


async def _dno_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    entries, errors = rdno.parse_dno_list(_read(args.file))
    _bad_rows(args.file, errors, args)
    if not entries:
        raise AdminError(f"{args.file}: no valid numbers; dno:caller unchanged")
    await _replace_set(r, prefix + "dno:caller", [e for e, _ in entries])
    skipped = f" ({len(errors)} bad lines skipped)" if errors else ""
    print(f"dno:caller: {len(entries)} numbers{skipped}")
    return 0


def _nanpa_key(args: argparse.Namespace) -> tuple[str, str]:
    return ("nanpa:npa", "area codes") if args.npa else ("nanpa:nxx", "NPA-NXX codes")


async def _nanpa_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    # 47 CFR 64.1200(o): with NANPA data loaded, a caller ID in a code missing
    # from it is "unallocated" and blocked: a partial file blocks lawful
    # callers, so the same guard, dry run and undo as the RMD apply.
    if args.npa:
        codes, errors = rnanpa.parse_npa_file(_read(args.npa))
        path = args.npa
    else:
        codes, errors = rnanpa.parse_co_codes(_read(args.co))
        path = args.co
    key, what = _nanpa_key(args)
    _bad_rows(path, errors, args)
    if not codes:
        raise AdminError(f"{path}: no valid codes; {key} unchanged")
    old = set(await r.smembers(prefix + key))
    dropped, added = sorted(old - codes), sorted(codes - old)
    why = drop_guard(what, len(old), len(codes), len(dropped), _max_share(args))
    if args.dry_run:
        print("dry run: nothing written")
    skipped = f"; {len(errors)} bad rows skipped" if errors and args.skip_bad_rows else ""
    print(
        f"{key}: {len(codes)} {what} ({len(added)} added, {len(dropped)} dropped, "
        f"{len(old)} in force){skipped}"
    )
    for title, items in (("dropped", dropped), ("added", added)):
        if items:
            more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
            print(f"  {title}: {' '.join(items[:10])}{more}")
    if why is not None:
        if args.dry_run:
            print(f"dry run: the import would be refused: {path}: {why}")
        elif not args.accept_removals:
            raise AdminError(
                f"{path}: {why}; nothing imported (check the file; --accept-removals "
                "imports it anyway)"
            )
        else:
            print(f"accepted (--accept-removals): {why}")
    if args.dry_run:
        return 2 if _refused(args, errors, why) else 0
    await _replace_set(r, prefix + key, sorted(codes), keep_previous=True)
    print(f"in force (undo: sipscreen nanpa rollback {'--npa' if args.npa else '--co'})")
    return 0


async def _nanpa_rollback(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    key, what = _nanpa_key(args)
    k, prev = prefix + key, prefix + key + ":prev"
    if not await r.exists(prev):
        raise AdminError(f"{key}: no previous set recorded; nothing to roll back")
    tmp = k + ":rollback-tmp"
    async with r.pipeline(transaction=True) as tx:
        # A swap: rolling back twice re-applies the import.
        if await r.exists(k):
            tx.rename(k, tmp)
            tx.rename(prev, k)
            tx.rename(tmp, prev)
        else:
            tx.rename(prev, k)
        await tx.execute()
    print(f"{key}: previous set restored ({await r.scard(k)} {what})")
    return 0


# ---------------------------------------------------------------------------
# block / unblock / allow, records, report
# ---------------------------------------------------------------------------


async def _block(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    store = _store(r, prefix, now)
    remove = args.command == "unblock"
    if args.kind == "caller":
        if remove:
            done = await store.unblock_caller(args.values)
        else:
            done = await store.block_caller(args.values, _meta(args))
    elif args.kind == "prefix":
        done = await store.block_prefix(args.values, _meta(args), remove=remove)
    else:
        done = await store.block_provider(args.values, _meta(args), remove=remove)
    verb = "unblocked" if remove else "blocked"
    print(f"{verb} {args.kind}: {' '.join(done)}")
    return 0


async def _allow(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    store = _store(r, prefix, now)
    until = _when(args.until, "--until") if args.until else None
    n = await store.allow_caller(args.number, until, _meta(args))
    print(f"allowed caller {n}" + (f" until {_iso(until)}" if until else ""))
    return 0


async def _records_export(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    since = _when(args.since, "--since") if args.since else None
    until = _when(args.until, "--until") if args.until else None
    caller = normalise(args.caller) if args.caller else None
    if args.caller and caller is None:
        raise AdminError(f"--caller: not a phone number: {args.caller!r}")
    out = sys.stdout
    async for line in export_records(
        r, prefix, since, until, caller, args.provider, args.rule, args.format
    ):
        out.write(line)
    return 0


async def _report(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    pid = args.id
    h = await r.hgetall(prefix + f"provider:{pid}")
    if not h:
        raise AdminError(f"provider {pid}: not found")
    _, num = await _filer_status(r, prefix, h)  # tied by RMD number, FRN or OCN
    filer = await r.hgetall(prefix + f"rmd:filer:{num}") if num else {}
    history = (
        [json.loads(x) for x in await r.lrange(prefix + f"rmd:history:{num}", 0, -1)] if num else []
    )
    notices = await _notices(r, prefix, pid)
    traces: dict[str, Any] = {}
    for owner in [pid, *(n.id for n in notices)]:
        rows = [json.loads(x) for x in await r.lrange(prefix + f"traceback:{owner}", 0, -1)]
        if rows:
            camp: dict[str, int] = {}
            for row in rows:
                camp[row["campaign"]] = camp.get(row["campaign"], 0) + 1
            named = {x["customer"] for x in rows} - {rtraceback.NO_RESPONSE}
            traces[owner] = {
                "rows": len(rows),
                "customers": len(named),
                "campaigns": camp,
                "first": min(x["call_time"] for x in rows),
                "last": max(x["call_time"] for x in rows),
            }
    counts = await records_summary(r, prefix, pid)
    t = now()
    basis: list[str] = []
    status = h.get("rmd_status", "unknown")
    order, since = h.get("rmd_order", ""), h.get("rmd_since", "")
    gate = (
        "intermediate and terminating providers must not accept its traffic directly "
        "(47 CFR 64.6305(g))."
    )
    if status == "removed":
        basis.append(
            "The provider was removed from the Robocall Mitigation Database"
            + (f" by order {order}" if order else " (no order named)")
            + (f" on {since}" if since else "")
            + f"; {gate}"
        )
    elif status == "absent":
        basis.append(
            "The provider's filing is absent from the Robocall Mitigation Database export"
            + (f" (missing since the export of {since})" if since else "")
            + f"; no removal order is recorded; {gate}"
        )
    elif status == "not_listed":
        basis.append(f"The provider has no filing in the Robocall Mitigation Database; {gate}")
    for n in notices:
        if n.kind == "k4":
            late = []
            if n.mitigated is None and t > n.mitigation_due:
                late.append(f"no mitigation recorded by {_iso(n.mitigation_due)}")
            if n.reported is None and t > n.report_due:
                late.append(f"no report recorded by {_iso(n.report_due)}")
            if late:
                basis.append(
                    f"Notice {n.id} (issued {_iso(n.issued)}): {'; '.join(late)}; downstream "
                    "providers may block all of its traffic (47 CFR 64.1200(k)(4))"
                    + (
                        f", FCC notified {_iso(n.fcc_notified)}."
                        if n.fcc_notified
                        else "; the FCC must be notified first."
                    )
                )
        else:
            basis.append(
                f"Notice {n.id} identifies campaigns {', '.join(n.campaigns) or '(none)'}: "
                "traffic substantially similar is blocked (47 CFR 64.1200(n)(2))."
            )
    if not basis:
        basis.append("No regulatory basis for blocking this provider's traffic is recorded.")
    doc = {
        "provider": pid,
        "name": h.get("name", ""),
        "rmd_number": num,
        "frn": h.get("frn", ""),
        "ocn": h.get("ocn", ""),
        "rmd_status": status,
        "rmd_order": order,
        "rmd_since": since,
        "rmd_filer": filer,
        "rmd_history": history,
        "notices": [
            {
                k: (_iso(v) if isinstance(v, float) else v)
                for k, v in rnotices.notice_to_record(n).items()
            }
            for n in notices
        ],
        "traceback": traces,
        "blocked_by_day_rule": [
            {"day": d, "rule": rule, "action": a, "count": c}
            for (d, rule, a), c in sorted(counts.items())
        ],
        "basis": basis,
        "generated": _iso(t),
    }
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    lines = [
        f"# Provider report: {doc['name'] or pid} ({pid})",
        "",
        f"Generated {doc['generated']}.",
    ]
    lines += ["", "## Identity", ""]
    for k in ("rmd_number", "frn", "ocn", "rmd_status", "rmd_order", "rmd_since"):
        lines.append(f"- {k}: {doc[k] or '-'}")
    for ev in history:
        lines.append(
            f"- RMD {ev['date']}: {ev['event']} {ev.get('order') or ev.get('version', '')}"
        )
    lines += ["", "## Notices", ""]
    for n in notices:
        lines.append(
            f"- {n.id} ({n.kind}) issued {_iso(n.issued)}; mitigation due "
            f"{_iso(n.mitigation_due)}; report due {_iso(n.report_due)}; mitigated "
            f"{_iso(n.mitigated) if n.mitigated else 'not recorded'}; reported "
            f"{_iso(n.reported) if n.reported else 'not recorded'}; FCC notified "
            f"{_iso(n.fcc_notified) if n.fcc_notified else 'no'}"
        )
    if not notices:
        lines.append("- none")
    lines += ["", "## Traceback evidence", ""]
    for owner, tr in traces.items():
        lines.append(
            f"- {owner}: {tr['rows']} traced calls, {tr['customers']} customers, "
            f"{tr['first']} to {tr['last']}; campaigns: "
            + ", ".join(f"{k} ({v})" for k, v in tr["campaigns"].items())
        )
    if not traces:
        lines.append("- none")
    lines += [
        "",
        "## Decisions by day and rule",
        "",
        "| day | rule | action | calls |",
        "|---|---|---|---|",
    ]
    for (d, rule, a), c in sorted(counts.items()):
        lines.append(f"| {d} | {rule} | {a} | {c} |")
    lines += ["", "## Basis", ""]
    lines += [f"- {b}" for b in basis]
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------


def _import_flags(p: argparse.ArgumentParser, guard: bool) -> None:
    """--skip-bad-rows on every import; the drop guard's flags where it applies."""
    p.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="import the good rows of a file with bad ones (default: import nothing)",
    )
    if not guard:
        return
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument(
        "--accept-removals",
        action="store_true",
        help="import even if it drops more than --max-removed-share of the entries in force",
    )
    p.add_argument(
        "--max-removed-share",
        type=_share_arg,
        metavar="SHARE",
        help="refuse an import dropping more than this share (default: config "
        f"[imports] max_removed_share, {DEFAULT_MAX_REMOVED_SHARE:g})",
    )


def add_subcommands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the data subcommands on the `sipscreen` parser."""
    p = sub.add_parser("check", help="explain the decision for one call")
    p.add_argument("--caller", required=True)
    p.add_argument("--callee")
    p.add_argument("--provider")
    p.add_argument("--source", help="source IP (mapped to a provider by the trunk map)")
    p.add_argument("--at", help="ISO date/time of the call (default now)")
    p.add_argument("--k4-deadline", choices=("report", "mitigation"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_wrap(_check), trunks=None)

    rmd = sub.add_parser("rmd", help="Robocall Mitigation Database snapshots").add_subparsers(
        dest="rmd_command", required=True
    )
    p = rmd.add_parser("import", help="import an RMD CSV export")
    p.add_argument("file")
    p.add_argument("--as-of", help="date the export describes (default: its newest last_updated)")
    _import_flags(p, guard=True)
    p.set_defaults(handler=_wrap(_rmd_import))
    p = rmd.add_parser("rollback", help="restore the RMD snapshot in force before the last import")
    p.set_defaults(handler=_wrap(_rmd_rollback))
    p = rmd.add_parser("remove", help="record an FCC removal order")
    p.add_argument("--order", required=True, help='e.g. "DA 25-694"')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--frn")
    g.add_argument("--rmd-number")
    p.add_argument("--date")
    p.set_defaults(handler=_wrap(_rmd_remove))
    p = rmd.add_parser("status", help="a filer's status and history (no id: the snapshots)")
    p.add_argument("id", nargs="?", help="RMD number, FRN or OCN")
    p.set_defaults(handler=_wrap(_rmd_status))

    prov = sub.add_parser("provider", help="upstream providers").add_subparsers(
        dest="provider_command", required=True
    )
    p = prov.add_parser("set", help="create or update provider:<id>")
    p.add_argument("id")
    p.add_argument("--name")
    p.add_argument("--rmd-number")
    p.add_argument("--frn")
    p.add_argument("--ocn")
    p.add_argument("--monitor-only", choices=("yes", "no"))
    p.set_defaults(handler=_wrap(_provider_set))

    notice = sub.add_parser("notice", help="FCC notices").add_subparsers(
        dest="notice_command", required=True
    )
    p = notice.add_parser("add", help="record a notice and print its deadlines")
    p.add_argument("--provider", required=True)
    p.add_argument("--kind", choices=("k4", "n2"), required=True)
    p.add_argument("--issued")
    p.add_argument("--letter")
    p.add_argument("--campaign", action="append")
    p.add_argument("--id")
    p.set_defaults(handler=_wrap(_notice_add))
    p = notice.add_parser("respond", help="record the provider's response")
    p.add_argument("id")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mitigated")
    g.add_argument("--reported")
    p.set_defaults(handler=_wrap(_notice_set))
    p = notice.add_parser("fcc-notified", help="record that the FCC was notified")
    p.add_argument("id")
    p.add_argument("--date", dest="fcc_notified", required=True)
    p.set_defaults(handler=_wrap(_notice_set))
    p = notice.add_parser("list")
    p.add_argument("--provider")
    p.set_defaults(handler=_wrap(_notice_list))

    tb = sub.add_parser("traceback", help="traceback evidence").add_subparsers(
        dest="traceback_command", required=True
    )
    p = tb.add_parser("import", help="import an Attachment A table")
    p.add_argument("file")
    p.add_argument("--notice")
    p.add_argument("--provider")
    _import_flags(p, guard=False)
    p.set_defaults(handler=_wrap(_traceback_import))

    d = sub.add_parser("dno", help="do-not-originate lists").add_subparsers(
        dest="dno_command", required=True
    )
    p = d.add_parser("import")
    p.add_argument("file")
    _import_flags(p, guard=False)
    p.set_defaults(handler=_wrap(_dno_import))

    n = sub.add_parser("nanpa", help="NANPA assigned codes").add_subparsers(
        dest="nanpa_command", required=True
    )
    p = n.add_parser("import")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa", metavar="FILE", help="NPA database export (npa_report.csv)")
    g.add_argument("--co", metavar="FILE", help="CO code assignments (allutlzd.txt)")
    _import_flags(p, guard=True)
    p.set_defaults(handler=_wrap(_nanpa_import))
    p = n.add_parser("rollback", help="restore the set in force before the last import")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa", action="store_true", help="the area codes (nanpa:npa)")
    g.add_argument("--co", action="store_true", help="the NPA-NXX codes (nanpa:nxx)")
    p.set_defaults(handler=_wrap(_nanpa_rollback))

    for name in ("block", "unblock"):
        p = sub.add_parser(name, help=f"{name} callers, prefixes or providers")
        p.add_argument("kind", choices=("caller", "prefix", "provider"))
        p.add_argument("values", nargs="+")
        p.add_argument("--why")
        p.add_argument("--by")
        p.set_defaults(handler=_wrap(_block))
    a = sub.add_parser("allow", help="allowlist").add_subparsers(dest="allow_kind", required=True)
    p = a.add_parser("caller")
    p.add_argument("number")
    p.add_argument("--until")
    p.add_argument("--why")
    p.add_argument("--by")
    p.set_defaults(handler=_wrap(_allow))

    rec = sub.add_parser("records", help="decision records").add_subparsers(
        dest="records_command", required=True
    )
    p = rec.add_parser("export")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("--caller")
    p.add_argument("--provider")
    p.add_argument("--rule")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.set_defaults(handler=_wrap(_records_export))

    rep = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True
    )
    p = rep.add_parser("provider")
    p.add_argument("id")
    p.add_argument("--format", choices=("md", "json"), default="md")
    p.set_defaults(handler=_wrap(_report))
