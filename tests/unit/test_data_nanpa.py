"""rules/nanpa.py on the sample NANPA files in tests/data/nanpa/."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.commands.common import read_file
from rules.errors import RowError
from rules.nanpa import parse_co_codes, parse_npa_file

DATA = Path(__file__).resolve().parent.parent / "data" / "nanpa"
NPA_FILE = DATA / "npa_report_sample.csv"
CO_FILE = DATA / "allutlzd_sample.txt"


def _line_of(path: Path, start: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, start=1) if line.startswith(start))


def test_npa_sample() -> None:
    npas, errors = parse_npa_file(read_file(NPA_FILE))
    assert len(npas) == 25
    assert {"201", "202", "212", "416", "800", "833", "876", "900"} <= npas
    # N11, N9X, 37X/96X, 555, 950: reserved or unassignable; 357 not in service yet.
    assert npas.isdisjoint({"211", "290", "370", "555", "950", "960", "357"})
    assert [(e.line, e.column) for e in errors] == [
        (_line_of(NPA_FILE, "2O2,"), "NPA_ID"),
        (_line_of(NPA_FILE, "21,"), "NPA_ID"),
        (_line_of(NPA_FILE, "972,"), "in_service"),
    ]
    assert "'maybe'" in errors[2].message


def test_npa_in_service_date_counts_with_as_of() -> None:
    before, _ = parse_npa_file(read_file(NPA_FILE), as_of=date(2026, 5, 31))
    after, _ = parse_npa_file(read_file(NPA_FILE), as_of=date(2026, 6, 1))
    assert after - before == {"357"}


def test_npa_tab_separated_and_column_variants() -> None:
    text = "NPA\tSTATUS\n201\tActive\n202\tSuspended\n\n203\tactive\n"
    assert parse_npa_file(text) == ({"201", "203"}, [])
    text = "npa_id,assigned\n201,Yes\n202,no\n"
    assert parse_npa_file(text) == ({"201"}, [])
    assert parse_npa_file("npa_id,location\n201,NJ\n") == (
        set(),
        [RowError(1, "assigned", "no assigned/in_service/status column")],
    )
    assert parse_npa_file("area,codes\n") == (
        set(),
        [RowError(1, "NPA_ID", "required column missing")],
    )


def test_co_code_sample() -> None:
    codes, errors = parse_co_codes(read_file(CO_FILE))
    assert len(codes) == 25
    assert {"201202", "202418", "212209", "202555"} <= codes  # "201-202", "202418", "212 209"
    assert "203201" not in codes  # Use UA: not in use
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert [(e.line, e.column) for e in errors] == [
        (_line_of(CO_FILE, "DC\t202-1XX"), "NPA-NXX"),
        (_line_of(CO_FILE, "TX\t51-2201"), "NPA-NXX"),
    ]
    # Every allocated exchange lies in an area code the NPA file has in service.
    npas, _ = parse_npa_file(read_file(NPA_FILE))
    assert {c[:3] for c in codes} <= npas


def test_co_code_split_columns_and_missing_column() -> None:
    text = "NPA,NXX,OCN\n201,202,9102\n202,555,9206\n202,055,9206\n"
    codes, errors = parse_co_codes(text)
    assert codes == {"201202", "202555"}
    assert errors == [RowError(4, "NPA-NXX", "not an NPA-NXX code: '202055'")]
    assert parse_co_codes("State,Company\nNJ,Foo\n") == (
        set(),
        [RowError(1, "NPA-NXX", "required column missing")],
    )


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('0123456789-, \t\nYNyes"AS'), max_size=200))
def test_parsers_never_raise(body: str) -> None:
    npas, npa_errors = parse_npa_file("NPA_ID,assigned,in_service\n" + body)
    codes, co_errors = parse_co_codes("State\tNPA-NXX\tUse\n" + body)
    assert all(len(n) == 3 for n in npas) and all(len(c) == 6 for c in codes)
    assert all(e.line >= 2 for e in npa_errors + co_errors)
