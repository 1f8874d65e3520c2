"""The FCC Robocall Mitigation Database (RMD) CSV export, parsed and diffed.

How this works: every voice service, gateway and intermediate provider must
file a certification in the RMD (47 CFR 64.6305(d)-(f)); intermediate and
terminating providers must not accept traffic directly from a provider that
is not listed (47 CFR 64.6305(g)). The FCC publishes the listing as a CSV
export. ``parse_rmd_csv`` reads it with the stdlib ``csv`` module (quoted
fields may hold commas and newlines), matches header names loosely
(case, spaces, underscores and punctuation ignored; any order; a byte-order
mark stripped; unknown columns ignored), validates each row and returns the
good rows as ``Filer`` records plus a ``RowError`` for each row it skipped,
naming the line in the *file* where that record starts and the column as
the file's header spells it.

Two spellings of the header are accepted: the CSV export's field names
(``number``, ``frn``, ``business_name``, ``foreign_voice_provider``,
``other_frns``, ``previous_dba_names``, ``implementation``,
``voice_service_provider_choice``, ``gateway_provider_choice``,
``intermediate_provider_choice``, ``last_updated``, ``last_recertified``,
``filing_url``, ...) and the listing page's display labels ("RMD Number",
"FCC Registration Number (FRN)", "Business Name", "Voice Service Provider",
"Gateway Provider", "Non-Gateway Intermediate Provider", ...); see
docs/FORMATS.md. The contact's title, department, address, country and
extension are not kept. ``as_of_date`` gives the newest ``last_updated`` of
an export: the date the snapshot describes, not the day it was imported.

The export has no "removed" flag: a filer the FCC removed (e.g. DA 22-1219,
DA 25-694) simply disappears. ``diff_snapshots`` compares two exports keyed
by RMD number; a vanished filer is ``absent`` (missing from the export, for
whatever reason) unless a removal order was recorded for it, which makes it
``removed`` (``filer_status``). Both fail the 64.6305(g) gate.
``to_record``/``from_record`` flatten a ``Filer`` to a ``dict[str, str]`` for
a Redis HASH or JSON and back. Nothing here does I/O: the caller reads the
file (proxy/commands/rmd.py) and hands ``parse_rmd_csv`` its text; a
``RowError`` carries the line, the caller names the file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from rules.errors import RowError

__all__ = [
    "IMPLEMENTATIONS",
    "ROLES",
    "Filer",
    "RmdDiff",
    "RowError",
    "ABSENT",
    "LISTED",
    "NOT_LISTED",
    "REMOVED",
    "as_of_date",
    "diff_snapshots",
    "filer_status",
    "from_record",
    "index_filers",
    "normalise_frn",
    "normalise_rmd_number",
    "parse_rmd_csv",
    "to_record",
]

# The four implementation values the RMD certification form offers
# (47 CFR 64.6305(d)(1), (e)(1), (f)(1): complete, partial or no STIR/SHAKEN
# with a robocall mitigation program; "N/A" for filers with no IP network).
IMPLEMENTATIONS: tuple[str, ...] = (
    "Complete STIR/SHAKEN Implementation",
    "Partial STIR/SHAKEN Implementation - Performing Robocall Mitigation",
    "No STIR/SHAKEN Implementation - Performing Robocall Mitigation",
    "N/A",
)

# Provider roles a filer can certify for (47 CFR 64.6305(d), (e), (f)).
ROLE_VOICE = "voice service provider"
ROLE_GATEWAY = "gateway provider"
ROLE_INTERMEDIATE = "intermediate provider"
ROLES: tuple[str, ...] = (ROLE_VOICE, ROLE_GATEWAY, ROLE_INTERMEDIATE)

_RMD_NUMBER_RE = re.compile(r"RMD\d{7}")
_FRN_RE = re.compile(r"\d{10}")
# An OCN is four characters, digits and capital letters (NECA assigns them).
_OCN_RE = re.compile(r"[0-9A-Z]{4}")
_HEADER_JUNK_RE = re.compile(r"[^a-z0-9]+")
_NAME_SPLIT_RE = re.compile(r"[;|\n\r]+")
_FRN_SPLIT_RE = re.compile(r"[;|,/\s]+")
_ISO_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?")
_US_DATE_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[T ].*)?")
_EMPTY_MARKERS = frozenset({"", "n/a", "na", "none", "-", "--", "null"})
_TRUE = frozenset({"yes", "y", "true", "t", "1", "x", "checked"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "", "unchecked"})


def _header_key(name: str) -> str:
    return _HEADER_JUNK_RE.sub("", name.lower())


# Header aliases, compared after _header_key(): lower case, only [a-z0-9].
# The first alias of each field is the CSV export's field name.
_ALIASES: dict[str, tuple[str, ...]] = {
    "business_name": ("businessname", "name", "companyname", "legalname", "providername"),
    "frn": ("frn", "fccregistrationnumber", "fccregistrationnumberfrn", "registrationnumber"),
    "rmd_number": (
        "number",
        "rmdnumber",
        "rmd",
        "rmdno",
        "rmdid",
        "robocallmitigationdatabasenumber",
    ),
    "previous_names": (
        "previousdbanames",
        "previousbusinessnames",
        "previousnames",
        "formernames",
        "priornames",
    ),
    "dba_names": ("otherdbanames", "dbanames", "dba", "otherdbaname", "doingbusinessas"),
    "address": ("businessaddress", "address", "principaladdress"),
    "foreign": (
        "foreignvoiceprovider",
        "foreignvoiceserviceprovider",
        "foreign",
        "foreignprovider",
        "isforeign",
    ),
    "country": ("country", "businesscountry"),
    "other_frns": ("otherfrns", "otherfrn", "otherfccregistrationnumbers"),
    "implementation": (
        "implementation",
        "stirshakenimplementation",
        "implementationstatus",
        "stirshakenstatus",
    ),
    "role_voice": ("voiceserviceproviderchoice", "voiceserviceprovider"),
    "role_gateway": ("gatewayproviderchoice", "gatewayprovider"),
    "role_intermediate": (
        "intermediateproviderchoice",
        "intermediateprovider",
        "nongatewayintermediateprovider",
        "nongatewayintermediateproviderchoice",
    ),
    "roles": ("providertype", "providerroles", "roles", "providertypes"),
    "contact_name": ("contactname", "robocallmitigationcontactname"),
    "contact_email": ("contactemail", "contactemailaddress", "email"),
    "contact_phone": ("contacttelephonenumber", "contactphone", "contacttelephone", "phone"),
    "ocn": ("ocn", "operatingcompanynumber", "operatingcompanynumberocn"),
    "last_updated": ("lastupdated", "lastupdateddate", "dateupdated", "updated"),
    "last_recertified": ("lastrecertified", "lastrecertifieddate", "recertified"),
    "filing_url": ("filingurl", "url", "filinglink", "link"),
}
_HEADER_TO_FIELD: dict[str, str] = {
    alias: fld for fld, aliases in _ALIASES.items() for alias in aliases
}
_ROLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("role_voice", ROLE_VOICE),
    ("role_gateway", ROLE_GATEWAY),
    ("role_intermediate", ROLE_INTERMEDIATE),
)
# Display header of each field, used in RowError.column when the file's own
# header cell for that field is not known.
_COLUMN_NAMES: dict[str, str] = {
    "business_name": "Business Name",
    "frn": "FRN",
    "rmd_number": "RMD Number",
    "other_frns": "Other FRNs",
    "last_updated": "Last Updated",
    "last_recertified": "Last Recertified",
    "previous_names": "Previous Business Names",
    "dba_names": "Other DBA Names",
    "address": "Business Address",
    "foreign": "Foreign Voice Service Provider",
    "implementation": "Implementation",
    "roles": "Provider Type",
    "ocn": "OCN",
}


def _impl_key(value: str) -> str:
    # Tolerate case, repeated spaces and en/em dashes in the implementation text.
    value = value.replace("\u2013", "-").replace("\u2014", "-")
    return " ".join(value.replace(" - ", " ").replace("-", " ").lower().split())


_IMPLEMENTATION_BY_KEY: dict[str, str] = {_impl_key(v): v for v in IMPLEMENTATIONS}


@dataclass(frozen=True, slots=True)
class Filer:
    """One RMD certification (one row of the export)."""

    rmd_number: str
    frn: str
    business_name: str
    dba_names: tuple[str, ...] = ()
    previous_names: tuple[str, ...] = ()
    address: str = ""
    foreign: bool = False
    implementation: str = "N/A"
    roles: tuple[str, ...] = ()
    ocn: str = ""
    contact_name: str = ""
    contact_email: str = ""
    contact_phone: str = ""
    country: str = ""
    other_frns: tuple[str, ...] = ()
    last_updated: str = ""  # ISO date, "" when the export has none
    last_recertified: str = ""
    filing_url: str = ""


class _BadCell(Exception):
    def __init__(self, fld: str, message: str) -> None:
        super().__init__(message)
        self.fld = fld
        self.message = message


def _clean(value: str) -> str:
    return " ".join(value.split())


def _address(value: str) -> str:
    # A quoted address may span lines ("Suite 3514" on its own line).
    return ", ".join(line for line in (_clean(p) for p in value.splitlines()) if line)


def _names(value: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in _NAME_SPLIT_RE.split(value):
        name = _clean(part)
        if name.lower() not in _EMPTY_MARKERS and name not in out:
            out.append(name)
    return tuple(out)


def normalise_rmd_number(raw: str) -> str | None:
    """``" rmd 0001410"`` → ``"RMD0001410"``; None unless ``RMD`` + 7 digits."""
    candidate = re.sub(r"[\s\-_]", "", raw).upper()
    return candidate if _RMD_NUMBER_RE.fullmatch(candidate) else None


def normalise_frn(raw: str) -> str | None:
    """``"0012-345-678"`` → ``"0012345678"`` (leading zeros kept); None unless 10 digits."""
    candidate = re.sub(r"[\s\-]", "", raw)
    return candidate if _FRN_RE.fullmatch(candidate) else None


def _other_frns(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in _FRN_SPLIT_RE.split(raw.strip()):
        if part.lower() in _EMPTY_MARKERS:
            continue
        frn = normalise_frn(part)
        if frn is None:
            raise _BadCell("other_frns", f"not a 10-digit FCC Registration Number: {part!r}")
        if frn not in out:
            out.append(frn)
    return tuple(out)


def _iso_date(fld: str, raw: str) -> str:
    """``2025-07-01`` (a time part is dropped; ``7/1/2025`` tolerated) or ""."""
    text = raw.strip()
    if text.lower() in _EMPTY_MARKERS:
        return ""
    m = _ISO_DATE_RE.fullmatch(text)
    if m is not None:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _US_DATE_RE.fullmatch(text)
        if m is None:
            raise _BadCell(fld, f"not a date (YYYY-MM-DD): {text!r}")
        mo, d, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        return date(y, mo, d).isoformat()
    except ValueError:
        raise _BadCell(fld, f"not a date (YYYY-MM-DD): {text!r}") from None


def _bool(fld: str, raw: str) -> bool:
    key = raw.strip().lower()
    if key in _TRUE:
        return True
    if key in _FALSE:
        return False
    raise _BadCell(fld, f"expected yes or no, got {raw.strip()!r}")


def _role_flag(raw: str, role: str) -> bool:
    key = raw.strip().lower()
    # The export puts either yes/no or the role's own name in its column.
    return key in _TRUE or (key not in _FALSE and _impl_key(key) == _impl_key(role))


def _roles_from_text(raw: str) -> tuple[str, ...]:
    key = raw.lower()
    return tuple(role for role in ROLES if role.split()[0] in key)


def _filer_from_cells(cells: Mapping[str, str]) -> Filer:
    def get(fld: str) -> str:
        return cells.get(fld, "")

    rmd_number = normalise_rmd_number(get("rmd_number"))
    if rmd_number is None:
        raise _BadCell("rmd_number", f"not an RMD number (RMD + 7 digits): {get('rmd_number')!r}")
    frn = normalise_frn(get("frn"))
    if frn is None:
        raise _BadCell("frn", f"not a 10-digit FCC Registration Number: {get('frn')!r}")
    business_name = _clean(get("business_name"))
    if not business_name:
        raise _BadCell("business_name", "empty business name")
    impl_raw = _clean(get("implementation"))
    implementation = _IMPLEMENTATION_BY_KEY.get(_impl_key(impl_raw)) if impl_raw else "N/A"
    if implementation is None:
        raise _BadCell("implementation", f"unknown implementation value {impl_raw!r}")
    ocn = _clean(get("ocn")).upper()
    if ocn.lower() in _EMPTY_MARKERS:
        ocn = ""
    elif not _OCN_RE.fullmatch(ocn):
        raise _BadCell("ocn", f"not a 4-character Operating Company Number: {ocn!r}")
    roles: list[str] = list(_roles_from_text(get("roles")))
    for fld, role in _ROLE_COLUMNS:
        if fld in cells and _role_flag(cells[fld], role) and role not in roles:
            roles.append(role)
    return Filer(
        rmd_number=rmd_number,
        frn=frn,
        business_name=business_name,
        dba_names=_names(get("dba_names")),
        previous_names=_names(get("previous_names")),
        address=_address(get("address")),
        foreign=_bool("foreign", get("foreign")),
        implementation=implementation,
        roles=tuple(r for r in ROLES if r in roles),
        ocn=ocn,
        contact_name=_clean(get("contact_name")),
        contact_email=_clean(get("contact_email")),
        contact_phone=_clean(get("contact_phone")),
        country=_clean(get("country")),
        other_frns=tuple(x for x in _other_frns(get("other_frns")) if x != frn),
        last_updated=_iso_date("last_updated", get("last_updated")),
        last_recertified=_iso_date("last_recertified", get("last_recertified")),
        filing_url=_clean(get("filing_url")),
    )


_MISSING_RMD_NUMBER = (
    "required column missing (the export's 'number' or the listing's 'RMD Number')"
)


def parse_rmd_csv(text: str) -> tuple[list[Filer], list[RowError]]:
    """Parse an RMD CSV export; return the valid filers and one error per skipped row."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    header_line = 0
    filers: list[Filer] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    columns: dict[int, str] = {}
    names: dict[str, str] = {}  # field -> the file's header cell for it
    last_line = 0
    try:
        for row in reader:
            # The record starts on the line after the previous record ended;
            # reader.line_num is where this one ended (quoted newlines).
            start = last_line + 1
            last_line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = row, start
                for i, name in enumerate(row):
                    fld = _HEADER_TO_FIELD.get(_header_key(name.lstrip("\ufeff")))
                    if fld is not None and fld not in columns.values():
                        columns[i] = fld
                        names[fld] = name.lstrip("\ufeff").strip()
                if "rmd_number" not in columns.values():
                    return [], [RowError(header_line, "number", _MISSING_RMD_NUMBER)]
                continue
            cells = {fld: row[i] for i, fld in columns.items() if i < len(row)}
            try:
                filer = _filer_from_cells(cells)
            except _BadCell as bad:
                col = names.get(bad.fld) or _COLUMN_NAMES.get(bad.fld, bad.fld)
                errors.append(RowError(start, col, bad.message))
                continue
            if filer.rmd_number in seen:
                errors.append(
                    RowError(
                        start,
                        names["rmd_number"],
                        f"duplicate {filer.rmd_number} (first on line {seen[filer.rmd_number]})",
                    )
                )
                continue
            seen[filer.rmd_number] = start
            filers.append(filer)
    except csv.Error as exc:
        errors.append(RowError(reader.line_num, "", f"CSV syntax: {exc}"))
    if header is None:
        return [], [RowError(1, "number", _MISSING_RMD_NUMBER + " (empty file)")]
    return filers, errors


