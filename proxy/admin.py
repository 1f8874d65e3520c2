"""The data subcommands of the `sipscreen` CLI (everything but `run`).

How this works: `add_subcommands(sub)` registers `check`, `rmd`, `provider`,
`notice`, `traceback`, `dno`, `nanpa`, `block`, `unblock`, `allow`,
`records` and `report`; each sets `args.handler(args, redis_url, prefix,
now) -> int` (proxy/cli.py calls it). A handler runs one asyncio job against
Redis with the pure parsers of `rules/` and returns the exit code: 0 done,
2 bad input (one line naming the file line and field, never a traceback),
1 Redis unreachable.

RMD keys written here (docs/REDIS.md):
  rmd:current            STRING  version id of the snapshot in force
  rmd:versions           ZSET    version id -> import time
  rmd:snap:<version>     HASH    rmd_number -> JSON of the filer (rules.rmd.to_record)
  rmd:filer:<rmd_number> HASH    status (listed/removed), name, frn, ocn,
                                 listed_since, removed_since, removal_order
  rmd:history:<rmd_number> LIST  JSON events (listed, removed, order)
  rmd:by_frn, rmd:by_ocn HASH    FRN / OCN -> rmd_number
An import writes the new snapshot under a new version first, then switches
`rmd:current`, the filer statuses and every tied `provider:<id>` rmd_status
in one MULTI/EXEC: a failed import leaves the previous snapshot in force.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from redis.exceptions import RedisError

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


async def _filer_status(
    r: Any, prefix: str, rmd_number: str, frn: str, ocn: str
) -> tuple[str, str]:
    """(rmd_status, rmd_number) of a provider's RMD identity."""
    num = rmd_number
    if not num and frn:
        num = await r.hget(prefix + "rmd:by_frn", frn) or ""
    if not num and ocn:
        num = await r.hget(prefix + "rmd:by_ocn", ocn) or ""
    if num:
        st = await r.hget(prefix + f"rmd:filer:{num}", "status")
        if st:
            return str(st), num
    # 47 CFR 64.6305(g): a provider absent from the RMD is "not listed" once
    # an RMD snapshot exists to compare with.
    has = await r.exists(prefix + "rmd:current")
    return ("not_listed" if has else "unknown"), num


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() and total:
        width = 30
        fill = width * done // total
        print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total}", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


