"""Telephone numbers as carriers send them, turned into E.164.

How this works: :func:`normalise` takes the user part of a SIP URI, a whole
``sip:``/``sips:``/``tel:`` URI or a bare number. It drops the scheme, the
host (``@...``) and the URI parameters (``;npdi``, ``;rn=``, ``;isub=``,
``;phone-context=``, ``;user=phone``; RFC 3966 §5.1, RFC 4694), undoes
``%HH`` escapes (RFC 3261 §19.1.4: ``sip:+1%32025550123@h`` is the same URI
as ``sip:+12025550123@h``; a malformed escape makes it not a number; an
escaped NUL ends it, as it ends a C string), deletes
the RFC 3966 visual separators ``- . ( )`` and spaces with one
``str.translate``, and then classifies the digits:

* ``+`` and 7-15 digits, the first not 0: already E.164 (ITU-T E.164 §6: at
  most 15 digits; country codes start 1-9), kept as-is, NANP or not
  (``+442071234567``);
* 10 digits: a NANP national number, ``+1`` is prepended;
* 11 digits starting with ``1``: NANP with the trunk prefix, ``+`` prepended;
* ``011`` then digits: the NANP international access prefix, replaced by ``+``;
* 3-6 digits: a short code (``911``, ``933``, ``988``, ``112``), returned as
  its digits without ``+``;
* anything else (letters, no digits, 7-digit local numbers): None.

The already-clean forms (``+12025550123``, ``12025550123``) take a fast path
of two ``str`` method calls and no translation; only a value holding ``%``
pays for the unescaping.

:func:`sos_urn` recognises the RFC 5031 emergency service URNs
(``urn:service:sos``, ``urn:service:sos.police`` ...) a Request-URI may carry
instead of a number (RFC 6881 §6.2.1), and returns them lower-cased.

:func:`nanp_invalid_reason` applies the structural rules of the NANP
numbering plan (NPA and NXX are ``[2-9]XX``; N11 codes are service codes;
reserved area-code blocks; the 555-01XX fiction range) to a ``+1`` number.
These are written as explicit rules on purpose: a general phone-number
library's metadata lags live area codes, and calls must never be blocked on
stale metadata (see shared/DOMAIN.md). Which codes are actually *assigned*
comes from NANPA data (``rules/nanpa.py``), not from here.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TypeGuard

__all__ = [
    "EMERGENCY_DEFAULT",
    "dialled_service_code",
    "global_number",
    "in_context",
    "nanp_invalid_reason",
    "normalise",
    "numbers_written",
    "overlong_nanp",
    "sos_urn",
    "user_readings",
]

# 47 CFR 64.1200(k): calls to emergency numbers are never blocked. 911 and
# 933 (the 911 test number, 47 CFR 9.11 / 9.16 dispatchable-location test).
EMERGENCY_DEFAULT: frozenset[str] = frozenset({"911", "933"})

# RFC 3966 §5.1.1 visual-separator = "-" / "." / "(" / ")"; plus spaces that
# carriers and humans add around area codes.
_DROP_SEPARATORS = str.maketrans("", "", "-.() \t")

_MAX_E164_DIGITS = 15  # ITU-T E.164 §6.1
# The shortest international numbers in service have 7 digits (e.g. Niue
# +683 XXXX, Tokelau +690 XXXX); "+1" or "+44" alone is not a number.
_MIN_E164_DIGITS = 7


def _user_part(raw: str) -> str:
    """Drop a sip:/sips:/tel: scheme and the host part (RFC 3261 §19.1.1: the user
    part ends at '@'); the telephone-subscriber's parameters stay."""
    head = raw[:5].lower()
    if head.startswith("sip:") or head.startswith("tel:"):
        raw = raw[4:]
    elif head == "sips:":
        raw = raw[5:]
    at = raw.find("@")
    if at >= 0:
        raw = raw[:at]
    return raw


