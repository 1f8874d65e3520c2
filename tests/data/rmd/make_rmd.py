"""Write the synthetic RMD CSV exports used by tests/unit/test_data_rmd.py.

How this works: a seeded ``random.Random`` builds ~300 fictional filers in
the shape of the FCC Robocall Mitigation Database export (47 CFR 64.6305),
then writes, with the export's own field names as the header (``number``,
``frn``, ``business_name``, ..., ``last_updated``, ``filing_url``, ``ocn``):

* ``rmd_2025_08_01.csv``: BOM, CRLF, quoted fields with commas and embedded
  newlines, blank lines between records, trailing spaces, mixed-case
  booleans (``YES``, ``no``, ``True``), an extra unknown column, and five bad
  rows (bad FRN, bad RMD number, duplicate RMD number, unknown
  implementation value, impossible ``last_updated``); newest
  ``last_updated`` 2025-08-01;
* ``rmd_2025_09_01.csv``: a month later (newest ``last_updated``
  2025-09-01), LF line ends, 15 filers gone ("PZ/Illum Telecommunication
  LLC" among them), 5 added, 3 implementation changes, 2 OCN changes, 1
  rename, plus one row with a malformed OCN;
* ``rmd_listing_labels.csv``: six filers under the listing page's display
  labels ("RMD Number", "FCC Registration Number (FRN)", ...), no bad row.

Run ``python3 tests/data/rmd/make_rmd.py`` to regenerate; the output is
byte-for-byte deterministic. Every name, number and address is invented.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 64_6305  # 47 CFR 64.6305

IMPLEMENTATIONS = (
    "Complete STIR/SHAKEN Implementation",
    "Partial STIR/SHAKEN Implementation - Performing Robocall Mitigation",
    "No STIR/SHAKEN Implementation - Performing Robocall Mitigation",
    "N/A",
)
FIRST = (
    "Alpine Amber Anchor Apex Atlas Beacon Birch Blue Bridge Canyon Cedar Cobalt "
    "Comet Coral Crest Delta Eagle Ember Falcon Frontier Granite Harbor Horizon "
    "Iron Jade Keystone Lake Liberty Maple Meridian Mesa Nova Oak Orbit Pacific "
    "Pine Prairie Quartz Redwood Ridge River Sierra Summit Tidal Valley Vista"
).split()
SECOND = "Telecom Communications Networks Voice Telephone Connect Fiber Wireless Link".split()
SUFFIX = ("LLC", "Inc.", "Corp.", "Ltd.", "Co.", "L.P.")
STREETS = ("Main St", "Commerce Dr", "Industrial Pkwy", "Market St", "Corporate Way", "Elm Ave")
CITIES = (
    ("Anaheim", "CA", "92801"),
    ("Dallas", "TX", "75201"),
    ("Newark", "NJ", "07102"),
    ("Miami", "FL", "33131"),
    ("Denver", "CO", "80202"),
    ("Chicago", "IL", "60601"),
    ("Reston", "VA", "20190"),
)
FOREIGN_CITIES = ("Noida, Uttar Pradesh 201301, India", "Toronto, ON M5H 2N2, Canada")

# Internal row keys (display names as the FCC's site labels them) ...
COLUMNS = (
    "Business Name",
    "FRN",
    "RMD Number",
    "Previous Business Names",
    "Other DBA Names",
    "Business Address",
    "Foreign Voice Service Provider",
    "Implementation",
    "Voice Service Provider Choice",
    "Gateway Provider Choice",
    "Intermediate Provider Choice",
    "Contact Name",
    "Contact Email",
    "Contact Telephone Number",
    "OCN",
    "Country",
    "Other FRNs",
    "Last Updated",
    "Last Recertified",
    "Filing URL",
)
# ... and the CSV export's field names for them, in the export's order.
EXPORT: tuple[tuple[str, str], ...] = (
    ("number", "RMD Number"),
    ("frn", "FRN"),
    ("business_name", "Business Name"),
    ("business_address", "Business Address"),
    ("foreign_voice_provider", "Foreign Voice Service Provider"),
    ("country", "Country"),
    ("other_frns", "Other FRNs"),
    ("other_dba_names", "Other DBA Names"),
    ("previous_dba_names", "Previous Business Names"),
    ("robocall_mitigation_contact_name", "Contact Name"),
    ("contact_title", "Contact Title"),
    ("contact_department", "Contact Department"),
    ("contact_business_address", "Contact Business Address"),
    ("contact_country", "Country"),
    ("contact_telephone_number", "Contact Telephone Number"),
    ("contact_phone_extension", "Contact Extension"),
    ("implementation", "Implementation"),
    ("voice_service_provider_choice", "Voice Service Provider Choice"),
    ("gateway_provider_choice", "Gateway Provider Choice"),
    ("intermediate_provider_choice", "Intermediate Provider Choice"),
    ("last_updated", "Last Updated"),
    ("last_recertified", "Last Recertified"),
    ("filing_url", "Filing URL"),
    ("ocn", "OCN"),
)
# The listing page's display labels (rmd_listing_labels.csv).
LABELS: tuple[tuple[str, str], ...] = (
    ("RMD Number", "RMD Number"),
    ("Business Name", "Business Name"),
    ("FCC Registration Number (FRN)", "FRN"),
    ("Other DBA Name(s)", "Other DBA Names"),
    ("Foreign Voice Service Provider", "Foreign Voice Service Provider"),
    ("Implementation", "Implementation"),
    ("Voice Service Provider", "Voice Service Provider Choice"),
    ("Gateway Provider", "Gateway Provider Choice"),
    ("Non-Gateway Intermediate Provider", "Intermediate Provider Choice"),
    ("Operating Company Number (OCN)", "OCN"),
    ("Last Updated", "Last Updated"),
)
URL = "https://fccprod.servicenowservices.com/rmd?id=rmd_form&sys_id="

Row = dict[str, str]


def make_filers(rng: random.Random, count: int, start: int) -> list[Row]:
    rows: list[Row] = []
    used: set[str] = set()
    n = start
    while len(rows) < count:
        name = f"{rng.choice(FIRST)} {rng.choice(SECOND)} {rng.choice(SUFFIX)}"
        if name in used:
            continue
        used.add(name)
        n += 1
        foreign = rng.random() < 0.12
        if foreign:
            address = (
                f"{rng.randint(1, 400)} Sector {rng.randint(1, 90)}, {rng.choice(FOREIGN_CITIES)}"
            )
        else:
            city, state, zipc = rng.choice(CITIES)
            address = f"{rng.randint(100, 9999)} {rng.choice(STREETS)}, {city}, {state} {zipc}"
        if rng.random() < 0.1:
            # Suite on its own line: a quoted field with an embedded newline.
            address = address.replace(", ", f"\nSuite {rng.randint(100, 999)}, ", 1)
        roles = [rng.random() < 0.8, rng.random() < 0.2, rng.random() < 0.5]
        if not any(roles):
            roles[0] = True
        word = name.split()[0].lower()
        rows.append(
            {
                "Business Name": name,
                "FRN": f"{rng.randint(1, 39_999_999):010d}",
                "RMD Number": f"RMD{n:07d}",
                "Previous Business Names": (
                    f"{name.split()[0]} Holdings, Inc." if rng.random() < 0.1 else ""
                ),
                "Other DBA Names": (
                    f"{name.split()[0]} Voice; {name.split()[0]} VoIP, LLC"
                    if rng.random() < 0.15
                    else ""
                ),
                "Business Address": address,
                "Foreign Voice Service Provider": "Yes" if foreign else "No",
                "Implementation": rng.choice(IMPLEMENTATIONS),
                "Voice Service Provider Choice": "Yes" if roles[0] else "No",
                "Gateway Provider Choice": "Yes" if roles[1] else "No",
                "Intermediate Provider Choice": "Yes" if roles[2] else "No",
                "Contact Name": f"{rng.choice(FIRST)} {rng.choice(('Smith', 'Patel', 'Garcia'))}",
                "Contact Email": f"compliance@{word}{n}.example.com",
                "Contact Telephone Number": f"(202) 555-01{rng.randint(0, 99):02d}",
                "OCN": (
                    ""
                    if rng.random() < 0.2
                    else f"{rng.randint(0, 9)}{rng.choice('ABCDEFGHJK')}{rng.randint(10, 99)}"
                ),
                "Country": "India" if "India" in address else "Canada" if foreign else "USA",
                "Other FRNs": (
                    f"{rng.randint(1, 39_999_999):010d}; {rng.randint(1, 39_999_999):010d}"
                    if rng.random() < 0.05
                    else ""
                ),
                "Contact Title": "Compliance Officer",
                "Contact Department": "Legal",
                "Contact Business Address": address,
                "Contact Extension": "",
                "Last Updated": f"2025-0{rng.randint(1, 7)}-{rng.randint(1, 28):02d}",
                "Last Recertified": f"2025-0{rng.randint(1, 3)}-{rng.randint(1, 28):02d}",
                "Filing URL": URL + f"{rng.getrandbits(128):032x}",
            }
        )
    return rows


PZ_ILLUM: Row = {
    "Business Name": "PZ/Illum Telecommunication LLC",
    "FRN": "0030498513",
    "RMD Number": "RMD0009001",
    "Previous Business Names": "PZ Telecommunication LLC",
    "Other DBA Names": "Illum Telecommunication; PZ/Illum",
    "Business Address": "1950 W. Corporate Way\nAnaheim, CA 92801",
    "Foreign Voice Service Provider": "No",
    "Implementation": IMPLEMENTATIONS[2],
    "Voice Service Provider Choice": "Yes",
    "Gateway Provider Choice": "No",
    "Intermediate Provider Choice": "Yes",
    "Contact Name": "Prince Anand",
    "Contact Email": "compliance@pzillum.example.com",
    "Contact Telephone Number": "(714) 555-0100",
    "OCN": "",
    "Country": "USA",
    "Last Updated": "2025-06-30",
    "Last Recertified": "2025-03-01",
    "Filing URL": URL + "0" * 31 + "1",
}


def other_impl(current: str) -> str:
    return IMPLEMENTATIONS[(IMPLEMENTATIONS.index(current) + 1) % len(IMPLEMENTATIONS)]


def write(
    path: Path,
    columns: tuple[tuple[str, str], ...],
    rows: list[Row],
    *,
    bom: bool,
    eol: str,
    blank_every: int = 0,
    extra: str = "",
) -> None:
    """One header row of ``columns`` (file name, row key); ``blank_every``
    puts an empty line after every n-th record; ``extra`` adds an unknown
    column the importer must ignore."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=eol)
    writer.writerow([name for name, _ in columns] + ([extra] if extra else []))
    for i, row in enumerate(rows, start=1):
        writer.writerow([row.get(k, "") for _, k in columns] + (["x"] if extra else []))
        if blank_every and i % blank_every == 0:
            out.write(eol)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(("\ufeff" if bom else "") + out.getvalue())


