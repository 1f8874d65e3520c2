"""FCC notices to a bad-actor provider: deadlines, letter facts, history, records.

How this works: the Enforcement Bureau notifies a provider that it carries
illegal traffic. Under 47 CFR 64.1200(k)(4) ("k4") a downstream provider may
block all its traffic if, once notified, it "fails to effectively mitigate"
the traffic within 48 hours or fails to implement effective measures against
new illegal calls; the letter asks for a report of those measures within 14
days and deems a missing report a failure to put effective measures in place
(rules/k4.py decides from these facts). Under 47 CFR 64.1200(n)(2) ("n2") a
provider is directed to block an identified campaign.

* Dates are the Commission's clock, US Eastern Time (47 CFR 1.4(f)):
  ``when_et`` is the one reader of a date or instant typed by an operator (a
  bare date is the start or the end of that Eastern day, as the caller says);
  ``fmt_et_utc`` prints an instant in both ET and UTC.
* ``compute_deadlines`` turns the issue time (and the report date the letter
  states, if any) into two instants, UTC, each the first instant *after* its
  period: a deadline stated as a date runs to the end of that day, Eastern
  Time ("November 5, 2021" ends 2021-11-05 23:59:59 ET, so the provider is
  late from 2021-11-06T05:00:00Z on).
* ``extract_letter_facts`` reads the date, addressee and stated report date
  from a letter's text.
* History: every event recorded on a notice (issued, mitigated, reported,
  determination, fcc_notified, correction) is one JSON entry of an
  append-only list (``new_event``); ``derive_fields`` computes the notice's
  current fields from the whole list, voided entries left out. The ``notice:<id>``
  HASH holds those derived fields (``notice_as_of``: the fields as the
  history stood at an earlier date, for ``check --at`` and ``notice show
  --at``); ``notice_to_record``/``notice_from_record`` convert it (times as
  ISO-8601 UTC) to and from ``rules.snapshot.Notice`` (times as epoch seconds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
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
    "when_et",
    "fmt_et",
    "fmt_et_utc",
    "fmt_day_end",
    "eastern_day_end",
    "derive_fields",
    "notice_as_of",
    "new_event",
    "EVENTS",
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


def eastern_day_end(day: date) -> datetime:
    """The first instant after ``day`` ends in Eastern Time (00:00 ET the next
    day), aware UTC: a period that runs "to the end of" ``day`` is over from
    this instant on."""
    return eastern_midnight(day + timedelta(days=1))


def fmt_et(seconds: float) -> str:
    """``"2021-11-05 23:59:59 EDT"``: an epoch instant on the Eastern clock."""
    instant = datetime.fromtimestamp(seconds, tz=UTC)
    off = _eastern_offset(instant)
    local = (instant + off).replace(tzinfo=None)
    return local.strftime("%Y-%m-%d %H:%M:%S") + (" EDT" if off == timedelta(hours=-4) else " EST")


def fmt_et_utc(seconds: float) -> str:
    """``"2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)"``: both clocks."""
    return f"{fmt_et(seconds)} ({epoch_to_iso(seconds)})"


def fmt_day_end(due: float) -> str:
    """A deadline ``due`` (first instant after the period) as the period's last
    second: ``"end of 2021-11-05 ET: 2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)"``."""
    return fmt_et_utc(due - 1)


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
    """The two instants (aware, UTC) from which the notified provider is late:
    each is the first instant *after* its period (a response at ``t`` is in
    time iff ``t < due``)."""

    mitigation_due: datetime
    report_due: datetime

    @property
    def report_due_date(self) -> date:
        """The date a letter states for the report: the Eastern date of the
        period's last second."""
        return eastern_date(self.report_due - timedelta(seconds=1))