def _strip_uri(raw: str) -> str:
    """Drop a sip:/sips:/tel: scheme, the host part and URI parameters."""
    raw = _user_part(raw)
    # RFC 3966 §3: parameters at ';'.
    semi = raw.find(";")
    if semi >= 0:
        raw = raw[:semi]
    return raw


_HEX = frozenset("0123456789abcdefABCDEF")


def _unescape(s: str) -> str | None:
    """``s`` with its ``%HH`` escapes decoded (RFC 3261 §19.1.4); None if one is malformed.

    An escaped NUL (``%00``) ends the text: a softswitch written in C decodes
    the user part into a C string, which ends there, so
    ``+12127369999%00x`` is +12127369999 to it and must be to the screen."""
    parts = s.split("%")
    out = [parts[0]]
    hexd = _HEX
    for p in parts[1:]:
        if len(p) < 2 or p[0] not in hexd or p[1] not in hexd:
            return None  # "%", "%4", "%zz": not an escape, so not a number
        c = chr(int(p[:2], 16))
        if c == "\0":
            break
        out.append(c)
        out.append(p[2:])
    return "".join(out)


def _bare(raw: str) -> str | None:
    """``raw`` without scheme, host and URI parameters, its ``%HH`` escapes undone
    (RFC 3261 §19.1.4: escaped and unescaped characters compare equal) and its
    visual separators dropped; None for a malformed escape."""
    s = _strip_uri(raw.strip())
    if "%" in s:
        u = _unescape(s)
        if u is None:
            return None
        s = u
    return s.translate(_DROP_SEPARATORS)


def normalise(raw: str) -> str | None:
    """Return the E.164 form of ``raw`` (or the digits of a short code), or None."""
    # Fast path: the forms a clean trunk sends.
    if raw[:1] == "+":
        body = raw[1:]
        if body.isdigit() and body.isascii() and _MIN_E164_DIGITS <= len(body) <= _MAX_E164_DIGITS:
            return raw if body[0] != "0" else None
    elif raw.isdigit() and raw.isascii():
        return _classify_digits(raw)

    s = _bare(raw)
    if s is None:
        return None
    if s[:1] == "+":
        body = s[1:]
        if body.isdigit() and body.isascii() and _MIN_E164_DIGITS <= len(body) <= _MAX_E164_DIGITS:
            return s if body[0] != "0" else None  # E.164 country codes start 1-9
        return None
    if s.isdigit() and s.isascii():
        return _classify_digits(s)
    return None


# A number as written among other text: an optional "+", then at least seven
# digits (_MIN_E164_DIGITS) with the visual separators and spaces between them
# (_DROP_SEPARATORS), from a digit to a digit. Each digit is one group, so the
# match is linear and a run of fewer digits costs no normalise.
_WRITTEN = re.compile(r"\+?[0-9](?:[\-.() \t]*[0-9]){6,}")
_NOT_DIGIT = re.compile(r"[^0-9]+")
# numbers_written reads at most this many numbers in one text: a phone shows
# the start of a display name, and a text of thousands of numbers would stall
# a worker
_MAX_WRITTEN = 16


class _FoldTable(dict[int, str | None]):
    """``str.translate`` table of ``_fold``, filled per code point on first use."""

    def __missing__(self, cp: int) -> str | None:
        c = chr(cp)
        d = unicodedata.decimal(c, None)
        if d is not None:
            got: str | None = "0123456789"[d]
        else:
            cat = unicodedata.category(c)
            got = "-" if cat == "Pd" else " " if cat == "Zs" else None if cat == "Cf" else c
        if len(self) < 65536:  # bounded: a text of every code point cannot grow it on
            self[cp] = got
        return got


_FOLD = _FoldTable()


