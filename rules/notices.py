"""FCC notices to a bad-actor provider: deadlines, letter facts, records.

How this works: the Enforcement Bureau notifies a provider that it carries
illegal traffic. Under 47 CFR 64.1200(k)(4) ("k4") the provider must
effectively mitigate within 48 hours and report its measures within 14 days
of the letter; if it does not, downstream providers may block all its
traffic after telling the FCC. Under 47 CFR 64.1200(n)(2) ("n2") a provider
is directed to block an identified campaign. ``compute_deadlines`` turns the
issue time into the two deadline instants (UTC), counting the 14 days as
47 CFR 1.4 counts FCC periods (see ``compute_deadlines``);
``extract_letter_facts`` reads the date, addressee and stated report date
from a letter's text; ``notice_to_record``/``notice_from_record`` convert a
notice to the flat ``notice:<id>`` Redis HASH (times as ISO-8601 UTC) and
back (times as epoch seconds, the unit ``rules.snapshot`` uses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from rules.snapshot import Notice

__all__ = [
    "KINDS",
    "KIND_K4",
    "KIND_N2",
    "Deadlines",
    "LetterFacts",
    "NoticeLike",
    "compute_deadlines",
    "eastern_midnight",
    "epoch_to_iso",
    "extract_letter_facts",
    "is_holiday",
    "iso_to_epoch",
    "new_notice",
    "notice_from_record",
    "notice_to_record",
    "parse_date",
    "parse_when",
]

KIND_K4 = "k4"  # 47 CFR 64.1200(k)(4): notified bad actor, all traffic
KIND_N2 = "n2"  # 47 CFR 64.1200(n)(2): notify-and-direct, identified campaign
KINDS: dict[str, str] = {KIND_K4: "47 CFR 64.1200(k)(4)", KIND_N2: "47 CFR 64.1200(n)(2)"}

# 47 CFR 64.1200(k)(4): "effectively mitigate illegal traffic within 48 hours".
MITIGATION_WINDOW = timedelta(hours=48)
# The letter: report "within fourteen (14) days of the date of this letter".
REPORT_DAYS = 14


# --- Eastern Time without a tz database -------------------------------------
# The Commission's filing deadlines run on Eastern Time (47 CFR 1.4(f)). US
# daylight saving time (15 U.S.C. 260a, as amended in 2005, since 2007) runs
# from 02:00 local on the second Sunday of March to 02:00 local on the first
# Sunday of November. Computed here so the module needs no tz database.
def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _dst_bounds_utc(year: int) -> tuple[datetime, datetime]:
    start = _nth_weekday(year, 3, 6, 2)  # second Sunday of March, 02:00 EST = 07:00 UTC
    end = _nth_weekday(year, 11, 6, 1)  # first Sunday of November, 02:00 EDT = 06:00 UTC
    return (
        datetime.combine(start, time(7), tzinfo=UTC),
        datetime.combine(end, time(6), tzinfo=UTC),
    )


def _eastern_offset(instant: datetime) -> timedelta:
    start, end = _dst_bounds_utc(instant.astimezone(UTC).year)
    return timedelta(hours=-4) if start <= instant < end else timedelta(hours=-5)


def eastern_midnight(day: date) -> datetime:
    """00:00 Eastern Time on ``day`` as an aware UTC datetime."""
    # Midnight is never inside the 02:00 switch hour: it is 04:00 UTC if EDT
    # is in force at that instant, else 05:00 UTC (EST).
    edt_guess = datetime.combine(day, time(4), tzinfo=UTC)
    if _eastern_offset(edt_guess) == timedelta(hours=-4):
        return edt_guess
    return datetime.combine(day, time(5), tzinfo=UTC)


def eastern_date(instant: datetime) -> date:
    """The Eastern Time calendar date of an aware ``instant``."""
    return (instant.astimezone(UTC) + _eastern_offset(instant)).date()


# --- holidays: 47 CFR 1.4(e)(1), 5 U.S.C. 6103 ------------------------------
def _observed(d: date) -> date:
    # 5 U.S.C. 6103(b); Executive Order 11582: Saturday → Friday, Sunday → Monday.
    if d.weekday() == 5:
        return d - timedelta(days=1)
    if d.weekday() == 6:
        return d + timedelta(days=1)
    return d


def _federal_holidays(year: int) -> set[date]:
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 11, 11), date(year, 12, 25)]
    if year >= 2021:
        fixed.append(date(year, 6, 19))  # Juneteenth, Pub. L. 117-17
    days = {_observed(d) for d in fixed}
    days |= {
        _nth_weekday(year, 1, 0, 3),  # Birthday of Martin Luther King, Jr.
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _nth_weekday(year, 6, 0, 1) - timedelta(days=7),  # Memorial Day: last Monday of May
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 10, 0, 2),  # Columbus Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving Day
    }
    # New Year's Day of next year observed on Friday Dec 31.
    if _observed(date(year + 1, 1, 1)).year == year:
        days.add(date(year, 12, 31))
    return days


def is_holiday(day: date) -> bool:
    """47 CFR 1.4(e)(1): Saturday, Sunday or a Federal legal holiday."""
    return day.weekday() >= 5 or day in _federal_holidays(day.year)


# --- deadlines -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Deadlines:
    """The two instants (aware, UTC) after which the notified provider is late."""

    mitigation_due: datetime
    report_due: datetime

    @property
    def report_due_date(self) -> date:
        """The date a letter states for the report: the Eastern date of ``report_due``."""
        return eastern_date(self.report_due)


def compute_deadlines(issued: datetime | date) -> Deadlines:
    """Deadlines of a notice issued at ``issued`` (a letter date or an instant).

    Counting follows 47 CFR 1.4: the day of the letter is not counted, the
    first day counted is the next day (47 CFR 1.4(b), (c)); the period ends at
    the close of its last day, Eastern Time (47 CFR 1.4(f)); a last day that
    is a holiday moves to the next business day (47 CFR 1.4(e)(1), (j)). So a
    letter dated Thursday 2021-10-21 has day 14 on 2021-11-04; the window
    closes at the end of that day, 00:00 ET on 2021-11-05 (04:00 UTC): the
    "November 5, 2021" the letter states.

    The 48-hour mitigation window of 47 CFR 64.1200(k)(4) is counted in
    hours, holidays included. From an instant it is exactly 48 hours; from a
    bare date the hour of issue is unknown, so, as 47 CFR 1.4(c) does for
    days, it starts when that day ends (00:00 ET the next day): a block is
    never started before the window could have lapsed.
    """
    if isinstance(issued, datetime):
        instant = issued if issued.tzinfo is not None else issued.replace(tzinfo=UTC)
        instant = instant.astimezone(UTC)
        letter_day = eastern_date(instant)
        mitigation_due = instant + MITIGATION_WINDOW
    else:
        letter_day = issued
        mitigation_due = eastern_midnight(letter_day + timedelta(days=1)) + MITIGATION_WINDOW
    last_day = letter_day + timedelta(days=REPORT_DAYS)  # 47 CFR 1.4(c): day 1 is the day after
    while is_holiday(last_day):  # 47 CFR 1.4(j)
        last_day += timedelta(days=1)
    report_due = eastern_midnight(last_day + timedelta(days=1))  # close of the last day
    return Deadlines(mitigation_due=mitigation_due, report_due=report_due)


# --- dates in letters and on the command line ----------------------------------
MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH_NAME = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_MDY_RE = re.compile(rf"(?P<mon>{_MONTH_NAME})\s+(?P<day>\d{{1,2}}),?\s+(?P<year>\d{{4}})", re.I)
_DMY_RE = re.compile(rf"(?P<day>\d{{1,2}})\s+(?P<mon>{_MONTH_NAME}),?\s+(?P<year>\d{{4}})", re.I)


def _named_date(text: str) -> date | None:
    for rx in (_MDY_RE, _DMY_RE):
        m = rx.fullmatch(text)
        if m is not None:
            return date(int(m["year"]), MONTHS[m["mon"][:3].lower()], int(m["day"]))
    return None


def parse_when(text: str) -> date | datetime:
    """A date ("2021-10-21", "October 21, 2021", "Sept 30, 2021", "21 Oct 2021")
    or an instant ("2021-10-21T14:00:00Z", naive = UTC), for ``compute_deadlines``.
    Raises ValueError."""
    s = " ".join(text.split())
    if not s:
        raise ValueError("empty date")
    named = _named_date(s)
    if named is not None:
        return named
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        return date.fromisoformat(s)
    try:
        instant = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not a date: {text!r}") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def parse_date(text: str) -> datetime:
    """Like ``parse_when`` but always an aware UTC datetime (a date → 00:00 UTC)."""
    when = parse_when(text)
    if isinstance(when, datetime):
        return when
    return datetime.combine(when, time(0), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LetterFacts:
    issued: date
    provider_name: str
    report_due_stated: date | None
    short_name: str | None = None  # "(PZ/Illum)" after the name in the body


_DATE_LINE_RE = re.compile(rf"\s*{_MDY_RE.pattern}\s*", re.I)
_ENTITY_RE = re.compile(
    r"\b(?:LLC|L\.L\.C\.|Inc|Corp|Corporation|Ltd|Limited|L\.?P|PLLC|Co|Company|GmbH|Pvt)\b\.?",
    re.I,
)
_REPORT_DUE_RE = re.compile(
    rf"(?:fourteen\s*\(14\)|14|fourteen)\s+days[^()]{{0,80}}\((?P<date>{_MDY_RE.pattern})\)",
    re.I,
)


def extract_letter_facts(text: str) -> LetterFacts:
    """Read an Enforcement Bureau letter's date line, addressee company and the
    stated report date. Raises ValueError when the date or addressee is missing."""
    lines = [line.strip() for line in text.splitlines()]
    issued: date | None = None
    for line in lines[:60]:
        if _DATE_LINE_RE.fullmatch(line):
            issued = _named_date(" ".join(line.split()))
            break
    if issued is None:
        raise ValueError("no date line near the top of the letter")
    provider = _addressee_company(lines)
    if provider is None:
        raise ValueError('no company name in the "To:" block')
    short: str | None = None
    m = re.search(re.escape(provider) + r"\s*\(([^()]{1,40})\)", text)
    if m is not None:
        short = m.group(1).strip()
    due: date | None = None
    m = _REPORT_DUE_RE.search(" ".join(text.split()))
    if m is not None:
        due = _named_date(" ".join(m["date"].split()))
    return LetterFacts(
        issued=issued, provider_name=provider, report_due_stated=due, short_name=short
    )


def _addressee_company(lines: Sequence[str]) -> str | None:
    for i, line in enumerate(lines):
        if not re.match(r"to:", line, re.I):
            continue
        block = [line[3:].strip()]
        for following in lines[i + 1 :]:
            if not following:
                break
            block.append(following)
        for entry in block:
            if _ENTITY_RE.search(entry):
                return entry
        # No entity suffix: the line before the street address (starts with a digit).
        for j in range(1, len(block)):
            if block[j][:1].isdigit():
                return block[j - 1]
        return None
    return None


# --- records ---------------------------------------------------------------------
class NoticeLike(Protocol):
    """What ``notice_to_record`` reads: ``rules.snapshot.Notice`` fits (epoch seconds)."""

    @property
    def id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def issued(self) -> float: ...
    @property
    def mitigation_due(self) -> float: ...
    @property
    def report_due(self) -> float: ...
    @property
    def mitigated(self) -> float | None: ...
    @property
    def reported(self) -> float | None: ...
    @property
    def fcc_notified(self) -> float | None: ...
    @property
    def campaigns(self) -> Sequence[str]: ...


def new_notice(
    id: str,
    provider: str,
    kind: str,
    issued: datetime | date,
    campaigns: Sequence[str] = (),
    letter: str = "",
) -> Notice:
    """A fresh notice with its deadlines computed from ``issued``."""
    if kind not in KINDS:
        raise ValueError(f"notice kind must be one of {sorted(KINDS)}, not {kind!r}")
    d = compute_deadlines(issued)
    if isinstance(issued, datetime):
        start = (issued if issued.tzinfo else issued.replace(tzinfo=UTC)).timestamp()
    else:
        start = eastern_midnight(issued).timestamp()
    return Notice(
        id=id,
        provider=provider,
        kind=kind,
        issued=start,
        mitigation_due=d.mitigation_due.timestamp(),
        report_due=d.report_due.timestamp(),
        campaigns=tuple(c.strip() for c in campaigns if c.strip()),
        letter=letter,
    )


def epoch_to_iso(seconds: float) -> str:
    """``1636084800.0`` → ``"2021-11-05T04:00:00Z"`` (fraction kept if any)."""
    dt = datetime.fromtimestamp(seconds, tz=UTC)
    spec = "seconds" if dt.microsecond == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def iso_to_epoch(text: str) -> float:
    """ISO-8601 (or any ``parse_date`` form, or plain epoch digits) → epoch seconds."""
    s = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    return parse_date(s).timestamp()


_NOT_YET = frozenset({"", "0", "no", "false", "none"})
_YES = frozenset({"1", "yes", "true"})


def notice_to_record(n: NoticeLike) -> dict[str, str]:
    """Flatten to the ``notice:<id>`` HASH fields (DESIGN.md key schema)."""

    def opt(v: float | None) -> str:
        return "" if v is None else epoch_to_iso(v)

    return {
        "id": n.id,
        "provider": n.provider,
        "kind": n.kind,
        "issued": epoch_to_iso(n.issued),
        "mitigation_due": epoch_to_iso(n.mitigation_due),
        "report_due": epoch_to_iso(n.report_due),
        "mitigated": opt(n.mitigated),
        "reported": opt(n.reported),
        "fcc_notified": opt(n.fcc_notified),
        "campaigns": ",".join(n.campaigns),
        "letter": str(getattr(n, "letter", "")),
    }


def notice_from_record(d: Mapping[str, str], id: str | None = None) -> Notice:
    """Read a ``notice:<id>`` HASH. Missing deadlines are computed from
    ``issued``; a recorded flag may be a time or a bare ``yes`` (then the issue
    time stands in). Raises ValueError on a bad kind or time."""
    kind = d.get("kind", "").strip().lower()
    if kind not in KINDS:
        raise ValueError(f"notice kind must be one of {sorted(KINDS)}, not {kind!r}")
    issued_text = d.get("issued", "").strip()
    if not issued_text:
        raise ValueError("notice without an issued time")
    when: date | datetime = (
        datetime.fromtimestamp(float(issued_text), tz=UTC)
        if re.fullmatch(r"\d+(?:\.\d+)?", issued_text)
        else parse_when(issued_text)
    )
    computed = compute_deadlines(when)
    issued = when.timestamp() if isinstance(when, datetime) else eastern_midnight(when).timestamp()

    def due(name: str, default: datetime) -> float:
        raw = d.get(name, "").strip()
        return iso_to_epoch(raw) if raw else default.timestamp()

    def flag(name: str) -> float | None:
        raw = d.get(name, "").strip()
        if raw.lower() in _NOT_YET:
            return None
        if raw.lower() in _YES:
            return issued
        return iso_to_epoch(raw)

    return Notice(
        id=id if id is not None else d.get("id", ""),
        provider=d.get("provider", "").strip(),
        kind=kind,
        issued=issued,
        mitigation_due=due("mitigation_due", computed.mitigation_due),
        report_due=due("report_due", computed.report_due),
        mitigated=flag("mitigated"),
        reported=flag("reported"),
        fcc_notified=flag("fcc_notified"),
        campaigns=tuple(c.strip() for c in d.get("campaigns", "").split(",") if c.strip()),
        letter=d.get("letter", ""),
    )