async def _rmd_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    filers, errors = rrmd.parse_rmd_csv(_read(args.file))
    _row_errors(args.file, errors)
    if not filers:
        raise AdminError(f"{args.file}: no valid filer rows; previous RMD snapshot kept")
    new = rrmd.index_filers(filers)
    old_version = await r.get(prefix + "rmd:current") or ""
    old: dict[str, rrmd.Filer] = {}
    if old_version:
        for num, js in (await r.hgetall(prefix + f"rmd:snap:{old_version}")).items():
            old[num] = rrmd.from_record(json.loads(js))
    t = now()
    seq = await r.incr(prefix + "rmd:seq")
    version = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{seq}"
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
    diff = rrmd.diff_snapshots(old, new)
    today = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")
    # Current filer statuses (a removal order keeps a filer removed).
    orders: dict[str, str] = {}
    for num in set(new) | set(old):
        o = await r.hget(prefix + f"rmd:filer:{num}", "removal_order")
        if o:
            orders[num] = str(o)
    providers = []
    for key in await _scan(r, prefix + "provider:*"):
        if key.count(":") != prefix.count(":") + 1:
            continue
        h = await r.hgetall(key)
        providers.append((key, h))
    by_frn = {f.frn: n for n, f in new.items() if f.frn}
    by_ocn = {f.ocn: n for n, f in new.items() if f.ocn}
    # Identities of filers seen in earlier snapshots too (a gone filer's FRN).
    known_frn = {**(await r.hgetall(prefix + "rmd:by_frn")), **by_frn}
    known_ocn = {**(await r.hgetall(prefix + "rmd:by_ocn")), **by_ocn}
    async with r.pipeline(transaction=True) as tx:
        tx.set(prefix + "rmd:current", version)
        tx.zadd(prefix + "rmd:versions", {version: t})
        if by_frn:
            tx.hset(prefix + "rmd:by_frn", mapping=cast(Any, by_frn))
        if by_ocn:
            tx.hset(prefix + "rmd:by_ocn", mapping=cast(Any, by_ocn))
        for num, f in new.items():
            fk = prefix + f"rmd:filer:{num}"
            status = "removed" if num in orders else "listed"
            tx.hset(
                fk,
                mapping={
                    "status": status,
                    "name": f.business_name,
                    "frn": f.frn,
                    "ocn": f.ocn,
                    "version": version,
                },
            )
            tx.hsetnx(fk, "listed_since", today)
        for f in diff.added:
            tx.rpush(
                prefix + f"rmd:history:{f.rmd_number}",
                json.dumps({"date": today, "event": "listed", "version": version}),
            )
        for f in diff.gone:
            # The export has no removal flag: first missing = removed since.
            fk = prefix + f"rmd:filer:{f.rmd_number}"
            tx.hset(fk, mapping={"status": "removed", "version": version})
            tx.hsetnx(fk, "removed_since", today)
            tx.rpush(
                prefix + f"rmd:history:{f.rmd_number}",
                json.dumps({"date": today, "event": "missing from export", "version": version}),
            )
        changed = []
        for key, h in providers:
            num = h.get("rmd_number", "")
            if not num and h.get("frn"):
                num = known_frn.get(h["frn"], "")
            if not num and h.get("ocn"):
                num = known_ocn.get(h["ocn"], "")
            if not num and not h.get("frn") and not h.get("ocn"):
                continue  # not tied to an RMD identity yet
            if num in new:
                st = "removed" if num in orders else "listed"
            elif num in orders or num in old:
                st = "removed"
            else:
                st = "not_listed"
            if h.get("rmd_status") != st:
                tx.hset(key, "rmd_status", st)
                changed.append(f"{key[len(prefix) :]}: {h.get('rmd_status', '-')} -> {st}")
        await tx.execute()
    print(f"RMD snapshot {version}: {len(new)} filers ({len(errors)} bad rows skipped)")
    print(diff.summary())
    for c in changed:
        print(f"  {c}")
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
    day = (
        dt.datetime.fromtimestamp(_when(args.date, "--date"), dt.UTC).strftime("%Y-%m-%d")
        if args.date
        else dt.datetime.fromtimestamp(now(), dt.UTC).strftime("%Y-%m-%d")
    )
    fk = prefix + f"rmd:filer:{norm}"
    provs = []
    for key in await _scan(r, prefix + "provider:*"):
        h = await r.hgetall(key)
        if h.get("rmd_number") == norm or (args.frn and h.get("frn") == args.frn):
            provs.append(key)
    async with r.pipeline(transaction=True) as tx:
        tx.hset(fk, mapping={"status": "removed", "removal_order": args.order})
        tx.hsetnx(fk, "removed_since", day)
        tx.rpush(
            prefix + f"rmd:history:{norm}",
            json.dumps({"date": day, "event": "removed", "order": args.order}),
        )
        for key in provs:
            tx.hset(key, "rmd_status", "removed")  # 47 CFR 64.6305(g)
        await tx.execute()
    print(f"{norm}: removed by {args.order} on {day}; {len(provs)} provider(s) updated")
    return 0


