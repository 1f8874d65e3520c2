"""The operator's do-not-originate list of inbound-only numbers.

How this works: 47 CFR 64.1200(o) requires blocking calls whose caller ID is
on a reasonable do-not-originate (DNO) list; 64.1200(o)(1)-(4) name invalid,
unallocated and unused numbers and numbers a subscriber asked not to appear
as caller ID because they only receive calls (government agency help lines
that imposters spoof). Invalid and unallocated numbers are judged by
``rules.numbers`` and ``rules.nanpa``; the inbound-only numbers come from a
plain text list the operator keeps, whose text ``parse_dno_list`` reads
(proxy/commands/dno.py reads the file):

    # comment line
    +1 800 829 1040   IRS individual help line
    18007721213, SSA national number
    tel:+1-800-633-4227 ; Medicare  # trailing comment

One number per line; a comment may follow ``#``, a comma, a semicolon or
whitespace once the number's characters end. Each number is normalised to
E.164 with ``rules.numbers.normalise``; a short code, a non-E.164 form or a
``+1`` number that breaks the NANP structure is an error naming the line.
A number listed twice keeps its first comment.
"""

from __future__ import annotations

import re

from rules.errors import RowError
from rules.numbers import nanp_invalid_reason, normalise

__all__ = ["RowError", "parse_dno_list", "to_e164"]

# A number as people write it: digits, +, RFC 3966 visual separators, spaces.
_NUMBER_CHARS_RE = re.compile(r"[+(\d][\d\s().\-]*")
# A URI keeps its ;parameters (RFC 3966 §3): "tel:+1-800-633-4227;npdi".
_URI_RE = re.compile(r"(?:tel|sips?):[^\s,#]+", re.I)


def to_e164(raw: str) -> tuple[str | None, str]:
    """(E.164, "") for a dialable number, else (None, reason)."""
    e164 = normalise(raw)
    if e164 is None:
        return None, "not a telephone number"
    if not e164.startswith("+"):
        return None, "a short code cannot be a caller ID"
    reason = nanp_invalid_reason(e164)
    if reason is not None:
        return None, reason
    return e164, ""


def _split(line: str) -> tuple[str, str]:
    """(number text, comment) of one non-blank line with ``#`` comments removed."""
    m = _URI_RE.match(line) or _NUMBER_CHARS_RE.match(line)
    if m is None:
        # Not a number at all: the whole first token is reported.
        token = re.split(r"[\s,;]", line, maxsplit=1)[0]
        return token, ""
    number = m.group(0).rstrip()
    comment = line[m.end() :].strip().lstrip(",;").strip()
    return number, comment


def parse_dno_list(text: str) -> tuple[list[tuple[str, str]], list[RowError]]:
    """Parse an inbound-only DNO list: [(e164, comment)] in file order, errors."""
    entries: list[tuple[str, str]] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for line_no, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        body, _, hash_comment = raw.partition("#")
        body = body.strip()
        if not body:
            continue  # blank or comment-only line
        number, comment = _split(body)
        if hash_comment.strip():
            comment = f"{comment} {hash_comment.strip()}".strip()
        e164, reason = to_e164(number)
        if e164 is None:
            errors.append(RowError(line_no, "number", f"{reason}: {number!r}"))
            continue
        if e164 in seen:
            continue
        seen.add(e164)
        entries.append((e164, comment))
    return entries, errors
