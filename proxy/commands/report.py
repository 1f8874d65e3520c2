"""`sipscreen report`: a provider's file, and STIR/SHAKEN claims vs traffic.

How this works: `report provider` gathers what is recorded about one
provider (RMD status and history, notices, orders, traceback evidence,
decisions by day and rule, the STIR/SHAKEN counts) and states the
regulatory basis for blocking its traffic, as Markdown or JSON.
`report shaken` sets each provider's RMD implementation claim beside what
its traffic showed (proxy/shakenstats.py counts).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any, TypedDict

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    hgetall_many,
    iso,
    records_client,
    scan_keys,
    wrap,
)
from proxy.commands.notice_history import notices_of
from proxy.commands.order import provider_orders
from proxy.commands.rmd_filers import provider_filer, provider_hashes
from proxy.records import summary as records_summary
from proxy.shakenstats import claim_vs_seen, seen_key
from rules import k4 as rk4
from rules import notices as rnotices
from rules import traceback as rtraceback
from rules.snapshot import Notice


class _Trace(TypedDict):
    """The traceback evidence filed under one owner (provider or notice)."""

    rows: int
    customers: int
    campaigns: dict[str, int]
    first: str
    last: str


async def _traces(r: Client, prefix: str, owners: list[str]) -> dict[str, _Trace]:
    traces: dict[str, _Trace] = {}
    for owner in owners:
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
    return traces


def _rmd_basis(status: str, order: str, since: str) -> list[str]:
    gate = (
        "intermediate and terminating providers must not accept its traffic directly "
        "(47 CFR 64.6305(g))."
    )
    if status == "removed":
        return [
            "The provider was removed from the Robocall Mitigation Database"
            + (f" by order {order}" if order else " (no order named)")
            + (f" on {since}" if since else "")
            + f"; {gate}"
        ]
    if status == "absent":
        return [
            "The provider's filing is absent from the Robocall Mitigation Database export"
            + (f" (missing since the export of {since})" if since else "")
            + f"; no removal order is recorded; {gate}"
        ]
    if status == "not_listed":
        return [f"The provider has no filing in the Robocall Mitigation Database; {gate}"]
    return []


def _basis(
    pid: str,
    h: Mapping[str, str],
    notices: list[Notice],
    orders: list[dict[str, str]],
    t: float,
) -> list[str]:
    """The regulatory basis for blocking the provider's traffic at ``t``:
    RMD (64.6305(g)), notices (64.1200(k)(4), (n)(2)), FDOs (64.1200(n)(3))."""
    basis = _rmd_basis(
        h.get("rmd_status", "unknown"), h.get("rmd_order", ""), h.get("rmd_since", "")
    )
    for n in notices:
        if n.kind == "k4":
            st = rk4.k4_state(n, t)
            if st.state in (rk4.BLOCK, rk4.PENDING_FCC):
                _, why = rk4.k4_check(n, pid, h.get("name", ""), h.get("monitor_only") == "1", t)
                basis.append(f"Notice {n.id} (issued {iso(n.issued)}, {st.state}): {why}")
        else:
            basis.append(
                f"Notice {n.id} identifies campaigns {', '.join(n.campaigns) or '(none)'}: "
                "traffic substantially similar is blocked (47 CFR 64.1200(n)(2))."
            )
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
    return basis


async def _report(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    pid = args.id
    h = await r.hgetall(prefix + f"provider:{pid}")
    if not h:
        raise AdminError(f"provider {pid}: not found")
    _, num = await provider_filer(r, prefix, h)  # tied by RMD number, FRN or OCN
    filer = await r.hgetall(prefix + f"rmd:filer:{num}") if num else {}
    history = (
        [json.loads(x) for x in await r.lrange(prefix + f"rmd:history:{num}", 0, -1)] if num else []
    )
    notices = await notices_of(r, prefix, pid)
    traces = await _traces(r, prefix, [pid, *(n.id for n in notices)])
    async with records_client(args, r) as rr:
        counts = await records_summary(rr, prefix, pid)
    t = now()
    orders = await provider_orders(r, prefix, pid)
    basis = _basis(pid, h, notices, orders, t)
    shaken = claim_vs_seen(h.get("implementation", ""), await r.hgetall(seen_key(prefix, pid)))
    doc = {
        "provider": pid,
        "name": h.get("name", ""),
        "rmd_number": num,
        "frn": h.get("frn", ""),
        "ocn": h.get("ocn", ""),
        "rmd_status": h.get("rmd_status", "unknown"),
        "rmd_order": h.get("rmd_order", ""),
        "rmd_since": h.get("rmd_since", ""),
        "rmd_filer": filer,
        "rmd_history": history,
        "notices": [
            {
                k: (iso(v) if isinstance(v, float) else v)
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
        "generated": iso(t),
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
    lines += _notices_md(notices) + _orders_md(orders) + _traces_md(traces)
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
    lines += [_SHAKEN_HEAD, _SHAKEN_RULE, _shaken_row(pid, h.get("name", ""), shaken)]
    lines += ["", "## Basis", ""]
    lines += [f"- {b}" for b in basis]
    print("\n".join(lines))
    return 0


def _notices_md(notices: list[Notice]) -> list[str]:
    lines = ["", "## Notices", ""]
    for n in notices:
        lines.append(
            f"- {n.id} ({n.kind}) issued {iso(n.issued)}; mitigation due "
            f"{iso(n.mitigation_due)}; report due {iso(n.report_due)}; mitigated "
            f"{iso(n.mitigated) if n.mitigated else 'not recorded'}; reported "
            f"{iso(n.reported) if n.reported else 'not recorded'}; FCC notified "
            f"{iso(n.fcc_notified) if n.fcc_notified else 'no'}"
        )
    if not notices:
        lines.append("- none")
    return lines


def _orders_md(orders: list[dict[str, str]]) -> list[str]:
    lines = ["", "## Final Determination Orders", ""]
    for o in orders:
        state = (
            f"blocks from {o['blocks_from']}"
            if o["status"] == "active"
            else f"removed {o['removed_at']}: {o['removed_reason']}"
        )
        lines.append(f"- {o['id']} ({o['order']}) released {o['released']}; {state}")
    if not orders:
        lines.append("- none")
    return lines


def _traces_md(traces: Mapping[str, _Trace]) -> list[str]:
    lines = ["", "## Traceback evidence", ""]
    for owner, tr in traces.items():
        lines.append(
            f"- {owner}: {tr['rows']} traced calls, {tr['customers']} customers, "
            f"{tr['first']} to {tr['last']}; campaigns: "
            + ", ".join(f"{k} ({v})" for k, v in tr["campaigns"].items())
        )
    if not traces:
        lines.append("- none")
    return lines


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


async def _report_shaken(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    """Per provider: the RMD STIR/SHAKEN implementation claim next to what its
    traffic showed ([shaken] on: proxy/shakenstats.py counts)."""
    provs = {k[len(prefix) + len("provider:") :]: h for k, h in await provider_hashes(r, prefix)}
    seen_pfx = seen_key(prefix, "")
    seen_ids = sorted(k[len(seen_pfx) :] for k in await scan_keys(r, seen_pfx + "*"))
    seen = dict(zip(seen_ids, await hgetall_many(r, [seen_pfx + i for i in seen_ids]), strict=True))
    rows = []
    for pid in sorted(set(provs) | set(seen)):
        h = provs.get(pid, {})
        c = claim_vs_seen(h.get("implementation", ""), seen.get(pid, {}))
        if c["implementation"] or c["calls"]:
            rows.append({"provider": pid, "name": h.get("name", ""), **c})
    if args.format == "json":
        print(json.dumps({"providers": rows, "generated": iso(now())}, indent=2))
        return 0
    lines = [
        "# STIR/SHAKEN: RMD implementation claim and traffic seen, by provider",
        "",
        f"Generated {iso(now())}. signed = calls that carried an Identity header "
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


def register(sub: Subparsers) -> None:
    rep = sub.add_parser("report", help="reports").add_subparsers(
        dest="report_command", required=True
    )
    p = rep.add_parser(
        "provider", help="a provider's RMD status, notices, tracebacks and blocked calls"
    )
    p.add_argument("id", help="provider id")
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=wrap(_report))
    p = rep.add_parser(
        "shaken",
        help="per provider: RMD STIR/SHAKEN implementation claim vs the traffic seen",
    )
    p.add_argument("--format", choices=("md", "json"), default="md", help="md (default) or json")
    p.set_defaults(handler=wrap(_report_shaken))