async def _rmd_status(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    num = args.id
    if not num.upper().startswith("RMD"):
        num = await r.hget(prefix + "rmd:by_frn", num) or await r.hget(prefix + "rmd:by_ocn", num)
        if not num:
            raise AdminError(f"{args.id}: no RMD filer with this FRN/OCN")
    h = await r.hgetall(prefix + f"rmd:filer:{num}")
    if not h:
        raise AdminError(f"{num}: unknown RMD filer")
    print(f"{num} {h.get('name', '')}: {h.get('status')}")
    for k in ("frn", "ocn", "listed_since", "removed_since", "removal_order", "version"):
        if h.get(k):
            print(f"  {k}: {h[k]}")
    for ev in await r.lrange(prefix + f"rmd:history:{num}", 0, -1):
        e = json.loads(ev)
        extra = e.get("order") or e.get("version") or ""
        print(f"  {e['date']} {e['event']} {extra}")
    return 0


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
    status, num = await _filer_status(
        r, prefix, merged.get("rmd_number", ""), merged.get("frn", ""), merged.get("ocn", "")
    )
    if merged.get("rmd_number") or merged.get("frn") or merged.get("ocn"):
        fields["rmd_status"] = status
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
    _row_errors(args.file, errors)
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


async def _replace_set(r: Any, key: str, members: list[str]) -> None:
    tmp = f"{key}:import-tmp"
    await r.delete(tmp)
    for i in range(0, len(members), 5000):
        await r.sadd(tmp, *members[i : i + 5000])
    if members:
        await r.rename(tmp, key)  # atomic switch
    else:
        await r.delete(key)


async def _dno_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    entries, errors = rdno.parse_dno_list(_read(args.file))
    _row_errors(args.file, errors)
    if not entries:
        raise AdminError(f"{args.file}: no valid numbers; dno:caller unchanged")
    await _replace_set(r, prefix + "dno:caller", [e for e, _ in entries])
    print(f"dno:caller: {len(entries)} numbers ({len(errors)} bad lines skipped)")
    return 0


async def _nanpa_import(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    if args.npa:
        codes, errors = rnanpa.parse_npa_file(_read(args.npa))
        path, key = args.npa, "nanpa:npa"
    else:
        codes, errors = rnanpa.parse_co_codes(_read(args.co))
        path, key = args.co, "nanpa:nxx"
    _row_errors(path, errors)
    if not codes:
        raise AdminError(f"{path}: no valid codes; {key} unchanged")
    await _replace_set(r, prefix + key, sorted(codes))
    print(f"{key}: {len(codes)} codes ({len(errors)} bad lines skipped)")
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
    num = h.get("rmd_number", "")
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
    if status in ("removed", "not_listed"):
        basis.append(
            f"The provider is {status.replace('_', ' ')} in the Robocall Mitigation Database; "
            "intermediate and terminating providers must not accept its traffic directly "
            "(47 CFR 64.6305(g))."
        )
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
    for k in ("rmd_number", "frn", "ocn", "rmd_status"):
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


async def _redis_confirm_empty(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    """Accept what Redis holds now under the prefix after the proxy reported
    REDIS DATA LOST (proxy/store.py): a new `confirmed-` generation stamp."""
    import os

    from proxy.store import CONFIRMED, K_GENERATION

    stamp = f"{CONFIRMED}{int(now())}-{os.urandom(4).hex()}"
    await r.set(prefix + K_GENERATION, stamp)
    n = 0
    async for _k in r.scan_iter(match=_glob(prefix) + "*", count=1000):
        n += 1
    print(f"{prefix}{K_GENERATION} = {stamp}: the proxies load what Redis holds ({n} keys)")
    return 0


def _glob(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


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
    p.set_defaults(handler=_wrap(_rmd_import))
    p = rmd.add_parser("remove", help="record an FCC removal order")
    p.add_argument("--order", required=True, help='e.g. "DA 25-694"')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--frn")
    g.add_argument("--rmd-number")
    p.add_argument("--date")
    p.set_defaults(handler=_wrap(_rmd_remove))
    p = rmd.add_parser("status", help="a filer's status and history")
    p.add_argument("id", help="RMD number, FRN or OCN")
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
    p.set_defaults(handler=_wrap(_traceback_import))

    d = sub.add_parser("dno", help="do-not-originate lists").add_subparsers(
        dest="dno_command", required=True
    )
    p = d.add_parser("import")
    p.add_argument("file")
    p.set_defaults(handler=_wrap(_dno_import))

    n = sub.add_parser("nanpa", help="NANPA assigned codes").add_subparsers(
        dest="nanpa_command", required=True
    )
    p = n.add_parser("import")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa")
    g.add_argument("--co")
    p.set_defaults(handler=_wrap(_nanpa_import))

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

    rd = sub.add_parser("redis", help="Redis state").add_subparsers(
        dest="redis_command", required=True
    )
    p = rd.add_parser(
        "confirm-empty",
        help="accept what Redis holds now after a REDIS DATA LOST alarm (restart without data)",
    )
    p.set_defaults(handler=_wrap(_redis_confirm_empty))
