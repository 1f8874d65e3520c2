"""The Redis key schema the store reads and the writers write (docs/REDIS.md),
and the pure validation of what those keys hold.

Everything here is plain data and pure functions: the loader, the live feed,
the writer helpers and the CLI share one spelling of every key and one
reading of every member (`_number`, `valid_prefix`, `_valid_plain`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from rules.numbers import normalise
from rules.snapshot import RMD_STATUSES as SNAP_RMD_STATUSES
from rules.snapshot import NumberSet, PrefixSet

# ---------------------------------------------------------------------------
# Key schema (relative to the prefix; docs/DESIGN.md "Redis key schema")
# ---------------------------------------------------------------------------

K_BLOCK_CALLER = "block:caller"
K_ALLOW_CALLER = "allow:caller"
K_ALLOW_EXPIRY = "allow:caller:expiry"
K_BLOCK_PREFIX = "block:prefix"
K_BLOCK_PROVIDER = "block:provider"
K_DNO_CALLER = "dno:caller"
K_EMERGENCY_CALLER = "emergency:caller"  # 47 CFR 64.1200(k)(6): PSAPs, gov. emergency lines
K_NANPA_NPA = "nanpa:npa"
K_NANPA_NXX = "nanpa:nxx"
K_RMD_CURRENT = "rmd:current"
P_PROVIDER = "provider:"
P_NOTICE = "notice:"
P_ORDER = "order:"  # Final Determination Orders (47 CFR 64.1200(n)(3)), rules/orders.py
# Hashes one per id (`<prefix><id>`, no further ":"), re-read whole on an edit.
_HASH_PREFIXES = (P_PROVIDER, P_NOTICE, P_ORDER)
P_META = "meta:"
# The store's generation stamp (see proxy/store/__init__.py); a value an operator
# sets to accept what Redis now holds starts with CONFIRMED.
K_GENERATION = "meta:generation"
CONFIRMED = "confirmed-"
GENERATION_POLL = 1.0
# The edit journal (proxy/store/__init__.py): a stream of the member edits the
# writers make, so the keyspace path learns an edit in O(edit).
K_JOURNAL = "journal"
JOURNAL_MAXLEN = 100_000
# How long a set edit seen by keyspace notification waits for its journal
# entry (published right after it, same MULTI/EXEC) before the key is re-read.
JOURNAL_GRACE = 0.05
_JOURNAL_OPS = frozenset({"sadd", "srem", "zadd", "zrem"})

# Members edited in place, by SADD/SREM: relative key -> kind.
NUMBER_SETS = {
    K_BLOCK_CALLER: "block_caller",
    K_ALLOW_CALLER: "allow_caller",
    K_DNO_CALLER: "dno_caller",
    K_EMERGENCY_CALLER: "emergency_caller",
}
KEY_KINDS: dict[str, str] = {
    **{k: "numbers" for k in NUMBER_SETS},
    K_ALLOW_EXPIRY: "expiry",
    K_BLOCK_PREFIX: "prefix",
    K_BLOCK_PROVIDER: "provider_set",
    K_NANPA_NPA: "npa",
    K_NANPA_NXX: "nxx",
    K_RMD_CURRENT: "rmd_current",
}

# 47 CFR 64.6305(g): listed passes; removed (by an order), absent (from the
# export in force) and not_listed (never filed) fail; unknown is not judged.
RMD_STATUSES = frozenset(SNAP_RMD_STATUSES)
NOTICE_KINDS = frozenset({"k4", "n2"})  # 47 CFR 64.1200(k)(4), (n)(2)


class StoreError(ValueError):
    """A value given to a writer helper is invalid; the message names it."""


# ---------------------------------------------------------------------------
# Validation (pure)
# ---------------------------------------------------------------------------


def _number(raw: str) -> str | None:
    """E.164 (or short code) form of a stored member, None if malformed."""
    # Fast path: the canonical form every writer of ours stores.
    # NumberSet holds E.164 numbers only (no short codes, no leading 0).
    if raw[:1] == "+" and 2 <= len(raw) <= 16 and raw[1:].isdigit() and raw.isascii():
        return raw if raw[1] != "0" else None
    n = normalise(raw) if raw else None
    return n if n is not None and n[:1] == "+" and n[1:2] != "0" else None


def valid_prefix(raw: str) -> str | None:
    """A blocked E.164 prefix (`+1202555`), None if malformed."""
    s = raw.strip()
    body = s[1:]
    if s[:1] == "+" and 1 <= len(body) <= 15 and body.isdigit() and body.isascii():
        return s
    return None


def parse_date(raw: str) -> float | None:
    """Epoch seconds from an epoch number, an ISO date or an ISO datetime.

    A date alone is midnight UTC; a naive datetime is taken as UTC.
    """
    s = raw.strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        return v if v == v and 0 <= v < 4e10 else None
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


# Bytes that may appear in a batch of canonical members joined by b"\n".
_CANONICAL_BYTES = b"+0123456789\n"


def _canonical_joined(batch: list[bytes]) -> bytes | None:
    """`batch` joined by b"\n" when every member is b"+" then 1-15 ASCII digits,
    not starting with 0; None otherwise.

    The common case (every writer of ours stores that form) is checked on
    the batch joined by b"\n", with a handful of C-level calls instead of a
    Python call per member: only `+`, digits and the separators remain
    after deleting those bytes; the separator count proves no member holds
    a b"\n"; one b"+" per member, each right after a separator (or at the
    start), proves every member starts with b"+" and has no other; no
    b"+0", b"+\n" or trailing b"+" rules out a leading 0 and an empty
    body; the longest member is at most 16 bytes (15 digits, ITU-T E.164
    §6.1). A batch that fails is converted member by member.
    """
    if not batch:
        return b""
    j = b"\n".join(batch)
    seps = len(batch) - 1
    ok = (
        not j.translate(None, _CANONICAL_BYTES)
        and j.count(b"\n") == seps
        and j.count(b"+") == seps + 1
        and j.count(b"\n+") == seps
        and j[:1] == b"+"
        and j[-1:] != b"+"
        and b"+0" not in j
        and b"+\n" not in j
        and max(map(len, batch)) <= 16
    )
    return j if ok else None


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def _valid_plain(what: str, m: str) -> bool:
    if what == "npa":
        return len(m) == 3 and m.isdigit() and m[0] not in "01"
    if what == "nxx":
        return len(m) == 6 and m.isdigit() and m[0] not in "01" and m[3] not in "01"
    # provider id: a short printable token.
    return 0 < len(m) <= 64 and all(c.isalnum() or c in "_-." for c in m) and m.isascii()


def _empty_value(kind: str) -> Any:
    return {
        "numbers": NumberSet(),
        "prefix": PrefixSet(),
        "provider_set": set(),
        "npa": None,
        "nxx": None,
        "expiry": {},
        "rmd_current": "",
    }[kind]


def _numbers_or_raise(numbers: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in numbers:
        n = _number(raw.strip())
        if n is None:
            raise StoreError(f"number {raw!r}: not an E.164 phone number")
        out.append(n)
    if not out:
        raise StoreError("no number given")
    return out


def _iso(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
