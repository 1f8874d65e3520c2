"""rules/notices.py: deadlines (47 CFR 1.4 counting), letter facts, records."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.notices import (
    KIND_K4,
    KIND_N2,
    compute_deadlines,
    eastern_date,
    eastern_midnight,
    epoch_to_iso,
    extract_letter_facts,
    is_holiday,
    iso_to_epoch,
    new_notice,
    notice_from_record,
    notice_to_record,
    parse_date,
    parse_when,
)

SEED = (
    Path(__file__).resolve().parent.parent / "data" / "seed" / "fcc-cease-and-desist-2021-10-21.txt"
)
NEW_YORK = ZoneInfo("America/New_York")  # test oracle only; the module has its own rule


def test_seed_letter_facts_and_stated_report_date() -> None:
    facts = extract_letter_facts(SEED.read_text(encoding="utf-8"))
    assert facts.issued == date(2021, 10, 21)
    assert facts.provider_name == "PZ/Illum Telecommunication Telecommunication LLC"
    assert facts.short_name == "PZ/Illum"
    assert facts.report_due_stated == date(2021, 11, 5)
    # The date the letter states wins and runs to the end of that day, ET:
    # 2021-11-05 23:59:59 EDT is the last second, late from 2021-11-06T04:00:00Z
    # (EDT until 2021-11-07; the EST instant 05:00Z would be an hour off).
    deadlines = compute_deadlines(facts.issued, facts.report_due_stated)
    assert deadlines.report_due_date == date(2021, 11, 5)
    assert deadlines.report_due == datetime(2021, 11, 6, 4, 0, tzinfo=UTC)
    assert deadlines.report_due == datetime(2021, 11, 6, tzinfo=NEW_YORK)
    # Counted per 47 CFR 1.4 (no stated date): day 14 is Thursday 2021-11-04,
    # one day before the date the letter states.
    counted = compute_deadlines(facts.issued)
    assert counted.report_due_date == date(2021, 11, 4)
    assert counted.report_due == datetime(2021, 11, 5, 4, 0, tzinfo=UTC)
    # 48 hours counted from the end of the letter's day (hour of issue unknown).
    assert deadlines.mitigation_due == datetime(2021, 10, 24, 4, 0, tzinfo=UTC)


def test_deadlines_from_an_instant() -> None:
    issued = datetime(2021, 10, 21, 15, 30, tzinfo=UTC)
    d = compute_deadlines(issued)
    assert d.mitigation_due - issued == timedelta(hours=48)
    assert d.report_due_date == date(2021, 11, 4)
    # Naive means UTC; 02:00 UTC on Oct 22 is still Oct 21 in Eastern Time.
    assert compute_deadlines(datetime(2021, 10, 22, 2, 0)).report_due_date == date(2021, 11, 4)


def test_last_day_on_weekend_or_holiday_moves_on() -> None:
    # 47 CFR 1.4(j): day 14 of a letter dated Sat 2021-10-23 is Sat 2021-11-06;
    # the period runs to the end of Mon 2021-11-08 (after DST ended: 05:00 UTC).
    d = compute_deadlines(date(2021, 10, 23))
    assert d.report_due == datetime(2021, 11, 9, 5, 0, tzinfo=UTC)
    # Day 14 of 2021-11-11 is Thanksgiving (2021-11-25): moves to Friday.
    assert compute_deadlines(date(2021, 11, 11)).report_due_date == date(2021, 11, 26)


def test_federal_holidays_2021() -> None:
    # OPM's 2021 list (observed dates) plus New Year's Day 2022 observed on Dec 31.
    observed = {
        date(2021, 1, 1),
        date(2021, 1, 18),
        date(2021, 2, 15),
        date(2021, 5, 31),
        date(2021, 6, 18),
        date(2021, 7, 5),
        date(2021, 9, 6),
        date(2021, 10, 11),
        date(2021, 11, 11),
        date(2021, 11, 25),
        date(2021, 12, 24),
        date(2021, 12, 31),
    }
    day = date(2021, 1, 1)
    while day.year == 2021:
        expected = day in observed or day.weekday() >= 5
        assert is_holiday(day) is expected, day
        day += timedelta(days=1)


def test_eastern_time_matches_tz_database() -> None:
    day = date(2007, 1, 1)
    while day < date(2031, 1, 1):
        assert eastern_midnight(day) == datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
        day += timedelta(days=1)
    # Around the November 2021 switch (06:00 UTC), hour by hour.
    t = datetime(2021, 11, 6, 0, tzinfo=UTC)
    while t < datetime(2021, 11, 8, tzinfo=UTC):
        assert eastern_date(t) == t.astimezone(NEW_YORK).date()
        t += timedelta(minutes=30)


@given(st.datetimes(min_value=datetime(2008, 1, 1), max_value=datetime(2040, 1, 1)))
def test_deadline_properties(naive: datetime) -> None:
    issued = naive.replace(tzinfo=UTC)
    d = compute_deadlines(issued)
    assert d.mitigation_due - issued == timedelta(hours=48)
    local_issue = issued.astimezone(NEW_YORK).date()
    due_local = d.report_due.astimezone(NEW_YORK)
    assert (due_local.hour, due_local.minute) == (0, 0)
    last_day = due_local.date() - timedelta(days=1)
    assert last_day >= local_issue + timedelta(days=14)
    assert not is_holiday(last_day)
    # Only holidays lie between day 14 and the last day.
    gap = local_issue + timedelta(days=14)
    while gap < last_day:
        assert is_holiday(gap)
        gap += timedelta(days=1)


def test_parse_date_forms() -> None:
    oct21 = datetime(2021, 10, 21, 4, tzinfo=UTC)  # a bare date: 00:00 EDT that day
    for text in ("2021-10-21", "October 21, 2021", "Oct 21, 2021", "Oct. 21, 2021", "21 Oct 2021"):
        assert parse_date(text) == oct21, text
    assert parse_date("Sept 30, 2021") == datetime(2021, 9, 30, 4, tzinfo=UTC)
    assert parse_date("2021-10-21T14:00:00Z") == datetime(2021, 10, 21, 14, tzinfo=UTC)
    assert parse_date("2021-10-21T10:00:00-04:00") == datetime(2021, 10, 21, 14, tzinfo=UTC)
    assert parse_date("2021-10-21 14:00") == datetime(2021, 10, 21, 14, tzinfo=UTC)
    assert parse_when("October 21, 2021") == date(2021, 10, 21)
    for bad in ("", "Octember 21, 2021", "21/10/2021", "soon"):
        with pytest.raises(ValueError):
            parse_date(bad)


def test_letter_without_addressee_or_date() -> None:
    with pytest.raises(ValueError, match="date line"):
        extract_letter_facts("To: Someone\nAcme LLC\n")
    with pytest.raises(ValueError, match="To:"):
        extract_letter_facts("January 3, 2022\n\nDear provider,\n")
    facts = extract_letter_facts(
        "January 3, 2022\n\nTo: Jane Roe\nCEO\nFoo Voice\n12 Main St\n\nWithin 14 days ...\n"
    )
    assert (facts.provider_name, facts.report_due_stated) == ("Foo Voice", None)


def test_record_round_trip_and_format() -> None:
    facts = extract_letter_facts(SEED.read_text(encoding="utf-8"))
    notice = new_notice(
        "eb-2021-10-21-pzillum",
        "pzillum",
        KIND_K4,
        facts.issued,
        campaigns=["+12025550123", " +1202555 ", ""],
        letter="tests/data/seed/fcc-cease-and-desist-2021-10-21.txt",
        report_due_stated=facts.report_due_stated,
    )
    record = notice_to_record(notice)
    assert record == {
        "id": "eb-2021-10-21-pzillum",
        "provider": "pzillum",
        "kind": "k4",
        "issued": "2021-10-21T04:00:00Z",
        "mitigation_due": "2021-10-24T04:00:00Z",
        "report_due": "2021-11-06T04:00:00Z",
        "mitigated": "",
        "reported": "",
        "fcc_notified": "",
        "ineffective": "",
        "effective": "",
        "campaigns": "+12025550123,+1202555",
        "letter": "tests/data/seed/fcc-cease-and-desist-2021-10-21.txt",
    }
    assert notice_from_record(record) == notice


def test_snapshot_notice_fits_the_record() -> None:
    from rules.snapshot import Notice

    n = Notice(
        id="n1",
        provider="p1",
        kind=KIND_N2,
        issued=1634788800.0,
        mitigation_due=1634961600.0,
        report_due=1636084800.0,
        mitigated=datetime(2021, 10, 22, 11, 33, 20, 500000, tzinfo=UTC).timestamp(),
        campaigns=("+1202555",),
    )
    record = notice_to_record(n)
    assert record["mitigated"] == "2021-10-22T11:33:20.500000Z"
    assert record["letter"] == ""
    back = notice_from_record(record)
    assert (back.issued, back.mitigated, back.reported, back.campaigns) == (
        n.issued,
        n.mitigated,
        None,
        n.campaigns,
    )


def test_record_written_by_hand() -> None:
    # An operator's `HSET sipscreen:notice:x kind k4 issued "Oct 21, 2021" mitigated yes`.
    n = notice_from_record(
        {"kind": "K4", "issued": "Oct 21, 2021", "mitigated": "yes", "reported": "0"}, id="x"
    )
    assert n.id == "x"
    assert n.report_due == datetime(2021, 11, 5, 4, tzinfo=UTC).timestamp()
    assert n.mitigated == n.issued and n.reported is None
    n2 = notice_from_record({"kind": "n2", "issued": "1634788800", "report_due": "2021-11-01"})
    assert n2.issued == 1634788800.0
    assert n2.report_due == datetime(2021, 11, 1, tzinfo=NEW_YORK).timestamp()
    for bad in ({"kind": "k9", "issued": "2021-10-21"}, {"kind": "k4"}):
        with pytest.raises(ValueError):
            notice_from_record(bad)
    with pytest.raises(ValueError):
        new_notice("x", "p", "k5", date(2021, 10, 21))


def test_epoch_helpers() -> None:
    assert epoch_to_iso(1636084800.0) == "2021-11-05T04:00:00Z"
    assert iso_to_epoch("2021-11-05T04:00:00Z") == 1636084800.0
    assert iso_to_epoch("1636084800") == 1636084800.0
