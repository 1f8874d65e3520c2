"""`sipscreen order`: Enforcement Bureau orders (Final Determination Orders).

Order keys written here (docs/REDIS.md), 47 CFR 64.1200(n)(3):
  order:<id>             HASH    provider, kind (fdo), order ("DA 24-123"),
                                 released (YYYY-MM-DD), status (active/removed),
                                 added_at, added_by, removed_at, removed_reason
  order:history:<id>     LIST    JSON events (added, removed), append-only
`order remove` marks the hash removed and appends to the history: never a DEL.
"""

from __future__ import annotations

import argparse
import json

from proxy.commands.common import AdminError, Client, Clock, Subparsers, iso, scan_keys, wrap
from rules import orders as rorders


async def provider_orders(r: Client, prefix: str, pid: str) -> list[dict[str, str]]:
    """Every order recorded against provider ``pid`` (in force or removed),
    with the instant it blocks from (`report provider`)."""
    out: list[dict[str, str]] = []
    for key in sorted(await scan_keys(r, prefix + "order:*")):
        oid = key[len(prefix) + len("order:") :]
        if ":" in oid:
            continue
        h = await r.hgetall(key)
        if h.get("provider") != pid:
            continue
        try:
            start = iso(rorders.fdo_blocks_from(rorders.parse_release_date(h.get("released", ""))))
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


def _order_history_key(prefix: str, oid: str) -> str:
    return prefix + f"order:history:{oid}"


def _plain_id(text: str) -> bool:
    return 0 < len(text) <= 64 and text.isascii() and all(c.isalnum() or c in "_-." for c in text)


async def _order_add(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
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
    stamp = iso(now())
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
        tx.hset(key, mapping=record)
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
        f"({iso(start)}); until then counted as would_block fdo"
    )
    return 0


async def _order_list(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    at = now()
    for key in sorted(await scan_keys(r, prefix + "order:*")):
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
            state = "BLOCKING" if at >= start else f"blocks from {iso(start)}"
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


async def _order_remove(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    reason = " ".join((args.reason or "").split())
    if not reason:
        raise AdminError("--reason: say why the order no longer applies (kept in its history)")
    key = prefix + f"order:{args.id}"
    h = await r.hgetall(key)
    if not h:
        raise AdminError(f"order {args.id}: not found")
    if (h.get("status") or "active") != "active":
        raise AdminError(f"order {args.id}: already removed {h.get('removed_at', '')}")
    stamp = iso(now())
    event = {"at": stamp, "event": "removed", "by": args.by or "", "reason": reason}
    async with r.pipeline(transaction=True) as tx:
        # Not a DEL: the record stays, marked removed, and the history grows.
        tx.hset(key, mapping={"status": "removed", "removed_at": stamp, "removed_reason": reason})
        tx.rpush(_order_history_key(prefix, args.id), json.dumps(event, sort_keys=True))
        await tx.execute()
    print(f"order {args.id}: removed {stamp} ({reason}); no longer blocks")
    return 0


def register(sub: Subparsers) -> None:
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
    p.set_defaults(handler=wrap(_order_add))
    p = order.add_parser("list", help="orders in force (--all: removed ones too)")
    p.add_argument("--provider", help="only this provider's orders")
    p.add_argument("--all", action="store_true", help="removed orders too")
    p.add_argument("--history", action="store_true", help="print each order's history")
    p.set_defaults(handler=wrap(_order_list))
    p = order.add_parser("remove", help="record that an order no longer applies")
    p.add_argument("id", help="order id (see order list)")
    p.add_argument("--reason", required=True, help="why it no longer applies (kept in history)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_order_remove))
