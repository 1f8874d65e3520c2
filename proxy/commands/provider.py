"""`sipscreen provider set`: create or update `provider:<id>`.

How this works: the given fields are merged with the hash in Redis; a
provider tied to an RMD identity (rmd_number, FRN or OCN) gets its
rmd_status / rmd_order / rmd_since from the filer it is tied to
(rmd_filers.provider_filer, 47 CFR 64.6305(g)); the store writes it and the
running proxies follow.
"""

from __future__ import annotations

import argparse
import re

from proxy.commands.common import AdminError, Client, Clock, Subparsers, make_store, wrap
from proxy.commands.rmd_filers import provider_filer
from rules import rmd as rrmd


async def _provider_set(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
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
    rmd_fields, _ = await provider_filer(r, prefix, merged)
    if merged.get("rmd_number") or merged.get("frn") or merged.get("ocn"):
        fields.update(rmd_fields)
    elif "rmd_status" not in cur:
        fields["rmd_status"] = "unknown"
    store = make_store(r, prefix, now)
    written = await store.set_provider(args.id, **fields)
    print(f"provider:{args.id} " + " ".join(f"{k}={v}" for k, v in sorted(written.items())))
    return 0


def register(sub: Subparsers) -> None:
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
    p.set_defaults(handler=wrap(_provider_set))
