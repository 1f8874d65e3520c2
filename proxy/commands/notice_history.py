"""The notice records in Redis: a hash and its append-only history.

How this works: a notice is the hash `notice:<id>` (its fields derived from
the history) plus `notice:<id>:history`, a LIST of JSON entries (issued,
mitigated, reported, determination, fcc_notified, correction), never
rewritten. ``append_event`` appends one entry and rewrites the derived
fields (rules.notices.derive_fields) in one MULTI/EXEC under WATCH; a notice
written before histories existed gets its recorded fields as entries first
(``_legacy_events``). `notice`, `check --at` and `report provider` read the
notices through here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from redis.exceptions import WatchError

from proxy.commands.common import AdminError, Client, scan_keys
from rules import notices as rnotices
from rules.snapshot import Notice

__all__ = ["append_event", "history_key", "load_notice", "notice_history", "notices_of"]


def history_key(prefix: str, nid: str) -> str:
    return prefix + f"notice:{nid}:history"


async def notice_history(r: Client, prefix: str, nid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await r.lrange(history_key(prefix, nid), 0, -1)]


async def load_notice(r: Client, prefix: str, nid: str) -> Notice:
    h = await r.hgetall(prefix + f"notice:{nid}")
    if not h:
        raise AdminError(f"notice {nid}: not found")
    try:
        return rnotices.notice_from_record(h, nid)
    except ValueError as exc:
        raise AdminError(f"notice:{nid}: {exc}") from None


def _legacy_events(n: Notice, recorded: float) -> list[dict[str, object]]:
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


async def append_event(
    r: Client, prefix: str, nid: str, make: Callable[[int], dict[str, object]], now: float
) -> dict[str, object]:
    """Append one entry to the notice's history and rewrite the derived HASH
    fields, in one MULTI/EXEC under WATCH (a concurrent append retries)."""
    hkey, key = history_key(prefix, nid), prefix + f"notice:{nid}"
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
            p.hset(key, mapping=fields)
            try:
                await p.execute()
            except WatchError:
                continue
            return entry


async def notices_of(r: Client, prefix: str, provider: str | None) -> list[Notice]:
    out = []
    for key in sorted(await scan_keys(r, prefix + "notice:*")):
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
