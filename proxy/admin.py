"""The data subcommands of the `sipscreen` CLI (everything but `run`).

How this works: `add_subcommands(sub)` registers `check`, `rmd`, `provider`,
`notice`, `order`, `traceback`, `dno`, `nanpa`, `block`, `unblock`, `allow`,
`records` and `report`; each sets `args.handler(args, redis_url, prefix,
now) -> int` (proxy/cli.py calls it). A handler runs one asyncio job against
Redis with the pure parsers of `rules/` and returns the exit code: 0 done,
2 bad input (one line naming the file line and field, never a traceback),
1 Redis unreachable. `check` differs: 0 allowed, 1 blocked, 2 bad input,
3 Redis unreachable, and it decides with the running proxy's settings (the
config's emergency numbers and callers, unmapped_provider_policy, k4
deadline, trunk map).

Order keys written here (docs/REDIS.md), 47 CFR 64.1200(n)(3):
  order:<id>             HASH    provider, kind (fdo), order ("DA 24-123"),
                                 released (YYYY-MM-DD), status (active/removed),
                                 added_at, added_by, removed_at, removed_reason
  order:history:<id>     LIST    JSON events (added, removed), append-only
`order remove` marks the hash removed and appends to the history: never a DEL.

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
import getpass
import json
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

from redis.exceptions import RedisError, WatchError

from proxy.config import Config
from proxy.records import export as export_records
from proxy.records import summary as records_summary
from proxy.shakenstats import claim_vs_seen, seen_key
from proxy.store.keys import StoreError, valid_prefix
from proxy.store.snapshot_store import SnapshotStore
from proxy.store.state import _client
from rules import dno as rdno
from rules import k4 as rk4
from rules import nanpa as rnanpa
from rules import notices as rnotices
from rules import orders as rorders
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


def _when(text: str, what: str, bound: str = "start") -> float:
    """Every date option goes through here: rules.notices.when_et reads a bare
    date as a day in US Eastern Time (``bound``: its start or its last second)."""
    try:
        return rnotices.when_et(text, bound)
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
            # `check` exits 1 for "blocked": Redis down is 3 there.
            return CHECK_REDIS_DOWN if job is _check else 1

    return handler


def _store(
    r: Any, prefix: str, now: Callable[[], float], config: Config | None = None
) -> SnapshotStore:
    """A store on the open client; with `config`, the snapshot it loads is
    built with exactly the running proxy's decision settings (server._make_store)."""
    url = "redis://"  # not used: _data is set to the open client
    if config is None:
        s = SnapshotStore(url, prefix, emergency=frozenset({"911", "933"}))
    else:
        s = SnapshotStore(
            url,
            prefix,
            emergency=config.emergency_numbers,
            emergency_callers=config.emergency_callers,
            unmapped_provider_policy=config.unmapped_provider_policy,
            shaken_policy=config.shaken_policy,
        )
    s.clock = now
    s._data = r
    return s


def _meta(args: argparse.Namespace) -> dict[str, str]:
    out = {"why": getattr(args, "why", None) or "", "by": getattr(args, "by", None) or ""}
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


CHECK_ALLOWED, CHECK_BLOCKED, CHECK_BAD_INPUT, CHECK_REDIS_DOWN = 0, 1, 2, 3
CHECK_EPILOG = """\
Decides exactly as the running proxy does: the snapshot is loaded from Redis
with the config's emergency numbers and callers, unmapped_provider_policy,
k4 deadline and trunk map (--source).

exit status: 0 allowed (also a would-block or an allowlist pass), 1 blocked,
2 bad input (usage error), 3 Redis unreachable."""


def _check_callee(raw: str | None) -> str | None:
    if not raw:
        return None
    low = raw.strip().lower()
    if low.startswith("urn:service:"):  # RFC 5031 service URN, as the proxy sees it
        return low
    callee = normalise(raw)
    if callee is None:
        raise AdminError(f"--callee: not a phone number or urn:service URN: {raw!r}")
    return callee


