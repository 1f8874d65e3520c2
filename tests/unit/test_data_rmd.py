"""rules/rmd.py (and rules/imports.py) against the generated RMD exports in
tests/data/rmd/: the export's field names, the listing's display labels,
messy rows, the as-of date, absent vs removed, the drop guard."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.commands.common import read_file
from rules.errors import RowError
from rules.imports import bad_rows_message, drop_guard
from rules.rmd import (
    IMPLEMENTATIONS,
    Filer,
    as_of_date,
    diff_snapshots,
    filer_status,
    from_record,
    index_filers,
    parse_rmd_csv,
    to_record,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "rmd"
AUG = DATA / "rmd_2025_08_01.csv"
SEP = DATA / "rmd_2025_09_01.csv"
LABELS = DATA / "rmd_listing_labels.csv"
PZ = "PZ/Illum Telecommunication LLC"


def _line_of(text: str, marker: str) -> int:
    """1-based file line on which ``marker`` first appears."""
    pos = text.index(marker)
    # Count line breaks as csv does: \r\n is one break.
    return text[:pos].replace("\r\n", "\n").count("\n") + 1


def test_august_export_counts_and_errors() -> None:
    text = AUG.read_text(encoding="utf-8")
    assert text.startswith("\ufeffnumber,frn,business_name,")  # the export's field names
    assert "\n\n" in text  # blank lines between records
    filers, errors = parse_rmd_csv(text)
    assert len(filers) == 300
    # Columns are named as the file's header spells them.
    assert [e.column for e in errors] == [
        "frn",
        "number",
        "number",
        "implementation",
        "last_updated",
    ]
    # Line numbers are file lines: records with quoted newlines and blank
    # lines come before them.
    lines = [
        _line_of(text, "Bad FRN Telecom LLC"),
        _line_of(text, "Bad RMD Voice Inc."),
        _line_of(text, "Duplicate Filing Networks LLC"),
        _line_of(text, "Unknown Impl Telephone Co."),
        _line_of(text, "Bad Date Voice LLC"),
    ]
    assert [e.line for e in errors] == lines
    physical_lines = text.replace("\r\n", "\n").count("\n")
    assert physical_lines > 1 + 300 + 5  # so file line != record number
    assert "'12345'" in errors[0].message
    assert "RMD-12A" in errors[1].message
    assert errors[2].message.startswith("duplicate RMD")
    assert "Partial STIR/SHAKEN (in progress)" in errors[3].message
    assert "'2025-13-45'" in errors[4].message
    assert as_of_date(filers) == "2025-08-01"


def test_august_rows_parsed_through_field_names_and_messy_cells() -> None:
    filers, _ = parse_rmd_csv(read_file(AUG))
    by_name = {f.business_name: f for f in filers}
    pz = by_name[PZ]
    assert pz.rmd_number == "RMD0009001"
    assert pz.frn == "0030498513"  # leading zeros kept
    assert pz.dba_names == ("Illum Telecommunication", "PZ/Illum")
    assert pz.previous_names == ("PZ Telecommunication LLC",)
    assert pz.address == "1950 W. Corporate Way, Anaheim, CA 92801"  # quoted newline
    assert pz.roles == ("voice service provider", "intermediate provider")
    assert pz.implementation == IMPLEMENTATIONS[2]
    assert pz.foreign is False and pz.ocn == ""
    assert pz.contact_name == "Prince Anand"
    assert pz.country == "USA" and pz.last_updated == "2025-06-30"
    assert pz.last_recertified == "2025-03-01"
    assert pz.filing_url.startswith("https://fccprod.servicenowservices.com/rmd?")
    assert all(f.implementation in IMPLEMENTATIONS for f in filers)
    # Trailing spaces, " 0000164967", "YES"/"no"/"True"/"false" all read.
    first = by_name["Vista Connect Co."]
    assert first.frn == "0000164967" and first.foreign is False
    assert first.roles == ("voice service provider",)
    assert any(len(f.other_frns) == 2 for f in filers)
    assert all(len(f.frn) == 10 and f.frn.isdigit() for f in filers)
    assert any(f.foreign for f in filers)
    # DBA lists with a comma inside one name stay one name.
    assert any(len(f.dba_names) == 2 and f.dba_names[1].endswith(", LLC") for f in filers)


def test_september_export_and_diff() -> None:
    old, old_errors = parse_rmd_csv(read_file(AUG))
    new, new_errors = parse_rmd_csv(read_file(SEP))
    assert (len(old), len(old_errors)) == (300, 5)
    assert len(new) == 290
    assert [(e.column, "'AB1'" in e.message) for e in new_errors] == [("ocn", True)]
    assert as_of_date(new) == "2025-09-01"
    sep_text = SEP.read_text(encoding="utf-8")
    assert new_errors[0].line == _line_of(sep_text, "Bad OCN Comms Inc.")

    diff = diff_snapshots(index_filers(old), index_filers(new))
    assert len(diff.added) == 5
    assert len(diff.gone) == 15
    assert PZ in {f.business_name for f in diff.gone}
    assert len(diff.implementation_changed) == 3
    assert all(o.implementation != n.implementation for o, n in diff.implementation_changed)
    assert len(diff.ocn_changed) == 2
    assert [(o.business_name, n.business_name) for o, n in diff.name_changed][0][1] == (
        "Renamed Horizon Voice LLC"
    )
    assert len(diff.name_changed) == 1
    assert diff.unchanged == 285 - 6
    assert not diff.empty
    assert [f.rmd_number for f in diff.gone] == sorted(f.rmd_number for f in diff.gone)

    summary = diff.summary(limit=3)
    first = summary.splitlines()[0]
    assert first == (
        "RMD diff: 5 added, 15 gone (absent), 3 implementation changed, "
        "2 OCN changed, 1 renamed, 279 unchanged"
    )
    assert "... and 12 more" in summary  # 15 gone, 3 shown
    assert "... and 2 more" in summary  # 5 added, 3 shown
    assert PZ in diff.summary(limit=20)


def test_diff_of_identical_snapshots_is_empty() -> None:
    filers, _ = parse_rmd_csv(read_file(SEP))
    snap = index_filers(filers)
    diff = diff_snapshots(snap, dict(snap))
    assert diff.empty and diff.unchanged == len(filers)
    assert diff.summary().startswith("RMD diff: 0 added, 0 gone")


def test_generator_is_deterministic(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_rmd", DATA / "make_rmd.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.__dict__["HERE"] = tmp_path
    module.main()
    for name in ("rmd_2025_08_01.csv", "rmd_2025_09_01.csv", "rmd_listing_labels.csv"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes()


def test_record_round_trip() -> None:
    filers, _ = parse_rmd_csv(read_file(AUG))
    for f in filers:
        record = to_record(f)
        assert all(isinstance(v, str) for v in record.values())
        assert from_record(record) == f
    with pytest.raises(ValueError):
        from_record({"rmd_number": "RMD12", "frn": "0000000001"})


HEADER = "Business Name,FRN,RMD Number,Implementation,OCN\n"


def test_missing_rmd_column_is_one_error() -> None:
    text = "Business Name,FRN,Implementation\nAcme LLC,0000000001,N/A\nB LLC,0000000002,N/A\n"
    filers, errors = parse_rmd_csv(text)
    assert filers == []
    assert errors == [
        RowError(
            1,
            "number",
            "required column missing (the export's 'number' or the listing's 'RMD Number')",
        )
    ]
    assert parse_rmd_csv("") == (
        [],
        [RowError(1, "number", errors[0].message + " (empty file)")],
    )


def test_listing_display_labels() -> None:
    """The listing page's labels read the same filers as the export's field names."""
    labelled, errors = parse_rmd_csv(read_file(LABELS))
    assert errors == [] and len(labelled) == 6
    exported = index_filers(parse_rmd_csv(read_file(SEP))[0])
    for f in labelled[:5]:
        e = exported[f.rmd_number]
        assert (f.frn, f.business_name, f.implementation, f.roles, f.ocn, f.foreign) == (
            e.frn,
            e.business_name,
            e.implementation,
            e.roles,
            e.ocn,
            e.foreign,
        )
        assert f.last_updated == e.last_updated
    assert labelled[5].business_name == PZ


def test_real_field_names_small() -> None:
    """One row under the export's exact field names (the header refused before)."""
    text = (
        "number,frn,business_name,business_address,foreign_voice_provider,country,"
        "other_frns,other_dba_names,previous_dba_names,robocall_mitigation_contact_name,"
        "contact_title,contact_department,contact_business_address,contact_country,"
        "contact_telephone_number,contact_phone_extension,implementation,"
        "voice_service_provider_choice,gateway_provider_choice,intermediate_provider_choice,"
        "last_updated,last_recertified,filing_url\n"
        'RMD0001410,0012345678,"Acme Voice, LLC","1 Main St\nSuite 2, Dallas, TX",No,USA,'
        '"0000000009;0000000008",Acme VoIP,Acme Holdings,Jane Roe,CCO,Legal,"1 Main St",USA,'
        "(202) 555-0100,12,Complete STIR/SHAKEN Implementation,Yes,No,Yes,"
        "2025-08-20 14:03:11,2025-03-01,https://fccprod.servicenowservices.com/rmd?x=1\n"
    )
    (f,), errors = parse_rmd_csv(text)
    assert errors == []
    assert f.rmd_number == "RMD0001410" and f.frn == "0012345678"
    assert f.business_name == "Acme Voice, LLC"
    assert f.address == "1 Main St, Suite 2, Dallas, TX"
    assert f.other_frns == ("0000000009", "0000000008")
    assert f.dba_names == ("Acme VoIP",) and f.previous_names == ("Acme Holdings",)
    assert f.roles == ("voice service provider", "intermediate provider")
    assert f.contact_name == "Jane Roe" and f.contact_phone == "(202) 555-0100"
    assert f.last_updated == "2025-08-20" and f.last_recertified == "2025-03-01"
    assert as_of_date([f]) == "2025-08-20"
    assert as_of_date([]) == ""


