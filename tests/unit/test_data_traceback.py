"""rules/traceback.py on Attachment A of the seed cease-and-desist letter."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.errors import RowError
from rules.traceback import (
    NO_RESPONSE,
    parse_attachment_a,
    parse_timestamps,
    summarise,
)

SEED = (
    Path(__file__).resolve().parent.parent / "data" / "seed" / "fcc-cease-and-desist-2021-10-21.txt"
)
HEADER = (
    "Customer\tDate of ITG Notification\tDate of Call\tCaller ID\tCalled Number\t"
    "Description\tViolation\n"
)
VIOLATION = "47 USC 227(b); 47 CFR 64.1200(a)"


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture(scope="module")
def seed_text() -> str:
    return SEED.read_text(encoding="utf-8")


def test_seed_attachment_a(seed_text: str) -> None:
    calls, errors = parse_attachment_a(seed_text)
    assert errors == []
    assert len(calls) == 78
    summary = summarise(calls)
    assert summary.rows == 78
    # 16 raw customer spellings: "No Response" is not a customer and the two
    # "Spinning Mantra Communications Pvt. Ltd(.)" spellings are one.
    assert len({c.customer_raw for c in calls}) == 16
    assert summary.distinct_customers == 14
    assert summary.no_response == 11
    assert sum(summary.customers.values()) == 78 - 11
    assert summary.customers["Spinning Mantra Communications Pvt. Ltd."] == 10
    assert summary.customers["LINTECH SOLUTIONS"] == 11
    # "Go4Customer" and "Go4Customer / CyFuture" are different names: kept apart.
    assert summary.customers["Go4Customer"] == 1
    assert summary.customers["Go4Customer / CyFuture"] == 1
    assert summary.campaigns == {
        "SSA Imposter": 51,
        "Arrest Warrant Scam": 17,  # 14 + 3 written "Arrest Warrant"
        "Credit Card Rate Reduction Call": 4,
        "CBP-Govt Imposter": 3,
        "Federal Reserve Imposter": 2,
        "Utility Disconnect Scam": 1,  # written "Utility Disconnect Sam"
    }
    assert summary.first_call == _utc(2021, 8, 23, 14, 12)
    assert summary.last_call == _utc(2021, 10, 13, 16, 49)
    assert all(c.violation == VIOLATION for c in calls)
    assert all(c.caller_id == "" and c.called_number == "" for c in calls)  # redacted


def test_seed_rows_point_at_their_lines(seed_text: str) -> None:
    lines = seed_text.splitlines()
    calls, _ = parse_attachment_a(seed_text)
    for call in calls:
        assert lines[call.line - 1].startswith(call.customer_raw + "\t")
    assert [c.line for c in calls] == sorted(c.line for c in calls)
    # Rows sit after the header line, with page-break blank lines in between.
    header_line = lines.index(HEADER.rstrip("\n")) + 1
    assert calls[0].line == header_line + 1
    assert calls[-1].line == len(lines)


def test_seed_cells(seed_text: str) -> None:
    calls, _ = parse_attachment_a(seed_text)
    by_line = {c.line: c for c in calls}
    lines = seed_text.splitlines()
    three = next(c for c in calls if len(c.notified) == 3)
    assert three.notified == (
        _utc(2021, 8, 26, 14, 46),
        _utc(2021, 8, 26, 15, 0),
        _utc(2021, 8, 27, 14, 20),
    )
    assert three.call_time == _utc(2021, 8, 23, 14, 12)
    assert three.campaign == "CBP-Govt Imposter"
    sept = [c for c in calls if "\tSept " in lines[c.line - 1]]
    assert len(sept) == 2
    assert {c.notified[0] for c in sept} == {_utc(2021, 9, 20, 20, 43), _utc(2021, 9, 30, 19, 25)}
    (no_dot,) = [c for c in calls if c.customer_raw.endswith("Pvt. Ltd")]
    assert no_dot.customer == "Spinning Mantra Communications Pvt. Ltd."
    (sam,) = [c for c in calls if c.campaign_raw == "Utility Disconnect Sam"]
    assert sam.campaign == "Utility Disconnect Scam"
    assert by_line[sam.line].customer == "Q2Serves"
    no_response = [c for c in calls if c.customer == NO_RESPONSE]
    assert len(no_response) == 11 and not any(c.customer_identified for c in no_response)


def test_preamble_ignored_and_bad_rows_reported() -> None:
    text = (
        "Letter text\twith a tab that is not a table\n\nATTACHMENT A\n"
        + HEADER
        + f"acme telecom\tSep 1, 2021 10:00\tAug 31, 2021 09:00 UTC\t+12025550123\t\t"
        f"SSA Imposter\t{VIOLATION}\n"
        + f"ACME Telecom.\tSep 2, 2021 10:00\tnot a date\t\t\tSSA Imposter\t{VIOLATION}\n"
        + "\n"
        + "Page 3 of 4\n"
        + f"ACME Telecom.\t\tAug 30, 2021 09:00 UTC\t\t\tSSA Imposter\t{VIOLATION}\n"
        + HEADER
        + "Acme Telecom.\tSep 3, 2021 10:00\tAug 30, 2021 08:00 UTC\t\t\tSSA imposter\t\n"
    )
    calls, errors = parse_attachment_a(text)
    assert [(e.line, e.column) for e in errors] == [
        (6, "Date of Call"),
        (8, ""),
        (9, "Date of ITG Notification"),
    ]
    assert "'not a date'" in errors[0].message
    assert [c.line for c in calls] == [5, 11]
    # Case and trailing-period variants merge; ties go to the longer spelling.
    assert {c.customer for c in calls} == {"Acme Telecom."}
    assert calls[0].caller_id == "+12025550123"
    assert summarise(calls).distinct_customers == 1


def test_no_header() -> None:
    assert parse_attachment_a("no table here\n") == (
        [],
        [RowError(1, "Customer", "no Attachment A header row found")],
    )
    empty = summarise([])
    assert (empty.rows, empty.first_call, empty.last_call, empty.campaigns) == (0, None, None, {})


def test_parse_timestamps() -> None:
    assert parse_timestamps("Sept 30, 2021 19:25 Oct 1, 2021 01:09:30") == [
        _utc(2021, 9, 30, 19, 25),
        _utc(2021, 10, 1, 1, 9, 30),
    ]
    assert parse_timestamps("") == []
    with pytest.raises(ValueError, match="unreadable"):
        parse_timestamps("Aug 27, 2021 14:20 and later")
    with pytest.raises(ValueError, match="unknown month"):
        parse_timestamps("Foo 27, 2021 14:20")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("Sep 0123:, UTCAabc.\t"), max_size=60)))
def test_parser_never_raises(rows: list[str]) -> None:
    calls, errors = parse_attachment_a(HEADER + "\n".join(rows))
    assert len(calls) + len(errors) <= len(rows)
    assert all(e.line >= 2 for e in errors)
