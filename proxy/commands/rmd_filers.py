"""The RMD fields of filers and providers, shared by `rmd`, `provider set`,
`check --at` and `report`.

How this works: a provider hash is tied to an RMD filer by its own
`rmd_number`, else by FRN (`rmd:by_frn`), else by OCN (`rmd:by_ocn`)
(``filer_num``); its `rmd_status` / `rmd_order` / `rmd_since` follow the
filer hash `rmd:filer:<rmd_number>` (``provider_rmd``): listed, absent
(missing from the export, no order), removed (an FCC order), not_listed
(in no export), unknown (no RMD snapshot yet) (47 CFR 64.6305(g)).
``provider_changes`` lists every provider whose fields an RMD change moves.
Versions are "<as-of date>.<seq>" (``version_seq``) scored YYYYMMDD in
`rmd:versions` (``as_of_score``). An import or a rollback switches the
snapshot under WATCH of `rmd:current` (``still_current``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from proxy.commands.common import AdminError, Client, hgetall_many, scan_keys
from rules import rmd as rrmd


def version_seq(version: str) -> tuple[str, int]:
    # "2025-09-01.3" -> ("2025-09-01", 3); a version of the old scheme -> (v, 0).
    day, _, seq = version.rpartition(".")
    return (day, int(seq)) if seq.isdigit() and day else (version, 0)


def as_of_score(day: str) -> int:
    return int(day.replace("-", ""))  # 2025-09-01 -> 20250901: readable and ordered


async def filer_hashes(r: Client, prefix: str, nums: list[str]) -> dict[str, dict[str, str]]:
    """rmd:filer:<num> of each number that has one."""
    hashes = await hgetall_many(r, [prefix + f"rmd:filer:{n}" for n in nums])
    return {n: h for n, h in zip(nums, hashes, strict=True) if h}


async def provider_hashes(r: Client, prefix: str) -> list[tuple[str, dict[str, str]]]:
    keys = [
        k
        for k in sorted(await scan_keys(r, prefix + "provider:*"))
        if k.count(":") == prefix.count(":") + 1
    ]
    return list(zip(keys, await hgetall_many(r, keys), strict=True))


def filer_num(h: Mapping[str, str], by_frn: Mapping[str, str], by_ocn: Mapping[str, str]) -> str:
    """The RMD number a provider hash is tied to: its own, else by FRN, else by OCN."""
    return (
        h.get("rmd_number", "")
        or (by_frn.get(h["frn"], "") if h.get("frn") else "")
        or (by_ocn.get(h["ocn"], "") if h.get("ocn") else "")
    )


def filer_since(filer: Mapping[str, str]) -> str:
    status = filer.get("status", "")
    return {
        rrmd.REMOVED: filer.get("removed_since", ""),
        rrmd.ABSENT: filer.get("absent_since", ""),
        rrmd.LISTED: filer.get("listed_since", ""),
    }.get(status, "")


def provider_rmd(filer: Mapping[str, str] | None, has_snapshot: bool) -> dict[str, str]:
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
            "rmd_since": filer_since(filer),
            **claim,
        }
    return {"rmd_status": status, "rmd_order": order, "rmd_since": filer_since(filer), **claim}


async def provider_changes(
    r: Client,
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
    provs = await provider_hashes(r, prefix)
    nums = [filer_num(h, by_frn, by_ocn) for _, h in provs]
    more = await filer_hashes(r, prefix, sorted({n for n in nums if n and n not in filers}))
    for (key, h), num in zip(provs, nums, strict=True):
        if not (h.get("rmd_number") or h.get("frn") or h.get("ocn")):
            continue  # not tied to an RMD identity: its rmd_status is the operator's
        filer = (filers[num] if num in filers else more.get(num)) if num else None
        want = provider_rmd(filer, has_snapshot)
        fields = {k: v for k, v in want.items() if h.get(k, "") != v}
        if fields:
            was = h.get("rmd_status", "-")
            pid = key[len(prefix) + len("provider:") :]
            out.append((key, fields, f"provider:{pid}: {was} -> {want['rmd_status']}"))
    return out


async def provider_filer(
    r: Client, prefix: str, h: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """RMD fields of a provider hash (for `provider set`) and its RMD number."""
    by_frn = {h["frn"]: await r.hget(prefix + "rmd:by_frn", h["frn"]) or ""} if h.get("frn") else {}
    by_ocn = {h["ocn"]: await r.hget(prefix + "rmd:by_ocn", h["ocn"]) or ""} if h.get("ocn") else {}
    num = filer_num(h, by_frn, by_ocn)
    filer = await r.hgetall(prefix + f"rmd:filer:{num}") if num else {}
    # 47 CFR 64.6305(g): a provider absent from the RMD is "not listed" once
    # an RMD snapshot exists to compare with.
    has = bool(await r.exists(prefix + "rmd:current"))
    return provider_rmd(filer, has), num


async def still_current(tx: Client, prefix: str, version: str) -> None:
    """WATCH `rmd:current` and check it still names ``version`` (what the
    import or rollback was computed from); then start the MULTI. Another
    import in between makes EXEC fail (WatchError), not interleave."""
    key = prefix + "rmd:current"
    await tx.watch(key)
    if (await tx.get(key) or "") != version:
        await tx.unwatch()
        raise AdminError("the RMD snapshot in force changed meanwhile (another import?); run again")
    tx.multi()


def history_event(day: str, event: str, **extra: str) -> str:
    """One `rmd:history:<rmd_number>` entry (JSON)."""
    return json.dumps({"date": day, "event": event, **extra}, separators=(",", ":"))