def test_bad_other_frn_and_date_each_reported() -> None:
    text = "number,frn,business_name,other_frns,last_updated\n"
    text += "RMD0000001,0000000001,A,123,2025-01-01\n"
    text += "RMD0000002,0000000002,B,,01/02/2025\n"
    text += "RMD0000003,0000000003,C,,yesterday\n"
    filers, errors = parse_rmd_csv(text)
    assert [f.last_updated for f in filers] == ["2025-01-02"]
    assert [(e.line, e.column) for e in errors] == [(2, "other_frns"), (4, "last_updated")]


def test_filer_status_absent_vs_removed() -> None:
    # 47 CFR 64.6305(g): all but "listed" fail the gate; the order wins.
    assert filer_status(True, True, "") == "listed"
    assert filer_status(False, True, "") == "absent"
    assert filer_status(False, False, "") == "not_listed"
    assert filer_status(True, True, "DA 25-694") == "removed"
    assert filer_status(False, True, "DA 25-694") == "removed"


def test_drop_guard() -> None:
    assert drop_guard("filers", 0, 10, 0, 0.05) is None  # first import
    assert drop_guard("filers", 300, 290, 15, 0.05) is None  # 5.0%: allowed
    why = drop_guard("filers", 300, 289, 16, 0.05)
    assert why is not None and "16 of 300 filers" in why and "5.3%" in why
    why = drop_guard("filers", 1000, 900, 0, 0.05)  # far fewer rows, nothing dropped
    assert why is not None and "900 filers against 1000" in why
    assert drop_guard("codes", 100, 40, 60, 1.0) is None  # the guard switched off
    msg = bad_rows_message("x.csv", [RowError(2, "frn", "bad")])
    assert msg.startswith("x.csv: 1 bad row; nothing imported") and "--skip-bad-rows" in msg