def compute_deadlines(issued: datetime | date, report_due_stated: date | None = None) -> Deadlines:
    """Deadlines of a notice issued at ``issued`` (a letter date or an instant).

    The 48-hour window of 47 CFR 64.1200(k)(4) ("effectively mitigate illegal
    traffic within 48 hours") is counted in hours, holidays included. From an
    instant it is exactly 48 hours; from a bare date the hour of issue is
    unknown, so it starts when that Eastern day ends (47 CFR 1.4(c) likewise
    does not count the day of the event): a block is never started before the
    window could have lapsed. The seed letter dated 2021-10-21: window over at
    2021-10-24T04:00:00Z (the end of 2021-10-23 ET).

    The report: a date the letter states ("within fourteen (14) days of the
    date of this letter (November 5, 2021)") is the Commission's own deadline
    and wins; it runs to the end of that Eastern day (47 CFR 1.4(f): the
    Commission's business day is Eastern Time), so the seed letter's report is
    late from 2021-11-06T05:00:00Z. Without a stated date the 14 days are
    counted as 47 CFR 1.4 counts: day 1 is the day after the letter (1.4(c)),
    a last day on a weekend or Federal holiday moves to the next business day
    (1.4(e)(1), (j)), and the period ends with its last Eastern day. Note: for
    the seed letter that count gives Thursday 2021-11-04, one day *before*
    the date the letter states; the letter's date is used whenever it is
    known (``notice add --letter`` reads it, ``--report-due`` gives it).
    """
    if isinstance(issued, datetime):
        instant = issued if issued.tzinfo is not None else issued.replace(tzinfo=UTC)
        instant = instant.astimezone(UTC)
        letter_day = eastern_date(instant)
        mitigation_due = instant + MITIGATION_WINDOW
    else:
        letter_day = issued
        mitigation_due = eastern_day_end(letter_day) + MITIGATION_WINDOW
    if report_due_stated is not None:
        return Deadlines(mitigation_due, eastern_day_end(report_due_stated))
    last_day = letter_day + timedelta(days=REPORT_DAYS)  # 47 CFR 1.4(c): day 1 is the day after
    while is_holiday(last_day):  # 47 CFR 1.4(j)
        last_day += timedelta(days=1)
    return Deadlines(mitigation_due=mitigation_due, report_due=eastern_day_end(last_day))


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
    """Like ``parse_when`` but always an aware UTC datetime (a bare date → the
    start of that day, Eastern Time, as ``when_et(text, "start")``)."""
    when = parse_when(text)
    if isinstance(when, datetime):
        return when
    return eastern_midnight(when)


def when_et(text: str, bound: str = "start") -> float:
    """Epoch seconds of an operator's date or instant: THE reader of every
    date typed on the command line (``--issued``, ``--mitigated``,
    ``--reported``, ``--date``, ``--at``, ``--until``, ...).

    An instant with an offset (``2021-11-06T04:59:58Z``) is that instant; a
    naive instant is UTC (unchanged since the first release). A bare date
    (``2021-11-05``, ``November 5, 2021``) is a day on the Commission's clock,
    US Eastern Time (47 CFR 1.4(f)), and ``bound`` says which end of it:
    ``"start"`` (00:00:00 ET) or ``"end"`` (23:59:59 ET, the day's last
    second). Raises ValueError.
    """
    when = parse_when(text)
    if isinstance(when, datetime):
        return when.timestamp()
    if bound == "start":
        return eastern_midnight(when).timestamp()
    if bound == "end":
        return eastern_day_end(when).timestamp() - 1.0
    raise ValueError(f"bound must be 'start' or 'end', not {bound!r}")


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
    @property
    def ineffective(self) -> float | None: ...
    @property
    def effective(self) -> float | None: ...


def new_notice(
    id: str,
    provider: str,
    kind: str,
    issued: datetime | date,
    campaigns: Sequence[str] = (),
    letter: str = "",
    report_due_stated: date | None = None,
) -> Notice:
    """A fresh notice with its deadlines computed from ``issued`` and the
    report date the letter states, if known (see ``compute_deadlines``)."""
    if kind not in KINDS:
        raise ValueError(f"notice kind must be one of {sorted(KINDS)}, not {kind!r}")
    d = compute_deadlines(issued, report_due_stated)
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
        "ineffective": opt(n.ineffective),
        "effective": opt(n.effective),
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
        ineffective=flag("ineffective"),
        effective=flag("effective"),
        campaigns=tuple(c.strip() for c in d.get("campaigns", "").split(",") if c.strip()),
        letter=d.get("letter", ""),
    )


# --- history: an append-only list of events per notice --------------------------
# One JSON object per entry, in the order recorded (docs/REDIS.md
# ``notice:<id>:history``): ``seq`` (1, 2, ...), ``event`` (one of EVENTS),
# ``at`` (when it took effect, ISO-8601 UTC), ``recorded`` (when it was
# written), ``by`` (who wrote it), and per event ``summary`` (determination,
# fcc_notified, correction: the brief summary of the basis), ``value``
# (determination: "ineffective" or "effective"), ``voids`` (correction: the
# seq of the entry it withdraws). An entry is never changed or removed: a
# correction is a new entry, and the voided one stays visible in the history.
EVENTS = ("issued", "mitigated", "reported", "determination", "fcc_notified", "correction")
DETERMINATIONS = ("ineffective", "effective")