def index_filers(filers: Iterable[Filer]) -> dict[str, Filer]:
    """Key filers by RMD number (the snapshot shape ``diff_snapshots`` takes)."""
    return {f.rmd_number: f for f in filers}


def as_of_date(filers: Iterable[Filer]) -> str:
    """The newest ``last_updated`` of an export (ISO date), "" if it has none.

    An export is a picture of the database on the day of its newest change,
    so this is the date a snapshot is filed under, not the day it was
    imported.
    """
    return max((f.last_updated for f in filers if f.last_updated), default="")


# What a filer (or the provider tied to it) is in the RMD. 47 CFR 64.6305(g):
# traffic is accepted directly only from a provider whose filing appears in
# the RMD and has not been removed by an enforcement action; "absent",
# "removed" and "not_listed" all fail that test, and say which way.
LISTED = "listed"
ABSENT = "absent"  # was in an earlier export, missing from the one in force
REMOVED = "removed"  # an FCC removal order is recorded (rmd remove --order)
NOT_LISTED = "not_listed"  # never in any imported export


def filer_status(listed: bool, seen: bool, order: str) -> str:
    """Status of a filer: in the export in force (``listed``), in an earlier
    one only (``seen``), and the removal order recorded for it ("" if none).

    A recorded order wins over the export (it may lag the order).
    """
    if order:
        return REMOVED
    if listed:
        return LISTED
    return ABSENT if seen else NOT_LISTED