def messy(rows: list[Row]) -> None:
    """Trailing spaces and mixed-case booleans, as hand-kept exports have."""
    for i, row in enumerate(rows):
        if i % 7 == 0:
            row["Business Name"] = row["Business Name"] + "  "
            row["FRN"] = " " + row["FRN"]
        if i % 5 == 0:
            for k in ("Foreign Voice Service Provider", "Voice Service Provider Choice"):
                row[k] = {"Yes": "YES", "No": "no"}[row[k]]
        if i % 11 == 0:
            row["Intermediate Provider Choice"] = {"Yes": "True", "No": "false"}[
                row["Intermediate Provider Choice"]
            ]


def main() -> None:
    rng = random.Random(SEED)
    base = make_filers(rng, 299, 1400)  # RMD0001401 .. RMD0001699
    base[-1]["Last Updated"] = "2025-08-01"  # the August export's as-of date
    august = [*base[:150], PZ_ILLUM, *base[150:]]  # 300 valid filers

    # Bad rows, each a copy of a valid-looking filer with one defect.
    bad_frn = {
        **base[10],
        "RMD Number": "RMD0008001",
        "FRN": "12345",
        "Business Name": "Bad FRN Telecom LLC",
    }
    bad_rmd = {**base[11], "RMD Number": "RMD-12A", "Business Name": "Bad RMD Voice Inc."}
    dup_rmd = {**base[12], "Business Name": "Duplicate Filing Networks LLC"}
    bad_impl = {
        **base[13],
        "RMD Number": "RMD0008002",
        "Business Name": "Unknown Impl Telephone Co.",
        "Implementation": "Partial STIR/SHAKEN (in progress)",
    }
    bad_date = {
        **base[14],
        "RMD Number": "RMD0008004",
        "Business Name": "Bad Date Voice LLC",
        "Last Updated": "2025-13-45",
    }
    august_rows = [*august[:40], bad_frn, *august[40:90], bad_rmd, *august[90:200], dup_rmd]
    august_rows += [*august[200:260], bad_impl, *august[260:280], bad_date, *august[280:]]
    august_rows = [dict(r) for r in august_rows]
    messy(august_rows)
    write(
        HERE / "rmd_2025_08_01.csv",
        EXPORT,
        august_rows,
        bom=True,
        eol="\r\n",
        blank_every=50,
        extra="internal_note",
    )

    # September: 15 gone (PZ/Illum and 14 others), 5 added, some changes.
    gone = {PZ_ILLUM["RMD Number"], *(base[i]["RMD Number"] for i in range(20, 300, 20))}
    september = [dict(r) for r in august if r["RMD Number"] not in gone]
    by_rmd = {r["RMD Number"]: r for r in september}
    for i in (1, 2, 3):
        by_rmd[base[i]["RMD Number"]]["Implementation"] = other_impl(base[i]["Implementation"])
    by_rmd[base[4]["RMD Number"]]["OCN"] = "7Z42"
    by_rmd[base[5]["RMD Number"]]["OCN"] = "" if base[5]["OCN"] else "3B17"
    by_rmd[base[6]["RMD Number"]]["Business Name"] = "Renamed Horizon Voice LLC"
    by_rmd[base[6]["RMD Number"]]["Previous Business Names"] = base[6]["Business Name"]
    added = make_filers(random.Random(SEED + 1), 5, 1800)  # RMD0001801 .. RMD0001805
    bad_ocn = {
        **base[7],
        "RMD Number": "RMD0008003",
        "Business Name": "Bad OCN Comms Inc.",
        "OCN": "AB1",
    }
    for i in (1, 2, 3, 4, 5, 6):
        by_rmd[base[i]["RMD Number"]]["Last Updated"] = f"2025-08-{10 + i:02d}"
    by_rmd[base[6]["RMD Number"]]["Last Updated"] = "2025-09-01"  # the export's as-of date
    september_rows = [*september[:100], *added[:2], bad_ocn, *september[100:], *added[2:]]
    write(HERE / "rmd_2025_09_01.csv", EXPORT, september_rows, bom=False, eol="\n")

    # The listing page's display labels: six filers of September.
    write(
        HERE / "rmd_listing_labels.csv",
        LABELS,
        [dict(r) for r in september[:5]] + [dict(PZ_ILLUM)],
        bom=False,
        eol="\r\n",
    )


if __name__ == "__main__":
    main()
