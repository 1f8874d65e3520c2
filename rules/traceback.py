"""Attachment A of an FCC Enforcement Bureau letter: the traced calls.

How this works: a cease-and-desist letter under 47 CFR 64.1200(k)(4) lists,
in its Attachment A, every call the Traceback Consortium (47 CFR 64.1203)
traced to the provider: upstream customer, time(s) the ITG notified the
provider, call time (UTC), caller ID, called number, campaign ("SSA
Imposter") and the violation. Text extracted from the PDF is tab-separated,
with blank lines at page breaks. ``parse_attachment_a`` finds the header row
anywhere in the text (everything before it is the letter), maps the columns
by name, and parses each row: a notification cell may hold several
timestamps, months come as "Sep" or "Sept". Customer names that differ only
in case, spacing or trailing punctuation ("... Pvt. Ltd" / "... Pvt. Ltd.")
are merged under the spelling used most often; campaign typos are fixed by
an explicit table (``CAMPAIGN_CORRECTIONS``), keeping the raw text beside.
``summarise`` gives the counts an operator reports when it tells the FCC it
will block the provider (47 CFR 64.1200(k)(4)).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rules.errors import RowError
from rules.notices import MONTHS

__all__ = [
    "CAMPAIGN_CORRECTIONS",
    "NO_RESPONSE",
    "TracebackSummary",
    "TracedCall",
    "parse_attachment_a",
    "parse_timestamps",
    "summarise",
]

# The customer cell when the provider never answered the traceback request.
NO_RESPONSE = "No Response"

# Campaign labels as typed in letters → the label used for counting.
# Keys are compared lower-cased with single spaces.
CAMPAIGN_CORRECTIONS: dict[str, str] = {
    "utility disconnect sam": "Utility Disconnect Scam",
    "arrest warrant": "Arrest Warrant Scam",
}

# "Aug 27, 2021 14:20", "Sept 30, 2021 19:25", "Oct 12, 2021 19:57 UTC".
_STAMP_RE = re.compile(
    r"(?P<mon>[A-Za-z]{3})[A-Za-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?P<year>\d{4})"
    r"\s+(?P<hh>\d{1,2}):(?P<mm>\d{2})(?::(?P<ss>\d{2}))?(?:\s*UTC)?"
)
_HEADER_JUNK_RE = re.compile(r"[^a-z0-9]+")

# Column name (after lower-casing and dropping non-alphanumerics) → field.
_HEADERS: dict[str, str] = {
    "customer": "customer",
    "upstreamcustomer": "customer",
    "dateofitgnotification": "notified",
    "itgnotification": "notified",
    "dateofnotification": "notified",
    "dateofcall": "call_time",
    "calldate": "call_time",
    "callerid": "caller_id",
    "callednumber": "called_number",
    "description": "campaign",
    "campaign": "campaign",
    "violation": "violation",
}
_REQUIRED = ("customer", "notified", "call_time")
_COLUMN_NAMES = {
    "customer": "Customer",
    "notified": "Date of ITG Notification",
    "call_time": "Date of Call",
    "campaign": "Description",
}


@dataclass(frozen=True, slots=True)
class TracedCall:
    """One row of Attachment A. Times are aware datetimes in UTC."""

    line: int
    customer: str
    customer_raw: str
    notified: tuple[datetime, ...]
    call_time: datetime
    caller_id: str
    called_number: str
    campaign: str
    campaign_raw: str
    violation: str

    @property
    def customer_identified(self) -> bool:
        return self.customer != NO_RESPONSE


@dataclass(frozen=True, slots=True)
class TracebackSummary:
    """Counts over the traced calls (``campaigns``/``customers`` most frequent first)."""

    rows: int
    distinct_customers: int
    campaigns: dict[str, int]
    first_call: datetime | None
    last_call: datetime | None
    customers: dict[str, int] = field(default_factory=dict)
    no_response: int = 0


def _month(name: str) -> int | None:
    return MONTHS.get(name[:3].lower())


def parse_timestamps(cell: str) -> list[datetime]:
    """Every "Mon DD, YYYY HH:MM" in ``cell`` as UTC; ValueError on leftover text.

    Attachment A states the call column in UTC and gives no zone for the
    notification column; both are read as UTC.
    """
    out: list[datetime] = []
    pos = 0
    for m in _STAMP_RE.finditer(cell):
        if cell[pos : m.start()].strip(" ,;"):
            raise ValueError(f"unreadable text {cell[pos : m.start()].strip()!r}")
        month = _month(m["mon"])
        if month is None:
            raise ValueError(f"unknown month {m['mon']!r}")
        out.append(
            datetime(
                int(m["year"]),
                month,
                int(m["day"]),
                int(m["hh"]),
                int(m["mm"]),
                int(m["ss"] or 0),
                tzinfo=UTC,
            )
        )
        pos = m.end()
    if cell[pos:].strip(" ,;"):
        raise ValueError(f"unreadable text {cell[pos:].strip()!r}")
    return out


def _customer_key(name: str) -> str:
    # "Spinning Mantra Communications Pvt. Ltd" == "... Pvt. Ltd." == "... PVT. LTD.".
    return " ".join(name.lower().split()).rstrip(" .,;:")


def _campaign(raw: str) -> str:
    clean = " ".join(raw.split())
    return CAMPAIGN_CORRECTIONS.get(clean.lower(), clean)


def _find_header(lines: Sequence[str]) -> tuple[int, dict[int, str]] | None:
    for idx, line in enumerate(lines):
        if "\t" not in line:
            continue
        columns: dict[int, str] = {}
        for i, cell in enumerate(line.split("\t")):
            fld = _HEADERS.get(_HEADER_JUNK_RE.sub("", cell.lower()))
            if fld is not None and fld not in columns.values():
                columns[i] = fld
        if all(req in columns.values() for req in _REQUIRED):
            return idx, columns
    return None


def parse_attachment_a(text: str) -> tuple[list[TracedCall], list[RowError]]:
    """Parse the traced-call table; rows before its header row are ignored."""
    lines = text.splitlines()
    found = _find_header(lines)
    if found is None:
        return [], [RowError(1, "Customer", "no Attachment A header row found")]
    header_idx, columns = found
    calls: list[TracedCall] = []
    errors: list[RowError] = []
    for idx in range(header_idx + 1, len(lines)):
        line_no = idx + 1
        raw = lines[idx]
        if not raw.strip():
            continue  # page break
        if "\t" not in raw:
            errors.append(RowError(line_no, "", "not a tab-separated Attachment A row"))
            continue
        cells_list = raw.split("\t")
        cells = {fld: cells_list[i].strip() for i, fld in columns.items() if i < len(cells_list)}
        if _find_header([raw]) is not None:
            continue  # header repeated on a later page
        try:
            call = _row(line_no, cells)
        except _BadCell as bad:
            errors.append(RowError(line_no, _COLUMN_NAMES[bad.fld], bad.message))
            continue
        calls.append(call)
    return _merge_customers(calls), errors


class _BadCell(Exception):
    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.fld = fld
        self.message = message


def _row(line_no: int, cells: dict[str, str]) -> TracedCall:
    customer_raw = " ".join(cells.get("customer", "").split())
    if not customer_raw:
        raise _BadCell("customer", "empty customer")
    try:
        notified = tuple(sorted(parse_timestamps(cells.get("notified", ""))))
    except ValueError as exc:
        raise _BadCell("notified", str(exc)) from None
    if not notified:
        raise _BadCell("notified", "no notification time")
    try:
        call_times = parse_timestamps(cells.get("call_time", ""))
    except ValueError as exc:
        raise _BadCell("call_time", str(exc)) from None
    if len(call_times) != 1:
        raise _BadCell("call_time", f"expected one call time, found {len(call_times)}")
    campaign_raw = " ".join(cells.get("campaign", "").split())
    return TracedCall(
        line=line_no,
        customer=customer_raw,
        customer_raw=customer_raw,
        notified=notified,
        call_time=call_times[0],
        caller_id=cells.get("caller_id", ""),
        called_number=cells.get("called_number", ""),
        campaign=_campaign(campaign_raw),
        campaign_raw=campaign_raw,
        violation=" ".join(cells.get("violation", "").split()),
    )


def _merge_customers(calls: list[TracedCall]) -> list[TracedCall]:
    # Canonical display form: the spelling used most often for the key
    # (ties: the longer one, which keeps a trailing "Ltd." over "Ltd").
    spellings: dict[str, Counter[str]] = {}
    for call in calls:
        spellings.setdefault(_customer_key(call.customer_raw), Counter())[call.customer_raw] += 1
    canonical = {
        key: max(counter.items(), key=lambda kv: (kv[1], len(kv[0]), kv[0]))[0]
        for key, counter in spellings.items()
    }
    canonical[_customer_key(NO_RESPONSE)] = NO_RESPONSE
    return [replace(c, customer=canonical[_customer_key(c.customer_raw)]) for c in calls]


def summarise(calls: Iterable[TracedCall]) -> TracebackSummary:
    """Row count, distinct identified customers, calls per campaign, call-time range."""
    calls = list(calls)
    campaigns = Counter(c.campaign for c in calls)
    customers = Counter(c.customer for c in calls if c.customer_identified)
    times = [c.call_time for c in calls]

    def ordered(counter: Counter[str]) -> dict[str, int]:
        return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

    return TracebackSummary(
        rows=len(calls),
        distinct_customers=len(customers),
        campaigns=ordered(campaigns),
        first_call=min(times) if times else None,
        last_call=max(times) if times else None,
        customers=ordered(customers),
        no_response=sum(1 for c in calls if not c.customer_identified),
    )
