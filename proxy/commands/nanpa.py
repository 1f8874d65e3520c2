"""`sipscreen nanpa`: the allocated area codes and NPA-NXX codes (47 CFR 64.1200(o)).

How this works: the NANPA file is read here and handed to rules.nanpa
(parse_npa_file / parse_co_codes); the codes replace `nanpa:npa` or
`nanpa:nxx` with one RENAME, the set in force kept as `<key>:prev`.
With NANPA data loaded a caller ID in a code missing from it is blocked as
unallocated, so a partial file would block lawful callers: the import has
the drop guard, the dry run and `nanpa rollback` (a swap) of imports.py.
"""

from __future__ import annotations

import argparse

from proxy.commands.common import AdminError, Client, Clock, Subparsers, read_file, wrap
from proxy.commands.imports import (
    check_bad_rows,
    drop_guard_answer,
    import_flags,
    max_share,
    replace_set,
    would_refuse,
)
from rules import nanpa as rnanpa
from rules.imports import drop_guard


def _nanpa_key(args: argparse.Namespace) -> tuple[str, str]:
    return ("nanpa:npa", "area codes") if args.npa else ("nanpa:nxx", "NPA-NXX codes")


async def _nanpa_import(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    # 47 CFR 64.1200(o): with NANPA data loaded, a caller ID in a code missing
    # from it is "unallocated" and blocked: a partial file blocks lawful
    # callers, so the same guard, dry run and undo as the RMD apply.
    if args.npa:
        codes, errors = rnanpa.parse_npa_file(read_file(args.npa))
        path = args.npa
    else:
        codes, errors = rnanpa.parse_co_codes(read_file(args.co))
        path = args.co
    key, what = _nanpa_key(args)
    check_bad_rows(path, errors, args)
    if not codes:
        raise AdminError(f"{path}: no valid codes; {key} unchanged")
    old = set(await r.smembers(prefix + key))
    dropped, added = sorted(old - codes), sorted(codes - old)
    why = drop_guard(what, len(old), len(codes), len(dropped), max_share(args))
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
    drop_guard_answer(args, path, why, "the file")
    if args.dry_run:
        return 2 if would_refuse(args, errors, why) else 0
    await replace_set(r, prefix + key, sorted(codes), keep_previous=True)
    print(f"in force (undo: sipscreen nanpa rollback {'--npa' if args.npa else '--co'})")
    return 0


async def _nanpa_rollback(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
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


def register(sub: Subparsers) -> None:
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
    import_flags(p, guard=True)
    p.set_defaults(handler=wrap(_nanpa_import))
    p = n.add_parser("rollback", help="restore the set in force before the last import")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--npa", action="store_true", help="the area codes (nanpa:npa)")
    g.add_argument("--co", action="store_true", help="the NPA-NXX codes (nanpa:nxx)")
    p.set_defaults(handler=wrap(_nanpa_rollback))
