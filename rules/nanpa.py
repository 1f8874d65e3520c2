"""NANPA public files: assigned area codes and central office codes.

How this works: the do-not-originate rule lets a provider block calls whose
caller ID uses an unallocated number (47 CFR 64.1200(o); (k)(2) before it),
and the authoritative record of what is allocated is NANPA's: the NPA
database (``npa_report.csv``: one row per area code with ``NPA_ID``,
``assigned``, ``in_service``, ``in_svc_date`` ...) and the central office code
assignment file (``allutlzd.txt``: tab-separated ``State, NPA-NXX, Ocn,
Company, RateCenter, EffectiveDate, Use, AssignDate, Initial/Growth``).

Both parsers find the header row by name (any preamble line before it is
skipped), sniff tab vs comma, match columns case- and punctuation-
insensitively, and return the set of codes plus a ``RowError`` per rejected
row. They take the file's text: the caller (proxy/commands/nanpa.py) reads
the file and names it in each error. Where the file is ambiguous they lean
towards *including* a code: an allocated code missing from the set would
block lawful calls, a spare code in it only lets a spoofed call through.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import date, datetime

from rules.errors import RowError

__all__ = ["RowError", "parse_co_codes", "parse_npa_file"]

# ATIS-0300055 (NPA Allocation Plan): an NPA is NXX, N = 2-9.
_NPA_RE = re.compile(r"[2-9]\d\d")
# ATIS-0300051 (CO Code Assignment Guidelines): a CO code is NXX, N = 2-9.
_NPANXX_RE = re.compile(r"([2-9]\d\d)[\s\-./]?([2-9]\d\d)")
_JUNK_RE = re.compile(r"[^a-z0-9]+")
_YES = frozenset({"yes", "y", "true", "t", "1", "x"})
_NO = frozenset({"no", "n", "false", "f", "0", ""})
# CO code "Use" values that say the code is *not* in use; anything else
# (AS = assigned, blank, unknown) counts as allocated.
_UNUSED = frozenset({"ua", "un", "av", "available", "unassigned", "vacant", "returned"})


def _key(name: str) -> str:
    return _JUNK_RE.sub("", name.lower().lstrip("\ufeff"))


def _rows(
    text: str, must_have: Sequence[str]
) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """Header line number, header cells and (line, cells) of each later row.

    The header is the first line whose cells (normalised) include one of
    ``must_have``; the delimiter is a tab if that line has one, else a comma.
    """
    lines = text.lstrip("\ufeff").splitlines()
    for idx, line in enumerate(lines):
        delim = "\t" if "\t" in line else ","
        cells = next(csv.reader([line], delimiter=delim), [])
        if any(_key(c) in must_have for c in cells):
            body = "\n".join(lines[idx + 1 :])
            reader = csv.reader(io.StringIO(body, newline=""), delimiter=delim)
            out: list[tuple[int, list[str]]] = []
            last = idx + 1  # 1-based number of the header line
            for row in reader:
                start = last + 1
                last = idx + 1 + reader.line_num
                if any(c.strip() for c in row):
                    out.append((start, row))
            return idx + 1, cells, out
    return 0, [], []


def _col(header: Sequence[str], *names: str) -> int | None:
    for i, cell in enumerate(header):
        if _key(cell) in names:
            return i
    return None


def _cell(row: Sequence[str], i: int | None) -> str:
    return row[i].strip() if i is not None and i < len(row) else ""


def _date(text: str) -> date | None:
    s = text.strip()
    for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%m/%d/%y", "%Y%m%d"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


def parse_npa_file(text: str, as_of: date | None = None) -> tuple[set[str], list[RowError]]:
    """Assigned, in-service area codes from the NANPA NPA database export.

    An NPA counts when ``assigned`` is yes and ``in_service`` is yes (or,
    given ``as_of``, its ``in_svc_date`` is on or before ``as_of``). Without an
    ``in_service`` column ``assigned`` alone decides; without ``assigned`` a
    ``status``/``in_service`` of yes/active does. Reserved or unassigned codes
    (ATIS-0300055 §4) are left out.
    """
    header_line, header, rows = _rows(text, ("npaid", "npa", "npacode", "areacode"))
    if not header:
        return set(), [RowError(1, "NPA_ID", "required column missing")]
    c_npa = _col(header, "npaid", "npa", "npacode", "areacode")
    c_assigned = _col(header, "assigned", "isassigned")
    c_in_service = _col(header, "inservice", "isinservice")
    c_in_svc_date = _col(header, "insvcdate", "inservicedate")
    c_status = _col(header, "status")
    if c_assigned is None and c_in_service is None and c_status is None:
        return set(), [RowError(header_line, "assigned", "no assigned/in_service/status column")]
    npas: set[str] = set()
    errors: list[RowError] = []
    for line, row in rows:
        npa = _cell(row, c_npa)
        if not _NPA_RE.fullmatch(npa):
            errors.append(RowError(line, "NPA_ID", f"not an area code (NXX): {npa!r}"))
            continue
        flags: dict[str, bool] = {}
        bad = False
        for name, col in (("assigned", c_assigned), ("in_service", c_in_service)):
            if col is None:
                continue
            value = _cell(row, col).lower()
            if value in _YES:
                flags[name] = True
            elif value in _NO:
                flags[name] = False
            else:
                errors.append(RowError(line, name, f"expected Y or N, got {value!r}"))
                bad = True
        if bad:
            continue
        in_service = flags.get("in_service")
        if in_service is False and as_of is not None:
            started = _date(_cell(row, c_in_svc_date))
            in_service = started is not None and started <= as_of
        if in_service is None and "assigned" not in flags:
            in_service = _cell(row, c_status).lower() in {"active", "in service", "yes", "y"}
        if flags.get("assigned", True) and in_service is not False:
            npas.add(npa)
    return npas, errors


def parse_co_codes(text: str) -> tuple[set[str], list[RowError]]:
    """Allocated ``NPANXX`` codes (6-digit strings) from a CO code assignment file.

    The ``NPA-NXX`` cell may read ``201-202`` or ``201202``; files that split
    it into ``NPA`` and ``NXX`` columns work too.
    """
    header_line, header, rows = _rows(text, ("npanxx", "npa", "nxx", "cocode"))
    c_npanxx = _col(header, "npanxx", "cocode")
    c_npa = _col(header, "npa")
    c_nxx = _col(header, "nxx")
    if c_npanxx is None and (c_npa is None or c_nxx is None):
        return set(), [RowError(max(header_line, 1), "NPA-NXX", "required column missing")]
    c_use = _col(header, "use", "status")
    codes: set[str] = set()
    errors: list[RowError] = []
    for line, row in rows:
        if c_npanxx is not None:
            raw = _cell(row, c_npanxx)
        else:
            raw = _cell(row, c_npa) + _cell(row, c_nxx)
        m = _NPANXX_RE.fullmatch(raw)
        if m is None:
            errors.append(RowError(line, "NPA-NXX", f"not an NPA-NXX code: {raw!r}"))
            continue
        if _cell(row, c_use).lower() in _UNUSED and _cell(row, c_use):
            continue
        codes.add(m.group(1) + m.group(2))
    return codes, errors
