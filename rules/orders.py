"""Enforcement Bureau orders against a provider: Final Determination Orders.

How this works: 47 CFR 64.1200(n)(3): when the Enforcement Bureau issues a
Final Determination Order finding that an upstream provider failed to act
on a Notice of Suspected Illegal Traffic, every provider immediately
downstream must block and cease accepting all traffic received directly
from it "beginning 30 days after the release date" of the order.

Reading of that date: the release date is a calendar day of the Commission
(US Eastern time). Counting per 47 CFR 1.4 (the day of the event is not
counted), the 30th day after a release on day R is R + 30; blocking begins
at the start (00:00 US Eastern) of that day and is in force for the whole of
it. Until then the engine allows the provider's calls and counts them as
would-block, naming the day blocking starts. :func:`fdo_blocks_from` keeps
this arithmetic here, on its own, on top of rules/notices.py's
``eastern_midnight`` (00:00 US Eastern of a day, DST included).

A record (Redis hash ``order:<id>``, docs/REDIS.md) holds ``provider``,
``kind`` (``fdo``), ``order`` (the FCC document number, ``DA 24-123``),
``released`` (ISO date), ``status`` (``active`` / ``removed``) and, once
removed, ``removed_at`` and ``removed_reason``; its history is the
append-only list ``order:history:<id>``. Only active orders reach the
snapshot. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta

from rules.notices import eastern_midnight
from rules.snapshot import ORDER_KINDS, Order

__all__ = [
    "FDO_DAYS",
    "ORDER_STATUSES",
    "fdo_blocks_from",
    "fdo_blocks_from_day",
    "order_from_record",
    "order_id_for",
    "parse_release_date",
    "valid_order_id",
]

FDO_DAYS = 30  # 47 CFR 64.1200(n)(3): "beginning 30 days after the release date"
ORDER_STATUSES = ("active", "removed")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DOC_RE = re.compile(r"^(DA|FCC)[ -]?(\d{2})-(\d{1,5})$", re.IGNORECASE)


def parse_release_date(text: str) -> date:
    """An ISO calendar date (``2024-05-01``); ValueError otherwise.

    An order's release date is a day, not an instant: a time is refused
    rather than silently reduced to its (UTC or Eastern?) day.
    """
    s = text.strip()
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def fdo_blocks_from_day(released: date) -> date:
    """The US Eastern calendar day blocking begins: release day + 30."""
    return released + timedelta(days=FDO_DAYS)


def fdo_blocks_from(released: date) -> float:
    """UNIX epoch seconds at which blocking begins: 00:00 US Eastern on
    release day + 30 (see the module docstring for the reading)."""
    return _eastern_midnight(fdo_blocks_from_day(released))


def _eastern_midnight(day: date) -> float:
    # rules.notices.eastern_midnight: 00:00 US Eastern (EST/EDT) of ``day``.
    return eastern_midnight(day).timestamp()


def valid_order_id(oid: str) -> bool:
    """Letters, digits, ``_``, ``-``, ``.``; at most 64; no ``:`` (key schema)."""
    return bool(_ID_RE.match(oid)) and oid.isascii()


def order_id_for(document: str) -> str:
    """``"DA 24-123"`` → ``"DA-24-123"`` (the default id of an order)."""
    m = _DOC_RE.match(document.strip())
    if m is None:
        raise ValueError(
            f"not an FCC document number such as 'DA 24-123': {document!r} (give --id)"
        )
    return f"{m.group(1).upper()}-{m.group(2)}-{m.group(3)}"


def order_from_record(h: Mapping[str, str], oid: str) -> Order | None:
    """The :class:`Order` in force for hash ``order:<oid>``; None when removed.

    ValueError names the field that is missing or malformed.
    """
    status = h.get("status", "active") or "active"
    if status not in ORDER_STATUSES:
        raise ValueError(f"status must be one of {', '.join(ORDER_STATUSES)}, got {status!r}")
    provider = (h.get("provider") or "").strip()
    if not provider:
        raise ValueError("provider: missing")
    kind = h.get("kind", "fdo") or "fdo"
    if kind not in ORDER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ORDER_KINDS)}, got {kind!r}")
    released_raw = h.get("released", "")
    try:
        released = parse_release_date(released_raw)
    except ValueError as exc:
        raise ValueError(f"released: {exc}") from None
    if status == "removed":
        return None
    return Order(
        id=oid,
        provider=provider,
        kind=kind,
        order=(h.get("order") or oid).strip(),
        released=_eastern_midnight(released),
        blocks_from=fdo_blocks_from(released),
    )