@dataclass(frozen=True, slots=True)
class RmdDiff:
    """What changed between two RMD exports, each list sorted by RMD number."""

    added: tuple[Filer, ...] = ()
    # Missing from the new export: "absent" (the FCC removed them, or they
    # withdrew; the export does not say which). 47 CFR 64.6305(g): stop
    # accepting their traffic directly.
    gone: tuple[Filer, ...] = ()
    implementation_changed: tuple[tuple[Filer, Filer], ...] = ()
    ocn_changed: tuple[tuple[Filer, Filer], ...] = ()
    name_changed: tuple[tuple[Filer, Filer], ...] = ()
    unchanged: int = field(default=0)

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.gone
            or self.implementation_changed
            or self.ocn_changed
            or self.name_changed
        )

    def summary(self, limit: int = 5) -> str:
        """Counts, then the first ``limit`` entries of each kind, one per line."""
        lines = [
            f"RMD diff: {len(self.added)} added, {len(self.gone)} gone (absent), "
            f"{len(self.implementation_changed)} implementation changed, "
            f"{len(self.ocn_changed)} OCN changed, {len(self.name_changed)} renamed, "
            f"{self.unchanged} unchanged"
        ]

        def section(title: str, items: list[str]) -> None:
            if not items:
                return
            lines.append(f"{title}:")
            lines.extend(f"  {item}" for item in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

        section("added", [f"{f.rmd_number} {f.business_name}" for f in self.added])
        section("gone (absent)", [f"{f.rmd_number} {f.business_name}" for f in self.gone])
        section(
            "implementation changed",
            [
                f"{n.rmd_number} {n.business_name}: {o.implementation} -> {n.implementation}"
                for o, n in self.implementation_changed
            ],
        )
        section(
            "OCN changed",
            [
                f"{n.rmd_number} {n.business_name}: {o.ocn or '-'} -> {n.ocn or '-'}"
                for o, n in self.ocn_changed
            ],
        )
        section(
            "renamed",
            [
                f"{n.rmd_number}: {o.business_name} -> {n.business_name}"
                for o, n in self.name_changed
            ],
        )
        return "\n".join(lines)


def diff_snapshots(old: Mapping[str, Filer], new: Mapping[str, Filer]) -> RmdDiff:
    """Compare two exports keyed by RMD number (see ``index_filers``)."""
    added = tuple(new[k] for k in sorted(new.keys() - old.keys()))
    gone = tuple(old[k] for k in sorted(old.keys() - new.keys()))
    impl: list[tuple[Filer, Filer]] = []
    ocn: list[tuple[Filer, Filer]] = []
    name: list[tuple[Filer, Filer]] = []
    unchanged = 0
    for key in sorted(old.keys() & new.keys()):
        o, n = old[key], new[key]
        if o.implementation != n.implementation:
            impl.append((o, n))
        if o.ocn != n.ocn:
            ocn.append((o, n))
        if o.business_name != n.business_name:
            name.append((o, n))
        if o == n:
            unchanged += 1
    return RmdDiff(added, gone, tuple(impl), tuple(ocn), tuple(name), unchanged)


# Flat record (Redis HASH / JSON). Name lists are joined by newline, which
# _names() never leaves inside a name; roles by comma.
def to_record(f: Filer) -> dict[str, str]:
    """Flatten a filer to ``str`` fields (see ``from_record``)."""
    return {
        "rmd_number": f.rmd_number,
        "frn": f.frn,
        "business_name": f.business_name,
        "dba_names": "\n".join(f.dba_names),
        "previous_names": "\n".join(f.previous_names),
        "address": f.address,
        "foreign": "1" if f.foreign else "0",
        "implementation": f.implementation,
        "roles": ",".join(f.roles),
        "ocn": f.ocn,
        "contact_name": f.contact_name,
        "contact_email": f.contact_email,
        "contact_phone": f.contact_phone,
        "country": f.country,
        "other_frns": ",".join(f.other_frns),
        "last_updated": f.last_updated,
        "last_recertified": f.last_recertified,
        "filing_url": f.filing_url,
    }


def from_record(d: Mapping[str, str]) -> Filer:
    """Rebuild a filer from ``to_record`` output; raises ValueError if malformed."""
    rmd_number = normalise_rmd_number(d.get("rmd_number", ""))
    frn = normalise_frn(d.get("frn", ""))
    if rmd_number is None or frn is None:
        raise ValueError(
            f"bad RMD record: rmd_number={d.get('rmd_number')!r}, frn={d.get('frn')!r}"
        )

    def split(value: str, sep: str) -> tuple[str, ...]:
        return tuple(part for part in value.split(sep) if part)

    return Filer(
        rmd_number=rmd_number,
        frn=frn,
        business_name=d.get("business_name", ""),
        dba_names=split(d.get("dba_names", ""), "\n"),
        previous_names=split(d.get("previous_names", ""), "\n"),
        address=d.get("address", ""),
        foreign=d.get("foreign", "0") == "1",
        implementation=d.get("implementation", "N/A"),
        roles=split(d.get("roles", ""), ","),
        ocn=d.get("ocn", ""),
        contact_name=d.get("contact_name", ""),
        contact_email=d.get("contact_email", ""),
        contact_phone=d.get("contact_phone", ""),
        country=d.get("country", ""),
        other_frns=split(d.get("other_frns", ""), ","),
        last_updated=d.get("last_updated", ""),
        last_recertified=d.get("last_recertified", ""),
        filing_url=d.get("filing_url", ""),
    )