def _fold(s: str) -> str:
    """``s`` with the characters a screen shows as digits, separators or nothing
    made ASCII: NFKC (fullwidth ``１``, mathematical ``𝟏``, ``＋``, no-break
    spaces), then any other script's decimal digits (Arabic-Indic ``١``...)
    as ASCII digits, dashes (Unicode Pd: ``‐ – —``) as ``-``, other spaces as
    a space and format characters (Cf: zero-width spaces and joiners,
    direction marks) dropped: one ``str.translate``. ASCII text is returned
    as it is."""
    if s.isascii():
        return s
    return unicodedata.normalize("NFKC", s).translate(_FOLD)


def numbers_written(text: str) -> tuple[str, ...]:
    """The E.164 numbers written in ``text``, each once, in order: every run of
    digits (an optional ``+`` first, visual separators and spaces between)
    that ``normalise`` makes a ``+`` number, after ``_fold`` (fullwidth and
    other-script digits, dashes, invisible characters), ``+1`` ones with ten
    digits (``_global``). What a phone shows as
    a number in a display name (``"Call +1 (212) 736-9999"``), or a reader
    that ends a caller ID at the first character a number cannot hold finds
    (``+12127369999x``). Short codes and 7-digit local numbers are no E.164
    number: not given."""
    found: list[str] = []
    for k, m in enumerate(_WRITTEN.finditer(_fold(text))):
        if k == _MAX_WRITTEN:
            break
        num = normalise(m.group())
        if _global(num) and num not in found:
            found.append(num)
    return tuple(found)


def global_number(raw: str) -> str | None:
    """``normalise(raw)`` when it is an E.164 number a list may hold (``_global``), else None."""
    num = normalise(raw)
    return num if _global(num) else None


def dialled_service_code(raw: str) -> str | None:
    """The three-digit code (an N11 service code such as 911, 933, 988) that
    ``raw`` dials with the NANP prefix, ``1-911`` or ``+1911`` (a device that
    writes every dialled number in E.164 form), else None. Switches route
    1+N11 as N11, so a callee so written is 911 to the emergency rule (47 CFR
    64.1200(k)(5)), and a configured short emergency number is matched the
    same way; ``normalise`` reads no number (``+1911``) or a four-digit code
    (``1911``) there."""
    s = _bare(raw)
    if s is None:
        return None
    code = s[2:] if s[:2] == "+1" else s[1:] if s[:1] == "1" else ""
    if len(code) == 3 and code.isdigit() and code.isascii() and code[0] not in "01":
        return code  # N11, 933, 988...: a three-digit code starts with 2-9
    return None


def overlong_nanp(raw: str) -> str | None:
    """``+1`` and the digits of ``raw`` (what ``normalise`` takes) when they are
    more than E.164 allows (``+1`` and 15 or more digits after it, visual
    separators dropped), else None. ``normalise`` reads no number there;
    a caller ID so written purports to be a NANP number and is an invalid one
    (``nanp_invalid_reason``: wrong length), as a shorter overlong one is."""
    s = _bare(raw)
    if s is None:
        return None
    body = s[2:]
    if s[:2] != "+1" or len(body) < _MAX_E164_DIGITS or not (body.isdigit() and body.isascii()):
        return None
    return s


def _global(num: str | None) -> TypeGuard[str]:
    """An E.164 number a list may hold: ``+`` and digits, ``+1`` and ten of them
    (NANP; ``+121273699991`` is no number a softswitch shows)."""
    return num is not None and num[:1] == "+" and (num[:2] != "+1" or len(num) == 12)


