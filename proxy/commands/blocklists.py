"""`sipscreen block`, `unblock` and `allow`: the operator's lists.

How this works: `block`/`unblock` add or remove callers (`block:caller`),
prefixes (`block:prefix`) or provider ids (`block:provider`) through the
store, which the running proxies follow at once; an unblock of a value that
was not blocked exits 1 naming it. `allow caller` adds an allowlist entry,
optionally expiring (`--until`).
"""

from __future__ import annotations

import argparse
import sys

from proxy.commands.common import (
    Client,
    Clock,
    Subparsers,
    entry_meta,
    iso,
    make_store,
    when_arg,
    wrap,
)
from proxy.store.keys import valid_prefix
from rules.numbers import normalise

_BLOCK_SETS = {"caller": "block:caller", "prefix": "block:prefix", "provider": "block:provider"}


def _block_member(kind: str, raw: str) -> str | None:
    """The set member `block`/`unblock` writes for `raw` (None: malformed)."""
    if kind == "caller":
        return normalise(raw.strip())
    if kind == "prefix":
        return valid_prefix(raw)
    return raw


async def _block(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    store = make_store(r, prefix, now)
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
            done = await store.block_caller(args.values, entry_meta(args))
    elif args.kind == "prefix":
        done = await store.block_prefix(args.values, entry_meta(args), remove=remove)
    else:
        done = await store.block_provider(args.values, entry_meta(args), remove=remove)
    verb = "unblocked" if remove else "blocked"
    changed = [d for d in done if d not in absent]
    if changed:
        print(f"{verb} {args.kind}: {' '.join(changed)}")
    if absent:
        print(f"sipscreen: {args.kind} not blocked: {' '.join(absent)}", file=sys.stderr)
        return 1
    return 0


async def _allow(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    store = make_store(r, prefix, now)
    until = when_arg(args.until, "--until", "end") if args.until else None
    n = await store.allow_caller(args.number, until, entry_meta(args))
    print(f"allowed caller {n}" + (f" until {iso(until)}" if until else ""))
    return 0


def register(sub: Subparsers) -> None:
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
        p.set_defaults(handler=wrap(_block))
    a = sub.add_parser("allow", help="allowlist").add_subparsers(dest="allow_kind", required=True)
    p = a.add_parser(
        "caller",
        help="allow a caller (checked before the block lists and the RMD gate)",
    )
    p.add_argument("number", help="caller ID, E.164 or NANP")
    p.add_argument("--until", help="expiry, YYYY-MM-DD or ISO date-time (default: never)")
    p.add_argument("--why", help="reason, kept with the entry")
    p.add_argument("--by", help="who made the change")
    p.set_defaults(handler=wrap(_allow))
