"""rules/dno.py on tests/data/dno/inbound_only.txt and inline lists."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.commands.common import read_file
from rules.dno import parse_dno_list, to_e164
from rules.errors import RowError
from rules.numbers import normalise

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "dno" / "inbound_only.txt"


def test_sample_list() -> None:
    entries, errors = parse_dno_list(read_file(SAMPLE))
    assert entries == [
        ("+18008291040", "IRS individual tax help line"),
        ("+18008294933", "IRS business and specialty tax line"),
        ("+18007721213", "SSA national 800 number"),
        ("+18003755283", "USCIS Contact Center"),
        ("+18006334227", "Medicare (1-800-MEDICARE)"),
        ("+18773824357", "FTC consumer response center (877-FTC-HELP)"),
        ("+18003664484", "TIGTA hotline"),  # listed twice; first comment kept
    ]
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    bad_line = next(i for i, line in enumerate(lines, start=1) if "truncated" in line)
    assert [(e.line, e.column) for e in errors] == [(bad_line, "number")]
    assert str(errors[0]).startswith(f"line {bad_line}, column 'number': ")
    # The same E.164 form the screening side computes for a caller ID.
    for e164, _ in entries:
        assert normalise(e164) == e164


def test_comment_styles_and_errors() -> None:
    text = (
        "\ufeff# header comment\n"
        "\n"
        "   # indented comment\n"
        "2024561111\n"
        "+44 20 7946 0958 UK number, spaces and a comment\n"
        "sip:+13129465000@trunk.example;user=phone  # URI form\n"
        "911  emergency is never a caller ID on this list\n"
        "(212) 011-2345 bad exchange\n"
        "hello world\n"
        "212555012\n"
        "202-555-0123 fiction range\n"
    )
    entries, errors = parse_dno_list(text)
    assert entries == [
        ("+12024561111", ""),
        ("+442079460958", "UK number, spaces and a comment"),
        ("+13129465000", "URI form"),
    ]
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [
        (7, "a short code cannot be a caller ID"),
        (8, "exchange starts with 0 or 1"),
        (9, "not a telephone number"),
        (10, "not a telephone number"),
        (11, "555-01XX fiction range"),
    ]
    assert errors[2] == RowError(9, "number", "not a telephone number: 'hello'")


def test_to_e164() -> None:
    assert to_e164("1 (800) 829-1040") == ("+18008291040", "")
    assert to_e164("+1 911 555 1234") == (None, "N11 area code")
    assert to_e164("") == (None, "not a telephone number")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("+0123456789 ()-.#,;\ttel:abc\n"), max_size=120))
def test_parser_never_raises(text: str) -> None:
    entries, errors = parse_dno_list(text)
    assert len({e for e, _ in entries}) == len(entries)
    assert all(e.startswith("+") and normalise(e) == e for e, _ in entries)
    assert all(1 <= err.line <= len(text.splitlines()) for err in errors)