def user_readings(raw: str) -> tuple[str, ...]:
    """The E.164 numbers other readers find in the user part of ``raw`` (a whole
    sip:/sips:/tel: URI or a user part), which ``normalise`` may not: the
    caller-ID screen must check them too (the number lists, step 5b).

    The user part is read as a reader that decodes ``%HH`` escapes first sees
    it (an escaped NUL ends it, ``_unescape``; UTF-8 escapes give their
    characters, ``_fold`` their digits), and gives:

    * the numbers written in it before its first real parameter (``;``), each
      ending at a character a number cannot hold (``numbers_written``): RFC
      3261 §19.1.2 makes an escaped delimiter data, so ``sip:+12127369999%40evil@h``
      has the user ``+12127369999@evil`` and no caller ID, but a softswitch
      that parses the decoded user part again reads +12127369999; as does a
      gateway that ends an ISUP calling number at the first non-digit in
      ``+12127369999x``;
    * all its digits, parameters of a sip: user included, with the ``+`` it
      starts with (a softswitch that filters the caller ID to its digits,
      Asterisk's ``FILTER(0-9,...)``: ``sip:+1212x736y9999@h`` and
      ``sip:+1212;a=736;b=9999@h`` are +12127369999 to it); not for a user
      part with a ``phone-context`` (a local number: ``in_context``), and not
      a tel: URI's parameters (RFC 3966 §5.1: they are not its number).

    The caller ID's own reading may be among them; the caller excludes it."""
    user = _user_part(raw.strip())
    head = raw.lstrip()[:4].lower()
    semi = user.find(";")
    number = user if semi < 0 else user[:semi]
    whole = number if head == "tel:" or "phone-context" in user.lower() else user
    found = list(numbers_written(_decoded(number)))
    digits_from = _decoded(whole).lstrip()
    if digits_from:
        d = _NOT_DIGIT.sub("", _fold(digits_from))
        num = normalise(("+" + d) if digits_from[0] == "+" and d else d) if d else None
        if _global(num) and num not in found:
            found.append(num)
    return tuple(found)


def _decoded(user: str) -> str:
    """``user`` with its ``%HH`` escapes undone (``_unescape``; a malformed one
    stays as written) and, when the octets are UTF-8, read as UTF-8."""
    if "%" not in user:
        return user
    u = _unescape(user)
    if u is None:
        return user
    try:
        return u.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return u


def in_context(raw: str) -> tuple[str, ...]:
    """The global numbers a local number names through its ``phone-context``.

    RFC 3966 §5.1.5: a local number carries a ``phone-context`` parameter, and
    a context that is a global number prefix (``+`` and digits, with visual
    separators) names the numbering plan it belongs to; networks that resolve
    it (3GPP TS 24.229 §5.1.2A.1.5, geo-local numbers) read
    ``tel:736-9999;phone-context=+1-212`` as +12127369999, the context's
    digits followed by the local number's. ``raw`` is what ``normalise``
    takes (a whole ``sip:``/``sips:``/``tel:`` URI or a user part); the
    result holds one E.164 number per such context (a second context is
    the sender's ambiguity, so each reading counts), each with 7-15 digits,
    the first not 0, and 11 digits under country code 1; a domain context
    (``phone-context=example.com``) names no global number. ``normalise``
    itself ignores the parameter: the caller ID stays what it was, and the
    screen checks these numbers as the call's other identities.
    """
    local, *params = _user_part(raw.strip()).split(";")
    out: list[str] = []
    for param in params:
        name, _, ctx = param.partition("=")
        if name.strip().lower() != "phone-context":
            continue
        digits = _global_digits(ctx, local)
        if digits is not None and "+" + digits not in out:
            out.append("+" + digits)
    return tuple(out)


def _global_digits(ctx: str, local: str) -> str | None:
    """The digits of context ``ctx`` then of local number ``local``, when they make
    an E.164 number (``in_context``), else None."""
    if "%" in ctx or "%" in local:
        u, v = _unescape(ctx), _unescape(local)
        if u is None or v is None:
            return None
        ctx, local = u, v
    ctx = ctx.strip().translate(_DROP_SEPARATORS)
    local = local.strip().translate(_DROP_SEPARATORS)
    if ctx[:1] != "+" or not local.isdigit() or not local.isascii():
        return None
    prefix = ctx[1:]
    if not prefix.isdigit() or not prefix.isascii():
        return None
    digits = prefix + local
    if digits[0] == "0" or not _MIN_E164_DIGITS <= len(digits) <= _MAX_E164_DIGITS:
        return None
    if digits[0] == "1" and len(digits) != 11:
        return None  # NANP: +1 and ten digits
    return digits


