"""`sipscreen dno import`: the inbound-only do-not-originate list (47 CFR 64.1200(o)).

How this works: the text file is read here and handed to
rules.dno.parse_dno_list; the numbers replace `dno:caller` with one RENAME
(imports.replace_set), all or nothing.
"""

from __future__ import annotations

import argparse

from proxy.commands.common import AdminError, Client, Clock, Subparsers, read_file, wrap
from proxy.commands.imports import check_bad_rows, import_flags, replace_set
from rules import dno as rdno


async def _dno_import(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    entries, errors = rdno.parse_dno_list(read_file(args.file))
    check_bad_rows(args.file, errors, args)
    if not entries:
        raise AdminError(f"{args.file}: no valid numbers; dno:caller unchanged")
    await replace_set(r, prefix + "dno:caller", [e for e, _ in entries])
    skipped = f" ({len(errors)} bad lines skipped)" if errors else ""
    print(f"dno:caller: {len(entries)} numbers{skipped}")
    return 0


def register(sub: Subparsers) -> None:
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
    import_flags(p, guard=False)
    p.set_defaults(handler=wrap(_dno_import))