async def _check(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    caller = normalise(args.caller)
    if caller is None:
        raise AdminError(f"--caller: not a phone number: {args.caller!r}")
    callee = _check_callee(args.callee)
    at = _when(args.at, "--at") if args.at else now()
    provider = args.provider
    if provider is None and args.source and getattr(args, "trunks", None) is not None:
        provider = args.trunks.lookup(args.source)
    config: Config | None = getattr(args, "screen_config", None)
    store = _store(r, prefix, now, config)
    snap = await store.load_full()
    if args.at:  # 47 CFR 64.6305(g) as it stood that day (versioned RMD snapshots)
        await _rmd_at(r, prefix, snap, args.at, at)
        await _notices_orders_at(r, prefix, snap, at)  # k4 history and FDOs as of that day
    facts = CallFacts(
        caller=caller,
        callee=callee,
        provider=provider,
        source_ip=args.source or "",
        call_id="check",
    )
    signed = getattr(args, "signed_ocn", None)
    if signed:
        facts.verstat, facts.attest, facts.ocn = "TN-Validation-Passed", "A", signed.upper()
    checks = explain(snap, facts, at)
    verdict = decide(snap, facts, at)
    code = CHECK_BLOCKED if verdict.blocked else CHECK_ALLOWED
    if args.json:
        print(
            json.dumps(
                {
                    "caller": caller,
                    "callee": callee,
                    "provider": provider,
                    "at": _iso(at),
                    "snapshot_version": snap.version,
                    "unmapped_provider_policy": snap.unmapped_provider_policy,
                    "checks": [
                        {"rule": c.rule.label, "matched": c.matched, "why": c.why} for c in checks
                    ],
                    "verdict": {
                        "blocked": verdict.blocked,
                        "rule": verdict.rule.label,
                        "citation": verdict.rule.citation,
                        "reason": verdict.reason,
                        "detail": verdict.detail,
                        "would_block": verdict.would_block.label if verdict.would_block else None,
                    },
                    "exit_status": code,
                },
                indent=2,
            )
        )
        return code
    print(f"caller {caller}  callee {callee or '-'}  provider {provider or '-'}  at {_iso(at)}")
    print(f"snapshot {snap.version}  unmapped_provider_policy {snap.unmapped_provider_policy}")
    print(
        "order: 1 emergency (64.1200(k)(5)-(6)); 2 provider gates: unmapped provider, "
        "RMD (64.6305(g)), FDO (64.1200(n)(3)), no allowlist lifts them; 3 allowlist; "
        "4 DNO (64.1200(o)); 5 operator lists; 6 notices (64.1200(k)(4), (n)(2))"
    )
    for c in checks:
        mark = "MATCH" if c.matched else "  -  "
        print(f"  [{mark}] {c.rule.label:<18} {c.rule.citation:<24} {c.why}")
    word = "BLOCKED" if verdict.blocked else "ALLOWED"
    print(f"verdict: {word} by {verdict.rule.label} ({verdict.rule.citation}): {verdict.reason}")
    if verdict.would_block is not None:
        what = "allowlist passed over" if verdict.rule.label == "allowlist" else "would block"
        print(f"{what}: {verdict.would_block.label} ({verdict.would_block.citation})")
    return code


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


def _drop_guard_answer(args: argparse.Namespace, path: str, why: str | None, check: str) -> None:
    """What the drop guard's finding `why` does to an import of `path`: a dry
    run says it would be refused; otherwise it is refused (AdminError, nothing
    written; `check` names what to check) unless --accept-removals was given."""
    if why is None:
        return
    if args.dry_run:
        print(f"dry run: the import would be refused: {path}: {why}")
    elif not args.accept_removals:
        raise AdminError(
            f"{path}: {why}; nothing imported (check {check}; --accept-removals imports it anyway)"
        )
    else:
        print(f"accepted (--accept-removals): {why}")


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
    # STIR/SHAKEN (issue 11): the filing's OCN (a signing OCN of the provider)
    # and its implementation claim, for `report shaken`.
    claim = {"rmd_ocn": filer.get("ocn", ""), "implementation": filer.get("implementation", "")}
    status = filer.get("status", rrmd.LISTED)
    order = filer.get("removal_order", "") if status == rrmd.REMOVED else ""
    if status == rrmd.REMOVED and not order:
        # Written before absent and removed were told apart: missing from an
        # export, no order recorded.
        return {
            "rmd_status": rrmd.ABSENT,
            "rmd_order": "",
            "rmd_since": _since(filer),
            **claim,
        }
    return {"rmd_status": status, "rmd_order": order, "rmd_since": _since(filer), **claim}


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
    _drop_guard_answer(args, path, why, "the download")
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


async def _notices_orders_at(r: Any, prefix: str, snap: Any, at: float) -> None:
    """The notices and orders in ``snap`` as they stood at ``at`` (`check --at`):
    each notice's fields from its history entries dated on or before ``at``
    (rules.notices.notice_as_of), and a Final Determination Order removed
    after ``at`` back in force (47 CFR 64.1200(n)(3) as it applied then)."""
    for provider, notices in snap.notices.items():
        snap.notices[provider] = [
            rnotices.notice_as_of(n, await _history(r, prefix, n.id), at) for n in notices
        ]
    for key in await _scan(r, prefix + "order:*"):
        oid = key[len(prefix) + len("order:") :]
        if ":" in oid:
            continue
        h = await r.hgetall(key)
        removed_at = h.get("removed_at", "")
        if h.get("status") != "removed" or not removed_at:
            continue
        if rnotices.iso_to_epoch(removed_at) <= at:
            continue
        try:
            o = rorders.order_from_record({**h, "status": "active"}, oid)
        except ValueError:
            continue
        if o is not None:
            snap.set_order(o)


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
    if getattr(args, "signing_ocns", None) is not None:
        ocns = [o.strip().upper() for o in args.signing_ocns.split(",") if o.strip()]
        for o in ocns:
            if not re.fullmatch(r"[0-9A-Z]{4}", o):
                raise AdminError(f"--signing-ocns: not a 4-character OCN: {o!r}")
        fields["ocns"] = ",".join(ocns)
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


def _by(args: argparse.Namespace) -> str:
    """Who records an entry: ``--by``, default the OS user."""
    by = getattr(args, "by", None)
    if by:
        return str(by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _history_key(prefix: str, nid: str) -> str:
    return prefix + f"notice:{nid}:history"


async def _history(r: Any, prefix: str, nid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await r.lrange(_history_key(prefix, nid), 0, -1)]


async def _load_notice(r: Any, prefix: str, nid: str) -> Any:
    h = await r.hgetall(prefix + f"notice:{nid}")
    if not h:
        raise AdminError(f"notice {nid}: not found")
    try:
        return rnotices.notice_from_record(h, nid)
    except ValueError as exc:
        raise AdminError(f"notice:{nid}: {exc}") from None


def _legacy_events(n: Any, recorded: float) -> list[dict[str, object]]:
    """History for a notice written before histories existed: its recorded
    fields become entries (by "legacy-hash"), so that deriving from the history
    never drops them."""
    out: list[dict[str, object]] = [
        rnotices.new_event(1, "issued", n.issued, recorded, "legacy-hash")
    ]
    for event, at in (
        ("mitigated", n.mitigated),
        ("reported", n.reported),
        ("fcc_notified", n.fcc_notified),
    ):
        if at is not None:
            summary = "recorded before notice histories" if event == "fcc_notified" else ""
            out.append(
                rnotices.new_event(
                    len(out) + 1, event, at, recorded, "legacy-hash", summary=summary
                )
            )
    return out


async def _append(
    r: Any, prefix: str, nid: str, make: Callable[[int], dict[str, object]], now: float
) -> dict[str, object]:
    """Append one entry to the notice's history and rewrite the derived HASH
    fields, in one MULTI/EXEC under WATCH (a concurrent append retries)."""
    hkey, key = _history_key(prefix, nid), prefix + f"notice:{nid}"
    while True:
        async with r.pipeline(transaction=True) as p:
            await p.watch(hkey, key)
            raw = await p.lrange(hkey, 0, -1)
            events: list[dict[str, object]] = [json.loads(x) for x in raw]
            fresh: list[dict[str, object]] = []
            if not events:
                n = rnotices.notice_from_record(await p.hgetall(key), nid)
                fresh = _legacy_events(n, now)
            entry = make(len(events) + len(fresh) + 1)
            fields = rnotices.derive_fields([*events, *fresh, entry])
            p.multi()
            for e in [*fresh, entry]:
                p.rpush(hkey, json.dumps(e, sort_keys=True))
            p.hset(key, mapping=cast(Any, fields))
            try:
                await p.execute()
            except WatchError:
                continue
            return entry


def _print_entry(e: Mapping[str, Any], gone: set[int]) -> None:
    at = rnotices.iso_to_epoch(str(e["at"]))
    extra = ""
    if e.get("value"):
        extra += f" {e['value']}"
    if e.get("voids") is not None:
        extra += f" voids #{e['voids']}"
    if e.get("summary"):
        extra += f": {e['summary']}"
    void = " [VOIDED]" if int(e["seq"]) in gone else ""
    print(
        f"  #{e['seq']} {e['event']}{extra}{void}\n"
        f"      effective {rnotices.fmt_et_utc(at)}; recorded {e['recorded']} by {e['by']}"
    )


async def _notice_add(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    letter_name = ""
    issued: dt.date | dt.datetime
    stated: dt.date | None = None
    if args.letter:
        text = _read(args.letter)
        letter_name = Path(args.letter).name
        try:
            facts = rnotices.extract_letter_facts(text)
        except ValueError as exc:
            if not args.issued:
                raise AdminError(f"{args.letter}: {exc}") from None
        else:
            issued, stated = facts.issued, facts.report_due_stated
    if args.issued:
        try:
            issued = rnotices.parse_when(args.issued)
        except ValueError:
            raise AdminError(f"--issued: not a date: {args.issued!r}") from None
    elif not args.letter:
        raise AdminError("--issued DATE or --letter FILE is required")
    if args.report_due:
        try:
            due = rnotices.parse_when(args.report_due)
        except ValueError:
            raise AdminError(f"--report-due: not a date: {args.report_due!r}") from None
        if isinstance(due, dt.datetime):
            raise AdminError("--report-due: the date the letter states (YYYY-MM-DD), not a time")
        stated = due
    day = issued.strftime("%Y%m%d")
    nid = args.id or f"{args.kind}-{args.provider}-{day}"
    campaigns = [c for c in (args.campaign or [])]
    for c in campaigns:
        try:
            from rules.snapshot import parse_campaigns

            parse_campaigns(c)
        except ValueError as exc:
            raise AdminError(f"--campaign: {exc}") from None
    key = prefix + f"notice:{nid}"
    if await r.exists(key):
        raise AdminError(f"notice {nid}: already recorded (see `notice show {nid}`)")
    n = rnotices.new_notice(
        nid, args.provider, args.kind, issued, campaigns, letter_name, report_due_stated=stated
    )
    t = now()
    entry = rnotices.new_event(1, "issued", n.issued, t, _by(args), summary=letter_name)
    async with r.pipeline(transaction=True) as p:
        p.hset(key, mapping=cast(Any, rnotices.notice_to_record(n)))
        p.rpush(_history_key(prefix, nid), json.dumps(entry, sort_keys=True))
        await p.execute()
    print(f"notice {nid}: {args.kind} for provider {args.provider}, issued {_iso(n.issued)}")
    print(f"  issued         {rnotices.fmt_et_utc(n.issued)}")
    # 47 CFR 64.1200(k)(4): 48 hours to mitigate; the letter: 14 days to report.
    window = rnotices.fmt_et_utc(n.mitigation_due)
    print(f"  mitigation due {_iso(n.mitigation_due)}  (48 hours: {window})")
    report_day = dt.datetime.fromtimestamp(n.report_due - 1, dt.UTC)
    print(
        f"  report due     {rnotices.eastern_date(report_day).isoformat()} end of day ET: "
        f"{rnotices.fmt_day_end(n.report_due)}"
    )
    if args.kind == "k4" and stated is None:
        print(
            "sipscreen: warning: the report date was counted per 47 CFR 1.4 (letter date + 14 "
            "days); give the date the letter states with --report-due",
            file=sys.stderr,
        )
    return 0


def _check_at(n: Any, at: float, t: float, what: str) -> None:
    if at < n.issued:
        raise AdminError(
            f"{what}: {rnotices.fmt_et_utc(at)} is before notice {n.id} was issued "
            f"({rnotices.fmt_et_utc(n.issued)})"
        )
    if at > t + 60:
        raise AdminError(f"{what}: {rnotices.fmt_et_utc(at)} is in the future")


async def _notice_respond(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    n = await _load_notice(r, prefix, args.id)
    event, text = ("mitigated", args.mitigated) if args.mitigated else ("reported", args.reported)
    # A bare date is the start of that ET day: the provider gets the benefit of
    # the doubt (a response on the deadline's day counts as in time).
    at = _when(text, f"--{event}")
    t = now()
    _check_at(n, at, t, f"--{event}")
    e = await _append(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(seq, event, at, t, _by(args), summary=args.summary or ""),
        t,
    )  # fmt: skip
    due = n.mitigation_due if event == "mitigated" else n.report_due
    late = "" if at < due else f" LATE (due before {_iso(due)}): kept, not a cure"
    print(f"notice {args.id}: #{e['seq']} {event}={_iso(at)}{late}")
    return 0


async def _notice_determine(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    n = await _load_notice(r, prefix, args.id)
    if n.kind != "k4":
        raise AdminError(f"notice {args.id} is {n.kind}: determinations apply to k4 notices")
    t = now()
    at = _when(args.date, "--date") if args.date else t
    _check_at(n, at, t, "--date")
    value = "ineffective" if args.ineffective else "effective"
    e = await _append(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "determination", at, t, _by(args), summary=args.summary, value=value
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} determination {value} at {_iso(at)}")
    return 0


async def _notice_fcc(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    n = await _load_notice(r, prefix, args.id)
    # A bare date is the last second of that ET day: blocking never starts
    # before the notification was sent.
    at = _when(args.date, "--date", "end")
    t = now()
    _check_at(n, at, t, "--date")
    err = rk4.fcc_notice_error(n, at)
    if err is not None:
        raise AdminError(err)
    e = await _append(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "fcc_notified", at, t, _by(args), summary=args.summary
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} fcc_notified={_iso(at)} ({rnotices.fmt_et(at)})")
    return 0


async def _notice_correct(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    await _load_notice(r, prefix, args.id)
    events = await _history(r, prefix, args.id)
    target = next((e for e in events if int(e["seq"]) == args.entry), None)
    if target is None:
        raise AdminError(f"notice {args.id}: no history entry #{args.entry}")
    if target["event"] in ("issued", "correction"):
        raise AdminError(
            f"notice {args.id}: entry #{args.entry} ({target['event']}) cannot be voided"
        )
    if args.entry in rnotices.voided(events):
        raise AdminError(f"notice {args.id}: entry #{args.entry} is already voided")
    t = now()
    e = await _append(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "correction", t, t, _by(args), summary=args.summary, voids=args.entry
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} correction voids #{args.entry}")
    return 0


async def _notice_show(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    n = await _load_notice(r, prefix, args.id)
    h = await r.hgetall(prefix + f"notice:{args.id}")
    t = _when(args.at, "--at") if args.at else now()
    events = await _history(r, prefix, args.id)
    if args.at:  # the state as the history stood then (entries dated later left out)
        n = rnotices.notice_as_of(n, events, t)
    print(f"notice {n.id}: {n.kind} ({rnotices.KINDS[n.kind]}) against provider {n.provider}")
    if n.letter:
        print(f"  letter         {n.letter}")
    print(f"  issued         {rnotices.fmt_et_utc(n.issued)}")
    print(f"  mitigation due {rnotices.fmt_et_utc(n.mitigation_due)} (48 hours; late from then on)")
    print(f"  report due     end of day ET: {rnotices.fmt_day_end(n.report_due)}")
    for name in ("mitigated", "reported", "ineffective", "effective", "fcc_notified"):
        v = getattr(n, name)
        if v is not None:
            print(f"  {name:<14} {rnotices.fmt_et_utc(v)}")
    if h.get("fcc_notified_summary"):
        print(f"  fcc summary    {h['fcc_notified_summary']}")
    print("history:" if events else "history: none recorded (notice written before histories)")
    gone = rnotices.voided(events)
    for e in events:
        _print_entry(e, gone)
    if n.kind == "k4":
        prov = await r.hgetall(prefix + f"provider:{n.provider}")
        st = rk4.k4_state(n, t)
        _, why = rk4.k4_check(
            n, n.provider, prov.get("name", ""), prov.get("monitor_only") == "1", t
        )
        print(f"k4 state at {rnotices.fmt_et_utc(t)}: {st.state}")
        print(f"  {why}")
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
    t = now()
    for n in await _notices(r, prefix, args.provider):
        resp = [
            f"{k}={_iso(v)}"
            for k, v in (
                ("mitigated", n.mitigated),
                ("reported", n.reported),
                ("ineffective", n.ineffective),
                ("effective", n.effective),
                ("fcc_notified", n.fcc_notified),
            )
            if v is not None
        ]
        state = f"\tk4 {rk4.k4_state(n, t).state}" if n.kind == "k4" else ""
        print(
            f"{n.id}\t{n.kind}\t{n.provider}\tissued {_iso(n.issued)}\t"
            f"mitigation due {_iso(n.mitigation_due)}\treport due {_iso(n.report_due)}\t"
            + (" ".join(resp) or "no response recorded")
            + state
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
    _drop_guard_answer(args, path, why, "the file")
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


_BLOCK_SETS = {"caller": "block:caller", "prefix": "block:prefix", "provider": "block:provider"}


def _block_member(kind: str, raw: str) -> str | None:
    """The set member `block`/`unblock` writes for `raw` (None: malformed)."""
    if kind == "caller":
        return normalise(raw.strip())
    if kind == "prefix":
        return valid_prefix(raw)
    return raw


async def _block(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    store = _store(r, prefix, now)
    remove = args.command == "unblock"
    absent: list[str] = []
    if remove:
        # Say which values were not blocked (exit 1): an unblock that did
        # nothing is usually a typo or the wrong kind.
        members = [_block_member(args.kind, v) for v in args.values]
        known = [m for m in members if m is not None]
        if known:
            flags = await r.smismember(prefix + _BLOCK_SETS[args.kind], known)
            absent = [m for m, f in zip(known, flags, strict=True) if not f]
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
    changed = [d for d in done if d not in absent]
    if changed:
        print(f"{verb} {args.kind}: {' '.join(changed)}")
    if absent:
        print(f"sipscreen: {args.kind} not blocked: {' '.join(absent)}", file=sys.stderr)
        return 1
    return 0


async def _allow(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    store = _store(r, prefix, now)
    until = _when(args.until, "--until", "end") if args.until else None
    n = await store.allow_caller(args.number, until, _meta(args))
    print(f"allowed caller {n}" + (f" until {_iso(until)}" if until else ""))
    return 0


RECORD_ACTIONS = ("reject", "would_block", "monitor", "allowlist_override", "allow")


def _et_day_range(text: str) -> tuple[float, float]:
    """`records export --day`: that day in US Eastern Time, like every other
    date-only input (its first instant and its last millisecond; 23 or 25
    hours on a DST change)."""
    try:
        day = dt.datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise AdminError(f"--day: not a day (YYYY-MM-DD): {text!r}") from None
    start = _when(day.isoformat(), "--day")
    return start, _when((day + dt.timedelta(days=1)).isoformat(), "--day") - 0.001


async def _records_export(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    since = _when(args.since, "--since") if args.since else None
    until = _when(args.until, "--until", "end") if args.until else None
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
    async for line in export_records(
        r,
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
            st = rk4.k4_state(n, t)
            if st.state in (rk4.BLOCK, rk4.PENDING_FCC):
                _, why = rk4.k4_check(n, pid, h.get("name", ""), h.get("monitor_only") == "1", t)
                basis.append(f"Notice {n.id} (issued {_iso(n.issued)}, {st.state}): {why}")
        else:
            basis.append(
                f"Notice {n.id} identifies campaigns {', '.join(n.campaigns) or '(none)'}: "
                "traffic substantially similar is blocked (47 CFR 64.1200(n)(2))."
            )
    orders = await _provider_orders(r, prefix, pid)
    for o in orders:
        if o["status"] != "active" or not o["blocks_from"]:
            continue
        start = rnotices.iso_to_epoch(o["blocks_from"])
        when = "are blocked" if t >= start else "will be blocked"
        basis.append(
            f"Final Determination Order {o['order']} (order {o['id']}, released "
            f"{o['released']}): all calls received directly from the provider {when} from "
            f"{o['blocks_from']}, 30 days after release (47 CFR 64.1200(n)(3))."
        )
    if not basis:
        basis.append("No regulatory basis for blocking this provider's traffic is recorded.")
    shaken = claim_vs_seen(h.get("implementation", ""), await r.hgetall(seen_key(prefix, pid)))
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
        "orders": orders,
        "traceback": traces,
        "blocked_by_day_rule": [
            {"day": d, "rule": rule, "action": a, "count": c}
            for (d, rule, a), c in sorted(counts.items())
        ],
        "basis": basis,
        "stir_shaken": shaken,
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
    lines += ["", "## Final Determination Orders", ""]
    for o in orders:
        state = (
            f"blocks from {o['blocks_from']}"
            if o["status"] == "active"
            else f"removed {o['removed_at']}: {o['removed_reason']}"
        )
        lines.append(f"- {o['id']} ({o['order']}) released {o['released']}; {state}")
    if not orders:
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
    lines += ["", "## STIR/SHAKEN: RMD claim and traffic seen", ""]
    lines += [_SHAKEN_HEAD, _SHAKEN_RULE, _shaken_row(pid, doc["name"], shaken)]
    lines += ["", "## Basis", ""]
    lines += [f"- {b}" for b in basis]
    print("\n".join(lines))
    return 0


_SHAKEN_HEAD = (
    "| provider | name | RMD implementation | calls | signed | A | B | C | failed "
    "| pending | since | flag |"
)
_SHAKEN_RULE = "|---|---|---|---|---|---|---|---|---|---|---|---|"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _shaken_row(pid: str, name: str, c: Mapping[str, Any]) -> str:
    return (
        f"| {pid} | {name or '-'} | {c['implementation'] or '-'} | {c['calls']} "
        f"| {_pct(c['signed_share'])} | {c['A']} | {c['B']} | {c['C']} "
        f"| {c['failed']} ({_pct(c['failed_share'])}) | {c['pending']} | {c['since'] or '-'} "
        f"| {('**' + c['flag'] + '**') if c['flag'] else ''} |"
    )


async def _report_shaken(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    """Per provider: the RMD STIR/SHAKEN implementation claim next to what its
    traffic showed ([shaken] on: proxy/shakenstats.py counts)."""
    provs = {k[len(prefix) + len("provider:") :]: h for k, h in await _providers(r, prefix)}
    seen_pfx = seen_key(prefix, "")
    seen_ids = sorted(k[len(seen_pfx) :] for k in await _scan(r, seen_pfx + "*"))
    seen = dict(
        zip(seen_ids, await _hgetall_many(r, [seen_pfx + i for i in seen_ids]), strict=True)
    )
    rows = []
    for pid in sorted(set(provs) | set(seen)):
        h = provs.get(pid, {})
        c = claim_vs_seen(h.get("implementation", ""), seen.get(pid, {}))
        if c["implementation"] or c["calls"]:
            rows.append({"provider": pid, "name": h.get("name", ""), **c})
    if args.format == "json":
        print(json.dumps({"providers": rows, "generated": _iso(now())}, indent=2))
        return 0
    lines = [
        "# STIR/SHAKEN: RMD implementation claim and traffic seen, by provider",
        "",
        f"Generated {_iso(now())}. signed = calls that carried an Identity header "
        "(pending included); failed = verification failed (share of the signed).",
        "",
        _SHAKEN_HEAD,
        _SHAKEN_RULE,
    ]
    lines += [_shaken_row(x["provider"], x["name"], x) for x in rows]
    flagged = [x["provider"] for x in rows if x["flag"]]
    lines += ["", f"Flagged: {', '.join(flagged) if flagged else 'none'}."]
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------
# order (Final Determination Orders, 47 CFR 64.1200(n)(3))


async def _provider_orders(r: Any, prefix: str, pid: str) -> list[dict[str, str]]:
    """Every order recorded against provider ``pid`` (in force or removed),
    with the instant it blocks from (`report provider`)."""
    out: list[dict[str, str]] = []
    for key in sorted(await _scan(r, prefix + "order:*")):
        oid = key[len(prefix) + len("order:") :]
        if ":" in oid:
            continue
        h = await r.hgetall(key)
        if h.get("provider") != pid:
            continue
        try:
            start = _iso(rorders.fdo_blocks_from(rorders.parse_release_date(h.get("released", ""))))
        except ValueError:
            start = ""
        out.append(
            {
                "id": oid,
                "kind": h.get("kind", "fdo"),
                "order": h.get("order", ""),
                "released": h.get("released", ""),
                "blocks_from": start,
                "status": h.get("status") or "active",
                "removed_at": h.get("removed_at", ""),
                "removed_reason": h.get("removed_reason", ""),
            }
        )
    return out


# ---------------------------------------------------------------------------


def _order_history_key(prefix: str, oid: str) -> str:
    return prefix + f"order:history:{oid}"


def _plain_id(text: str) -> bool:
    return 0 < len(text) <= 64 and text.isascii() and all(c.isalnum() or c in "_-." for c in text)


async def _order_add(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    document = " ".join(args.order.split())
    if not document:
        raise AdminError("--order: give the FCC document number, e.g. 'DA 24-123'")
    try:
        released = rorders.parse_release_date(args.released)
    except ValueError as exc:
        raise AdminError(f"--released: {exc}") from None
    try:
        oid = args.id or rorders.order_id_for(document)
    except ValueError as exc:
        raise AdminError(f"--order: {exc}") from None
    if not rorders.valid_order_id(oid) or oid == "history":
        raise AdminError(f"--id {oid!r}: letters, digits, '_', '-', '.' only (not 'history')")
    if not _plain_id(args.provider):
        raise AdminError(f"--provider {args.provider!r}: letters, digits, '_', '-', '.' only")
    key = prefix + f"order:{oid}"
    cur = await r.hgetall(key)
    if cur and (cur.get("status") or "active") == "active":
        raise AdminError(f"order {oid}: already recorded and in force (remove it first)")
    stamp = _iso(now())
    record = {
        "provider": args.provider,
        "kind": args.kind,
        "order": document,
        "released": released.isoformat(),
        "status": "active",
        "added_at": stamp,
        "added_by": args.by or "",
        "removed_at": "",
        "removed_reason": "",
    }
    event = {"at": stamp, "event": "added", "by": args.by or "", **record}
    async with r.pipeline(transaction=True) as tx:
        tx.hset(key, mapping=cast(Any, record))
        tx.rpush(_order_history_key(prefix, oid), json.dumps(event, sort_keys=True))
        await tx.execute()
    start = rorders.fdo_blocks_from(released)
    print(
        f"order {oid}: {args.kind} {document} against provider {args.provider}, "
        f"released {released.isoformat()}"
    )
    print(
        f"  47 CFR 64.1200(n)(3): all traffic received directly from {args.provider} is "
        f"blocked from {rorders.fdo_blocks_from_day(released).isoformat()} 00:00 US Eastern "
        f"({_iso(start)}); until then counted as would_block fdo"
    )
    return 0


async def _order_list(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    at = now()
    for key in sorted(await _scan(r, prefix + "order:*")):
        oid = key[len(prefix) + len("order:") :]
        if ":" in oid:
            continue
        h = await r.hgetall(key)
        if args.provider and h.get("provider") != args.provider:
            continue
        status = h.get("status") or "active"
        if status != "active" and not args.all:
            continue
        try:
            start = rorders.fdo_blocks_from(rorders.parse_release_date(h.get("released", "")))
            state = "BLOCKING" if at >= start else f"blocks from {_iso(start)}"
        except ValueError:
            state = "INVALID released date"
        if status != "active":
            state = f"removed {h.get('removed_at', '')}: {h.get('removed_reason', '')}"
        print(
            f"{oid}\t{h.get('kind', 'fdo')}\t{h.get('order', '')}\t{h.get('provider', '')}\t"
            f"released {h.get('released', '')}\t{state}"
        )
        if args.history:
            for ev in await r.lrange(_order_history_key(prefix, oid), 0, -1):
                e = json.loads(ev)
                extra = e.get("reason") or e.get("order") or ""
                print(f"    {e.get('at', '')} {e.get('event', '')} {e.get('by', '')} {extra}")
    return 0


async def _order_remove(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    reason = " ".join((args.reason or "").split())
    if not reason:
        raise AdminError("--reason: say why the order no longer applies (kept in its history)")
    key = prefix + f"order:{args.id}"
    h = await r.hgetall(key)
    if not h:
        raise AdminError(f"order {args.id}: not found")
    if (h.get("status") or "active") != "active":
        raise AdminError(f"order {args.id}: already removed {h.get('removed_at', '')}")
    stamp = _iso(now())
    event = {"at": stamp, "event": "removed", "by": args.by or "", "reason": reason}
    async with r.pipeline(transaction=True) as tx:
        # Not a DEL: the record stays, marked removed, and the history grows.
        tx.hset(key, mapping={"status": "removed", "removed_at": stamp, "removed_reason": reason})
        tx.rpush(_order_history_key(prefix, args.id), json.dumps(event, sort_keys=True))
        await tx.execute()
    print(f"order {args.id}: removed {stamp} ({reason}); no longer blocks")
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


async def _redis_confirm_empty(args: argparse.Namespace, r: Any, prefix: str, now: Any) -> int:
    """Accept what Redis holds now under the prefix after the proxy reported
    REDIS DATA LOST (proxy/store.py): a new `confirmed-` generation stamp."""
    import os

    from proxy.store.keys import CONFIRMED, K_GENERATION

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
    p = sub.add_parser(
        "check",
        help="explain the decision for one call (exit 0 allowed, 1 blocked)",
        description="Explain the decision for one call, rule by rule, in decision order.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--caller", required=True, help="caller ID: E.164, 10/11-digit NANP, tel:/sip:")
    p.add_argument("--callee", help="number, or urn:service:sos[.<sub>] (RFC 5031)")
    p.add_argument("--provider", help="upstream provider id (provider:<id> in Redis)")
    p.add_argument("--source", help="source IP (mapped to a provider by the trunk map)")
    p.add_argument(
        "--signed-ocn",
        metavar="OCN",
        help="the call carries an A-attested STIR/SHAKEN Identity that verified, signed "
        "with this OCN (the signer's provider rules apply by signature)",
    )
    p.add_argument("--at", help="ISO date/time of the call, e.g. 2021-11-10T12:00Z (default now)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(handler=_wrap(_check), trunks=None, screen_config=None)

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
    _import_flags(p, guard=True)
    p.set_defaults(handler=_wrap(_rmd_import))
    p = rmd.add_parser("rollback", help="restore the RMD snapshot in force before the last import")
    p.set_defaults(handler=_wrap(_rmd_rollback))
    p = rmd.add_parser("remove", help="record an FCC removal order")
    p.add_argument("--order", required=True, help='e.g. "DA 25-694"')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--frn", help="the filer's 10-digit FCC Registration Number")
    g.add_argument("--rmd-number", help="the filer's RMD number, e.g. RMD0001410")
    p.add_argument("--date", help="date of the order, YYYY-MM-DD (default today)")
    p.set_defaults(handler=_wrap(_rmd_remove))
    p = rmd.add_parser("status", help="a filer's status and history (no id: the snapshots)")
    p.add_argument("id", nargs="?", help="RMD number, FRN or OCN")
    p.set_defaults(handler=_wrap(_rmd_status))

    prov = sub.add_parser("provider", help="upstream providers").add_subparsers(
        dest="provider_command", required=True
    )
    p = prov.add_parser("set", help="create or update provider:<id>")
    p.add_argument("id", help="provider id as named in the [[trunk]] map (letters, digits, _-.)")
    p.add_argument("--name", help="business name")
    p.add_argument("--rmd-number", help="RMD number, e.g. RMD0001410 (links the RMD gate)")
    p.add_argument("--frn", help="10-digit FCC Registration Number")
    p.add_argument("--ocn", help="Operating Company Number")
    p.add_argument(
        "--signing-ocns",
        metavar="OCN,OCN",
        help="more OCNs the provider signs STIR/SHAKEN calls with (comma list; '' clears): "
        "its calls verified with one of them are matched by signature",
    )
    p.add_argument(
        "--monitor-only",
        choices=("yes", "no"),
        help="yes: its gates and notices (RMD, FDO, k4, n2) count would-blocks, never block",
    )
    p.set_defaults(handler=_wrap(_provider_set))

    notice = sub.add_parser("notice", help="FCC notices").add_subparsers(
        dest="notice_command", required=True
    )
    p = notice.add_parser("add", help="record a notice and print its deadlines")
    p.add_argument("--provider", required=True, help="provider id the notice names")
    p.add_argument(
        "--kind",
        choices=("k4", "n2"),
        required=True,
        help="k4: 47 CFR 64.1200(k)(4) notice; n2: (n)(2) notify-and-direct",
    )
    p.add_argument("--issued", help="letter date (a bare date is a US Eastern day) or instant")
    p.add_argument("--letter", help="the letter as text: its date and facts are read from it")
    p.add_argument("--report-due", help="the report date the letter states (YYYY-MM-DD)")
    p.add_argument(
        "--campaign",
        action="append",
        help="n2: a campaign caller ID or +prefix (repeatable)",
    )
    p.add_argument("--id", help="notice id (default KIND-PROVIDER-YYYYMMDD)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_notice_add))
    p = notice.add_parser("respond", help="record the provider's mitigation or report")
    p.add_argument("id", help="notice id (see notice list)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mitigated", help="when (a bare date: 00:00 ET that day)")
    g.add_argument("--reported", help="when (a bare date: 00:00 ET that day)")
    p.add_argument("--summary", help="what the provider said or did")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_notice_respond))
    p = notice.add_parser(
        "determine", help="record the operator's determination on the provider's measures"
    )
    p.add_argument("id", help="notice id (see notice list)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ineffective", action="store_true", help="measures not effective: may block")
    g.add_argument("--effective", action="store_true", help="measures effective: stop blocking")
    p.add_argument("--summary", required=True, help="the basis of the determination")
    p.add_argument("--date", help="when (default now; a bare date: 00:00 ET that day)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_notice_determine))
    p = notice.add_parser("fcc-notified", help="record that the FCC was notified")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--date", required=True, help="when (a bare date: 23:59:59 ET that day)")
    p.add_argument("--summary", required=True, help="the brief summary of the basis sent")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_notice_fcc))
    p = notice.add_parser("correct", help="void an earlier history entry (kept, marked)")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--entry", type=int, required=True, help="the entry's #")
    p.add_argument("--summary", required=True, help="why")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_notice_correct))
    p = notice.add_parser("show", help="a notice, its deadlines, history and k4 state")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--at", help="state at this time (default now)")
    p.set_defaults(handler=_wrap(_notice_show))
    p = notice.add_parser("list", help="list notices with their deadlines and state")
    p.add_argument("--provider", help="only this provider's notices")
    p.set_defaults(handler=_wrap(_notice_list))

    order = sub.add_parser(
        "order", help="Enforcement Bureau orders (Final Determination Orders)"
    ).add_subparsers(dest="order_command", required=True)
    p = order.add_parser(
        "add",
        help="record a Final Determination Order (47 CFR 64.1200(n)(3))",
        description="All traffic received directly from the provider is blocked from "
        "the 30th day after the order's release (00:00 US Eastern).",
    )
    p.add_argument("--provider", required=True, help="provider id (provider:<id>)")
    p.add_argument(
        "--kind",
        choices=("fdo",),
        default="fdo",
        help="fdo: a Final Determination Order, 47 CFR 64.1200(n)(3)",
    )
    p.add_argument("--order", required=True, help='FCC document number, e.g. "DA 24-123"')
    p.add_argument("--released", required=True, help="release date, YYYY-MM-DD (US Eastern)")
    p.add_argument("--id", help="order id (default: from --order, DA-24-123)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_order_add))
    p = order.add_parser("list", help="orders in force (--all: removed ones too)")
    p.add_argument("--provider", help="only this provider's orders")
    p.add_argument("--all", action="store_true", help="removed orders too")
    p.add_argument("--history", action="store_true", help="print each order's history")
    p.set_defaults(handler=_wrap(_order_list))
    p = order.add_parser("remove", help="record that an order no longer applies")
    p.add_argument("id", help="order id (see order list)")
    p.add_argument("--reason", required=True, help="why it no longer applies (kept in history)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=_wrap(_order_remove))

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
    _import_flags(p, guard=False)
    p.set_defaults(handler=_wrap(_traceback_import))

    d = sub.add_parser("dno", help="do-not-originate lists").add_subparsers(
        dest="dno_command", required=True
    )
    p = d.add_parser(
        "import",
        help="replace the inbound-only DNO list",
        description="Replace dno:caller with the numbers of a text file: one number per "
        "line (E.164, NANP 10/11 digits or tel:), a comment may follow; '#' starts a "
        "comment line (47 CFR 64.1200(o)).",
    )
    p.add_argument("file", help="text file, one number per line")
    _import_flags(p, guard=False)
    p.set_defaults(handler=_wrap(_dno_import))

    n = sub.add_parser("nanpa", help="NANPA assigned codes").add_subparsers(
        dest="nanpa_command", required=True
    )
    p = n.add_parser(
        "import",
        help="replace the allocated NPA or NPA-NXX set",
        description="Replace the allocated area codes (NANPA npa_report.csv) or central "
        "office codes (NANPA allutlzd.txt, tab-separated); calls from unallocated codes "
        "are blocked as do-not-originate (47 CFR 64.1200(o)).",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa", metavar="FILE", help="NANPA npa_report.csv")
    g.add_argument("--co", metavar="FILE", help="NANPA allutlzd.txt (NPA-NXX assignments)")
    _import_flags(p, guard=True)
    p.set_defaults(handler=_wrap(_nanpa_import))
    p = n.add_parser("rollback", help="restore the set in force before the last import")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa", action="store_true", help="the area codes (nanpa:npa)")
    g.add_argument("--co", action="store_true", help="the NPA-NXX codes (nanpa:nxx)")
    p.set_defaults(handler=_wrap(_nanpa_rollback))

    for name in ("block", "unblock"):
        p = sub.add_parser(
            name,
            help=f"{name} callers, prefixes or providers",
            description=f"{name.capitalize()} callers (E.164 or NANP), prefixes (+ and "
            "1-15 digits, e.g. +1202555) or provider ids; the running proxy follows at once."
            + (" Exits 1 naming any value that was not blocked." if name == "unblock" else ""),
        )
        p.add_argument("kind", choices=("caller", "prefix", "provider"), help="what to " + name)
        p.add_argument("values", nargs="+", help="numbers, +prefixes or provider ids")
        p.add_argument("--why", help="reason, kept with the entry")
        p.add_argument("--by", help="who made the change")
        p.set_defaults(handler=_wrap(_block))
    a = sub.add_parser("allow", help="allowlist").add_subparsers(dest="allow_kind", required=True)
    p = a.add_parser(
        "caller",
        help="allow a caller (checked before the block lists and the RMD gate)",
    )
    p.add_argument("number", help="caller ID, E.164 or NANP")
    p.add_argument("--until", help="expiry, YYYY-MM-DD or ISO date-time (default: never)")
    p.add_argument("--why", help="reason, kept with the entry")
    p.add_argument("--by", help="who made the change")
    p.set_defaults(handler=_wrap(_allow))

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
    p.set_defaults(handler=_wrap(_records_export))

    rep = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True
    )
    p = rep.add_parser(
        "provider", help="a provider's RMD status, notices, tracebacks and blocked calls"
    )
    p.add_argument("id", help="provider id")
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=_wrap(_report))
    p = rep.add_parser(
        "shaken",
        help="per provider: RMD STIR/SHAKEN implementation claim vs the traffic seen",
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=_wrap(_report_shaken))

    rd = sub.add_parser("redis", help="Redis state").add_subparsers(
        dest="redis_command", required=True
    )
    p = rd.add_parser(
        "confirm-empty",
        help="accept what Redis holds now after a REDIS DATA LOST alarm (restart without data)",
    )
    p.set_defaults(handler=_wrap(_redis_confirm_empty))