# RFC 5031 §4.2: service = top-level *("." sub-service), each a let-dig-hyp
# label that starts and ends with a letter or digit.
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_SOS = "urn:service:sos"


def sos_urn(raw: str) -> str | None:
    """``urn:service:sos`` or ``urn:service:sos.<sub>`` lower-cased (RFC 5031 §4.2, §5), else None.

    The URN is case-insensitive (RFC 5031 §4.1, RFC 8141 §3.1), so
    ``URN:Service:SOS.Police`` gives ``urn:service:sos.police``; a malformed
    sub-service (``urn:service:sos.``, ``urn:service:sos..x``,
    ``urn:service:sosx``) gives None.
    """
    low = raw.strip().lower()
    if low[:15] != _SOS:
        return None
    if len(low) == 15:
        return low
    if low[15] != ".":
        return None
    for label in low[16:].split("."):
        if not label or label[0] == "-" or label[-1] == "-" or not _LABEL.issuperset(label):
            return None
    return low


def _classify_digits(d: str) -> str | None:
    n = len(d)
    if n == 10:
        return "+1" + d  # NANP national significant number
    if n == 11 and d[0] == "1":
        return "+" + d  # NANP trunk prefix 1
    if 3 <= n <= 6:
        return d  # short code: 911, 933, 988, 112, carrier codes
    if d.startswith("011") and 3 + _MIN_E164_DIGITS <= n <= 3 + _MAX_E164_DIGITS:
        return "+" + d[3:]  # NANP international access prefix
    return None


def _npa_reasons() -> dict[str, str]:
    """Structurally impossible or reserved area codes → reason."""
    out: dict[str, str] = {}
    for code in range(1000):
        npa = f"{code:03d}"
        # NANP numbering plan: NPA is [2-9][0-9][0-9] (ATIS-0300055 NPA
        # Allocation Plan and Assignment Guidelines).
        if npa[0] in "01":
            out[npa] = "area code starts with 0 or 1"
        # N11 codes are service codes (211, 311, ... 911), never area codes.
        elif npa[1:] == "11":
            out[npa] = "N11 area code"
        # ATIS-0300055: N9X codes are reserved for NANP expansion; 37X and 96X
        # are reserved blocks for unanticipated purposes. None is assigned.
        elif npa[1] == "9":
            out[npa] = "reserved area code (N9X, held for NANP expansion)"
        elif npa[:2] in ("37", "96"):
            out[npa] = "reserved area code (37X/96X block)"
    return out


def _nxx_reasons() -> dict[str, str]:
    """Structurally impossible central office codes → reason."""
    out: dict[str, str] = {}
    for code in range(1000):
        nxx = f"{code:03d}"
        # NANP numbering plan: the central office code NXX is [2-9][0-9][0-9]
        # (ATIS-0300051 Central Office Code Assignment Guidelines).
        if nxx[0] in "01":
            out[nxx] = "exchange starts with 0 or 1"
        # N11 codes are service codes, not assignable as central office codes.
        elif nxx[1:] == "11":
            out[nxx] = "N11 exchange"
    return out


_BAD_NPA = _npa_reasons()
_BAD_NXX = _nxx_reasons()


def nanp_invalid_reason(e164: str) -> str | None:
    """The structural NANP rule a ``+1`` number breaks, or None.

    Numbers outside country code 1 (and short codes) are not judged: None.
    The rules are tables built at import, so a check is three slices and
    two dict lookups.
    """
    if e164[:2] != "+1":
        return None
    d = e164[2:]
    if len(d) != 10 or not (d.isdigit() and d.isascii()):
        return "wrong length for NANP"
    why = _BAD_NPA.get(d[:3]) or _BAD_NXX.get(d[3:6])
    if why is not None:
        return why
    # NANPA: 555-0100 through 555-0199 are reserved for fictitious use.
    if d[3:8] == "55501":
        return "555-01XX fiction range"
    return None
