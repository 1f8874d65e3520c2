"""What every file import shares: the all-or-nothing rule, the drop guard
and the atomic switch of a whole set.

How this works: every import (rmd, nanpa, dno, traceback) is all-or-nothing:
a file with a bad row changes nothing (exit 2, each bad row printed as
`FILE:LINE: column 'X': ...`) unless `--skip-bad-rows` (``check_bad_rows``).
`rmd import` and `nanpa import` also refuse a file that would drop more than
`--max-removed-share` (config `[imports] max_removed_share`, default 5%) of
the entries in force, or that has far fewer rows, unless `--accept-removals`
(``drop_guard_answer``, the finding from rules.imports.drop_guard);
`--dry-run` shows the diff and exits as the import would (``would_refuse``).
``replace_set`` fills a temporary set and switches it in with one RENAME
(dno, nanpa); the NANPA set in force before an import is kept as `<key>:prev`
for `nanpa rollback`.
"""

from __future__ import annotations

import argparse

from proxy.commands.common import AdminError, Client, print_row_errors
from rules.errors import RowError
from rules.imports import DEFAULT_MAX_REMOVED_SHARE, bad_rows_message


def max_share(args: argparse.Namespace) -> float:
    share = getattr(args, "max_removed_share", None)
    return DEFAULT_MAX_REMOVED_SHARE if share is None else float(share)


def share_arg(text: str) -> float:
    try:
        v = float(text.rstrip("%")) / (100.0 if text.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share: {text!r} (e.g. 0.05 or 5%)") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1 (or 0%..100%), got {text!r}")
    return v


def check_bad_rows(path: str, errors: list[RowError], args: argparse.Namespace) -> None:
    """Print each bad row; refuse the whole file unless --skip-bad-rows."""
    print_row_errors(path, errors)
    if errors and not getattr(args, "skip_bad_rows", False):
        if getattr(args, "dry_run", False):
            print(f"dry run: {bad_rows_message(path, errors)}")
            return
        raise AdminError(bad_rows_message(path, errors))


def would_refuse(args: argparse.Namespace, errors: list[RowError], why: str | None) -> bool:
    """Would the import (or the one a dry run shows) be refused?"""
    bad = bool(errors) and not getattr(args, "skip_bad_rows", False)
    return bad or (why is not None and not getattr(args, "accept_removals", False))


def drop_guard_answer(args: argparse.Namespace, path: str, why: str | None, check: str) -> None:
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


def import_flags(p: argparse.ArgumentParser, guard: bool) -> None:
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
        type=share_arg,
        metavar="SHARE",
        help="refuse an import dropping more than this share (default: config "
        f"[imports] max_removed_share, {DEFAULT_MAX_REMOVED_SHARE:g})",
    )


async def replace_set(r: Client, key: str, members: list[str], keep_previous: bool = False) -> None:
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