def test_header_aliases_and_normalisation() -> None:
    text = (
        "\ufeffRMD_number,FCC Registration Number,name,stir/shaken implementation,"
        "Operating Company Number,Provider Type,Unrelated\n"
        'rmd 0001410,0012-345-678,"Acme, Voice LLC",'
        "complete  stir/shaken implementation,1a2b,Intermediate Provider; Gateway Provider,x\n"
    )
    (filer,), errors = parse_rmd_csv(text)
    assert errors == []
    assert filer == Filer(
        rmd_number="RMD0001410",
        frn="0012345678",
        business_name="Acme, Voice LLC",
        implementation="Complete STIR/SHAKEN Implementation",
        roles=("gateway provider", "intermediate provider"),
        ocn="1A2B",
    )


def test_error_message_format() -> None:
    text = HEADER + "Acme LLC,12-34,RMD0000001,N/A,\n"
    _, (error,) = parse_rmd_csv(text)
    assert str(error).startswith("line 2, column 'FRN': not a 10-digit FCC Registration Number")


def test_bad_values_each_reported() -> None:
    text = (
        HEADER
        + "A LLC,0000000001,RMD0000001,N/A,12345\n"  # OCN too long
        + "B LLC,0000000002,RMD0000002,Maybe Implementation,\n"
        + ",0000000003,RMD0000003,N/A,\n"  # no name
        + "D LLC,0000000004,RMD0000004,No STIR/SHAKEN Implementation – Performing "
        "Robocall Mitigation,\n"  # en dash tolerated
    )
    filers, errors = parse_rmd_csv(text)
    assert [f.rmd_number for f in filers] == ["RMD0000004"]
    assert [(e.line, e.column) for e in errors] == [
        (2, "OCN"),
        (3, "Implementation"),
        (4, "Business Name"),
    ]
    assert "'Maybe Implementation'" in errors[1].message


def test_foreign_flag_values() -> None:
    text = "RMD Number,FRN,Business Name,Foreign\n"
    text += "RMD0000001,0000000001,A,Yes\nRMD0000002,0000000002,B,no\nRMD0000003,0000000003,C,?\n"
    filers, errors = parse_rmd_csv(text)
    assert [f.foreign for f in filers] == [True, False]
    assert [(e.line, e.column) for e in errors] == [(4, "Foreign")]  # as the header says


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from('RMD0123456789,"\n\r ab;-\ufeff'), max_size=300))
def test_parser_never_raises(text: str) -> None:
    filers, errors = parse_rmd_csv(HEADER + text)
    assert all(isinstance(e, RowError) and e.line >= 1 for e in errors)
    assert len({f.rmd_number for f in filers}) == len(filers)
