"""Every sample of docs/FORMATS.md imports without a bad row."""

from __future__ import annotations

from pathlib import Path

from proxy.commands.common import read_file
from rules import dno, nanpa, rmd
from rules import traceback as tb

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"


def test_rmd_samples_both_spellings() -> None:
    exported, errors = rmd.parse_rmd_csv(read_file(SAMPLES / "rmd_export.csv"))
    assert errors == [] and len(exported) == 3
    assert rmd.as_of_date(exported) == "2025-09-01"
    listed, errors = rmd.parse_rmd_csv(read_file(SAMPLES / "rmd_listing.csv"))
    assert errors == [] and len(listed) == 2
    for a, b in zip(exported, listed, strict=False):
        assert (a.rmd_number, a.frn, a.business_name, a.roles) == (
            b.rmd_number,
            b.frn,
            b.business_name,
            b.roles,
        )


def test_nanpa_dno_and_attachment_samples() -> None:
    assert nanpa.parse_npa_file(read_file(SAMPLES / "npa_report.csv")) == ({"201", "202"}, [])
    assert nanpa.parse_co_codes(read_file(SAMPLES / "allutlzd.txt")) == ({"201202", "202200"}, [])
    entries, errors = dno.parse_dno_list(read_file(SAMPLES / "dno_inbound_only.txt"))
    assert errors == [] and len(entries) == 3
    calls, errors = tb.parse_attachment_a((SAMPLES / "attachment_a.txt").read_text("utf-8"))
    assert errors == [] and len(calls) == 2