def new_event(
    seq: int,
    event: str,
    at: float,
    recorded: float,
    by: str,
    *,
    summary: str = "",
    value: str = "",
    voids: int | None = None,
) -> dict[str, object]:
    """One history entry (validated). Raises ValueError."""
    if event not in EVENTS:
        raise ValueError(f"event must be one of {', '.join(EVENTS)}, not {event!r}")
    if event == "determination" and value not in DETERMINATIONS:
        raise ValueError(f"a determination is one of {', '.join(DETERMINATIONS)}")
    if event in ("determination", "fcc_notified", "correction") and not summary.strip():
        raise ValueError(f"a {event.replace('_', '-')} entry needs a summary")
    if event == "correction" and voids is None:
        raise ValueError("a correction names the entry it voids")
    out: dict[str, object] = {
        "seq": seq,
        "event": event,
        "at": epoch_to_iso(at),
        "recorded": epoch_to_iso(recorded),
        "by": by,
    }
    if summary.strip():
        out["summary"] = " ".join(summary.split())
    if value:
        out["value"] = value
    if voids is not None:
        out["voids"] = voids
    return out


def voided(events: Sequence[Mapping[str, object]]) -> set[int]:
    """The seq numbers withdrawn by a correction entry."""
    return {int(str(e["voids"])) for e in events if e.get("event") == "correction"}


def derive_fields(events: Sequence[Mapping[str, object]]) -> dict[str, str]:
    """The notice's current HASH fields from its whole history (voided entries
    left out): ``mitigated``/``reported`` the earliest of each (did the
    provider act in time is judged on the first); ``effective`` the latest
    effective-measures determination, ``ineffective`` the first ineffective
    one after it (the trigger; later ones re-affirm it), else the latest;
    ``fcc_notified`` (and ``fcc_summary``) the latest notice to the FCC; ""
    where none."""
    gone = voided(events)
    live = [e for e in events if int(str(e.get("seq", 0))) not in gone]

    def times(event: str, value: str | None = None) -> list[tuple[float, Mapping[str, object]]]:
        return sorted(
            (
                (iso_to_epoch(str(e["at"])), e)
                for e in live
                if e.get("event") == event and (value is None or e.get("value") == value)
            ),
            key=lambda pair: pair[0],
        )

    effective = times("determination", "effective")[-1:]
    ineffective = times("determination", "ineffective")
    # The ineffective trigger (47 CFR 64.1200(k)(4)) happened at the first
    # ineffective determination after the last effective one: a later one
    # re-affirms it (it must not move the trigger past the FCC notice that
    # reported it, which would lift a block in force).
    after = [p for p in ineffective if not effective or p[0] > effective[0][0]]
    out: dict[str, str] = {}
    for name, picked in (
        ("mitigated", times("mitigated")[:1]),
        ("reported", times("reported")[:1]),
        ("ineffective", after[:1] or ineffective[-1:]),
        ("effective", effective),
        ("fcc_notified", times("fcc_notified")[-1:]),
    ):
        out[name] = epoch_to_iso(picked[0][0]) if picked else ""
        if name in ("ineffective", "fcc_notified"):
            out[f"{name}_summary"] = str(picked[0][1].get("summary", "")) if picked else ""
    return out


def notice_as_of(n: Notice, events: Sequence[Mapping[str, object]], at: float) -> Notice:
    """``n`` as its history stood at ``at``: entries dated after ``at`` left out
    (a correction is kept whatever its date: it voids an entry made in error).

    ``derive_fields`` keeps the *latest* FCC notification and determinations,
    so an entry dated after ``at`` would hide an earlier one in force at
    ``at`` (e.g. a second FCC notification makes a block that was in force
    look pending). No history (a notice written before histories): ``n``."""
    if not events:
        return n
    kept = [e for e in events if e.get("event") == "correction" or iso_to_epoch(str(e["at"])) <= at]
    f = derive_fields(kept)

    def t(name: str) -> float | None:
        v = f.get(name, "")
        return iso_to_epoch(v) if v else None

    return replace(
        n,
        mitigated=t("mitigated"),
        reported=t("reported"),
        ineffective=t("ineffective"),
        effective=t("effective"),
        fcc_notified=t("fcc_notified"),
    )
