"""`sipscreen check`: explain the decision for one call, rule by rule.

How this works: the snapshot is loaded from Redis with the running proxy's
decision settings (the config's emergency numbers and callers,
unmapped_provider_policy, k4 deadline, trunk map: proxy/cli.py fills
``args.screen_config`` and ``args.trunks``), then rules.engine.explain and
decide run on it. `--at` replays a past instant: the RMD status each
provider had that day (``_rmd_at``, from the versioned snapshots and the
removal orders dated by then) and the notices and orders as they stood
(``_notices_orders_at``). Exit 0 allowed, 1 blocked, 2 bad input, 3 Redis
unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    day_arg,
    hgetall_many,
    iso,
    make_store,
    scan_keys,
    when_arg,
    wrap,
)
from proxy.commands.notice_history import notice_history
from proxy.commands.rmd_filers import as_of_score, filer_num, version_seq
from proxy.config import Config
from rules import notices as rnotices
from rules import orders as rorders
from rules import rmd as rrmd
from rules.engine import Check, decide, explain
from rules.facts import CallFacts
from rules.numbers import normalise, overlong_nanp
from rules.snapshot import Snapshot
from rules.verdict import Verdict

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


async def _check(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    # a +1 caller ID longer than E.164 allows is judged as the proxy judges it
    caller = normalise(args.caller) or overlong_nanp(args.caller)
    if caller is None:
        raise AdminError(f"--caller: not a phone number: {args.caller!r}")
    callee = _check_callee(args.callee)
    at = when_arg(args.at, "--at") if args.at else now()
    provider = args.provider
    if provider is None and args.source and getattr(args, "trunks", None) is not None:
        provider = args.trunks.lookup(args.source)
    config: Config | None = getattr(args, "screen_config", None)
    store = make_store(r, prefix, now, config)
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
        _print_json(facts, at, snap, checks, verdict, code)
    else:
        _print_text(facts, at, snap, checks, verdict)
    return code


def _print_json(
    facts: CallFacts,
    at: float,
    snap: Snapshot,
    checks: list[Check],
    verdict: Verdict,
    code: int,
) -> None:
    print(
        json.dumps(
            {
                "caller": facts.caller,
                "callee": facts.callee,
                "provider": facts.provider,
                "at": iso(at),
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


def _print_text(
    facts: CallFacts, at: float, snap: Snapshot, checks: list[Check], verdict: Verdict
) -> None:
    caller, callee, provider = facts.caller, facts.callee, facts.provider
    print(f"caller {caller}  callee {callee or '-'}  provider {provider or '-'}  at {iso(at)}")
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


async def _rmd_at(r: Client, prefix: str, snap: Snapshot, at_text: str, at: float) -> None:
    """Set each provider's RMD status in ``snap`` to what it was on the day of
    ``at`` (`check --at`): 47 CFR 64.6305(g) as it stood then, from the
    snapshot in force that day (newest as-of on or before it) and the removal
    orders dated on or before it. No snapshot that old: status unknown."""
    day = day_arg(at_text, "--at")
    rows = await r.zrangebyscore(prefix + "rmd:versions", 0, as_of_score(day), withscores=True)
    versions = sorted((str(v) for v, _ in rows), key=version_seq)
    meta = await hgetall_many(r, [prefix + f"rmd:meta:{v}" for v in versions])
    as_of = [m.get("as_of") or version_seq(v)[0] for v, m in zip(versions, meta, strict=True)]
    by_frn = await r.hgetall(prefix + "rmd:by_frn")
    by_ocn = await r.hgetall(prefix + "rmd:by_ocn")
    for pid, p in list(snap.providers.items()):
        h = {"rmd_number": p.rmd_number, "frn": p.frn, "ocn": p.ocn}
        if not (p.rmd_number or p.frn or p.ocn):
            continue
        num = filer_num(h, by_frn, by_ocn)
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


async def _notices_orders_at(r: Client, prefix: str, snap: Snapshot, at: float) -> None:
    """The notices and orders in ``snap`` as they stood at ``at`` (`check --at`):
    each notice's fields from its history entries dated on or before ``at``
    (rules.notices.notice_as_of), and a Final Determination Order removed
    after ``at`` back in force (47 CFR 64.1200(n)(3) as it applied then)."""
    for provider, notices in snap.notices.items():
        snap.notices[provider] = [
            rnotices.notice_as_of(n, await notice_history(r, prefix, n.id), at) for n in notices
        ]
    for key in await scan_keys(r, prefix + "order:*"):
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


def register(sub: Subparsers) -> None:
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
    p.set_defaults(handler=wrap(_check, CHECK_REDIS_DOWN), trunks=None, screen_config=None)
