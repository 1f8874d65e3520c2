"""Everything a decision reads, held in memory.

How this works: ``proxy/store/`` loads the Redis keys (docs/DESIGN.md, key
schema) into a :class:`Snapshot` built aside and swaps it in with one
reference assignment; a single live edit is applied in place with
:meth:`Snapshot.apply` (or the ``set_*``/``remove_*`` methods) between two
INVITEs. Nothing here does I/O or reads the clock.

Number sets (:class:`NumberSet`) must hold ~10 M callers cheaply, so large
ones keep E.164 numbers as 64-bit ints (``+12025550123`` → ``12025550123``)
in an open-addressing hash table inside one ``array('q')`` (0 = empty slot;
E.164 never starts with 0; load factor 0.5, linear probing, multiplicative
hash so a carrier's consecutive block does not form one long run), plus two
small Python sets of edits since the last build (``added``/``removed``).
:meth:`NumberSet.compact` rebuilds the table with the edits merged; the
store calls it off the hot path when :attr:`NumberSet.pending` grows. Sets
of up to ``NumberSet.SET_MAX`` (262,144) entries stay a plain ``set`` of
ints, which is faster and small in absolute terms.

Measured on the 2-core build machine (Python 3.11.7, 1 M entries, random
numbers, loop overhead excluded; the machine was shared with other jobs, so
absolute numbers moved by 2-3x between runs, ratios less):

=====================================  ===========  ===========  ==========
layout                                  lookup (a)   lookup (b)   bytes/entry
=====================================  ===========  ===========  ==========
sorted ``array('q')`` + ``bisect``      3.4 µs       -            8
``set`` of E.164 ``str``                0.56 µs      -            ~97
``set`` of ``int``                      1.05 µs      0.63 µs      ~66
``array('q')`` hash, load 0.625         0.83 µs      -            12.8
``array('q')`` hash, load 0.5 (kept)    -            1.66 µs      16
=====================================  ===========  ===========  ==========

(a) a quiet run, half hits and half misses; (b) a busy run, misses only.
``bisect`` on an ``array`` boxes an int at each of its ~20 probes, so the
sorted array the first design named was 4x slower than the hash table; the
table is 2-2.5x slower than a C ``set`` but 4x smaller (1 M: 15.3 MiB
against ~63 MiB; 10 M: ~153 MiB against ~630 MiB).

Prefix sets (:class:`PrefixSet`) are a ``set`` of prefix strings plus the
sorted tuple of the distinct prefix lengths present, longest first, so a
longest-prefix match costs one slice and one set lookup per length present.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rules.numbers import EMERGENCY_DEFAULT, normalise

if TYPE_CHECKING:
    from rules.shaken import AttestationPolicy

__all__ = [
    "NOTICE_KINDS",
    "NUMBER_KINDS",
    "ORDER_KINDS",
    "RMD_BLOCKING",
    "RMD_STATUSES",
    "UNMAPPED_POLICIES",
    "SET_KINDS",
    "NumberSet",
    "Notice",
    "Order",
    "PrefixSet",
    "Provider",
    "Snapshot",
    "parse_campaigns",
]

# 47 CFR 64.6305(g): "listed" passes the RMD gate; "removed" (an FCC
# removal order is recorded), "absent" (missing from the export in force,
# listed in an earlier one) and "not_listed" (never listed) fail it;
# "unknown" (no RMD identity or no snapshot) is not judged. See rules/rmd.py.
RMD_STATUSES = ("listed", "removed", "absent", "not_listed", "unknown")
RMD_BLOCKING = frozenset({"removed", "absent", "not_listed"})
NOTICE_KINDS = ("k4", "n2")
ORDER_KINDS = ("fdo",)
# What the engine does with a call whose provider cannot be judged against
# the RMD (no trunk entry, no provider record, rmd_status "unknown").
UNMAPPED_POLICIES = ("block", "monitor")

# Multiplier for the table hash: consecutive numbers (a carrier's block of
# 10,000) land far apart, so a miss next to a dense run stays short.
_HASH_MULT = 0x9E3779B97F4A7C15
_LOAD = 2.0  # table slots per entry (load factor 0.5)
_MAX_E164 = 999_999_999_999_999  # 15 digits, ITU-T E.164 §6.1


def _e164_int(e164: str | int) -> int:
    """``"+12025550123"`` → ``12025550123``; ValueError for anything else."""
    if isinstance(e164, int):
        n = e164
    else:
        body = e164[1:]
        if e164[:1] != "+" or not (body.isdigit() and body.isascii()) or body[0] == "0":
            raise ValueError(f"not an E.164 number: {e164!r}")
        n = int(body)
    if not 0 < n <= _MAX_E164:
        raise ValueError(f"not an E.164 number: {e164!r}")
    return n


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def _table_size(entries: int) -> int:
    cap = max(int(entries * _LOAD) + 1, 7)
    while not _is_prime(cap):
        cap += 1
    return cap


class NumberSet:
    """A set of E.164 numbers for millions of entries (see module docstring).

    Members are E.164 strings (``"+12025550123"``) or their int values;
    anything else raises ValueError on ``add``/``from_iterable`` and is simply
    not a member for ``in``. Up to :attr:`SET_MAX` entries everything lives in
    the ``added`` Python set (C-speed lookups, small absolute memory); above
    it, a build puts the entries in the ``array('q')`` hash table.
    """

    __slots__ = ("_table", "_cap", "_base_len", "_added", "_removed", "spellings")

    # Largest size kept as a plain set of ints (~66 bytes an entry, ~17 MiB).
    SET_MAX = 262_144

    def __init__(self) -> None:
        # Hash table: slots [0, _cap) are home slots; linear probing may run
        # past _cap into an overflow tail, and the array always ends with an
        # empty slot, so a probe never wraps and always terminates.
        self._table: array[int] = array("q")
        self._cap = 0
        self._base_len = 0
        # Invariants: _added is disjoint from the table; _removed ⊆ table.
        self._added: set[int] = set()
        self._removed: set[int] = set()
        # The Redis members of a number spelt otherwise than its E.164 form
        # (``+1 212-736-9999``), with the E.164 form itself when that is a member
        # too: number -> spellings. A number with none is one canonical member.
        # See ``add_member``.
        self.spellings: dict[int, set[str]] = {}

    def add_member(self, member: str, n: int) -> None:
        """Redis SADD of ``member``, a spelling of the number ``n``.

        A set holds a number as long as any spelling of it is a member of the
        Redis set, as a full load reads it: removing one spelling (SREM of
        ``+12127369999``) leaves the number in while another (``+1 212 736
        9999``) is still there, and removing a spelling that is no member
        changes nothing."""
        sp = self.spellings.get(n)
        if sp is not None:
            sp.add(member)
        elif member != f"+{n}":
            # the canonical member is there iff the number is (no spelling known)
            self.spellings[n] = {member, f"+{n}"} if n in self else {member}
        self.add(n)

    def remove_member(self, member: str, n: int) -> None:
        """Redis SREM of ``member``, a spelling of the number ``n`` (``add_member``)."""
        sp = self.spellings.get(n)
        if sp is None:
            if member == f"+{n}":
                self.discard(n)
            return
        sp.discard(member)
        if not sp:
            del self.spellings[n]
            self.discard(n)

    @classmethod
    def from_iterable(cls, numbers: Iterable[str | int]) -> NumberSet:
        """Build a set from E.164 strings; ValueError on a non-E.164 entry."""
        return cls.from_ints(array("q", map(_e164_int, numbers)))

    @classmethod
    def from_ints(cls, values: array[int]) -> NumberSet:
        """Build a set from E.164 numbers as ints (``12025550123``).

        Duplicates are allowed (SSCAN may return a member twice) and are
        skipped while probing, so a 10 M-entry load needs no temporary
        Python set of every member (~80 bytes an entry). The caller has
        validated the values (see :func:`_e164_int`).
        """
        out = cls()
        if len(values) <= cls.SET_MAX:
            out._added = set(values)
            return out
        cap = _table_size(len(values))
        table: array[int] = array("q", bytes(8 * (cap + 1)))
        size = len(table)
        mult = _HASH_MULT
        count = 0
        for n in values:
            h = (n * mult) % cap
            v = table[h]
            while v:
                if v == n:
                    break  # duplicate
                h += 1
                if h == size:
                    table.append(0)
                    size += 1
                v = table[h]
            else:
                table[h] = n
                count += 1
        if count <= cls.SET_MAX:  # mostly duplicates: the set form
            out._added = {n for n in table if n}
            return out
        if table[-1]:
            table.append(0)  # a probe always ends on an empty slot
        out._table, out._cap, out._base_len = table, cap, count
        return out

    def _in_table(self, n: int) -> bool:
        cap = self._cap
        if not cap:
            return False
        table = self._table
        h = (n * _HASH_MULT) % cap
        v = table[h]
        while v:
            if v == n:
                return True
            h += 1
            v = table[h]
        return False

    def __contains__(self, e164: object) -> bool:
        # Hot path: the engine passes the caller as an int parsed once
        # (rules.engine); strings are parsed here. No exception on common forms.
        if type(e164) is int:
            n = e164
        elif type(e164) is str:
            body = e164[1:]
            if e164[:1] != "+" or not body.isdigit() or body[0] == "0":
                return False
            try:
                n = int(body)
            except ValueError:  # non-ASCII digits that int() refuses
                return False
        else:
            return False
        cap = self._cap
        if cap:
            table = self._table
            h = (n * _HASH_MULT) % cap
            v = table[h]
            while v:
                if v == n:
                    removed = self._removed
                    return not (removed and n in removed)
                h += 1
                v = table[h]
        added = self._added
        return bool(added) and n in added

    def add(self, e164: str | int) -> None:
        n = _e164_int(e164)
        if self._in_table(n):
            self._removed.discard(n)
        else:
            self._added.add(n)

    def discard(self, e164: str | int) -> None:
        try:
            n = _e164_int(e164)
        except ValueError:
            return
        if n in self._added:
            self._added.discard(n)
        elif self._in_table(n):
            self._removed.add(n)

    def __len__(self) -> int:
        return self._base_len - len(self._removed) + len(self._added)

    def _ints(self) -> Iterator[int]:
        removed = self._removed
        for n in self._table:
            if n and n not in removed:
                yield n
        yield from self._added

    def __iter__(self) -> Iterator[str]:
        for n in self._ints():
            yield f"+{n}"

    @property
    def pending(self) -> int:
        """Edits held outside the table since the last build (0 in set mode)."""
        if not self._cap:
            return 0
        return len(self._added) + len(self._removed)

    def compact(self) -> None:
        """Merge the edits into a new table (O(n); never on the hot path)."""
        built = NumberSet.from_ints(array("q", self._ints()))
        self._table, self._cap, self._base_len = built._table, built._cap, built._base_len
        self._added, self._removed = built._added, built._removed

    def nbytes(self) -> int:
        """Approximate memory held: the table plus the Python sets."""
        return self._table.itemsize * len(self._table) + 66 * (
            len(self._added) + len(self._removed)
        )

    def __repr__(self) -> str:
        return f"NumberSet(len={len(self)}, pending={self.pending})"


class PrefixSet:
    """E.164 prefixes (``"+1202555"``) with longest-prefix match."""

    __slots__ = ("_prefixes", "_by_len", "lengths")

    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        self._prefixes: set[str] = set()
        self._by_len: dict[int, int] = {}
        self.lengths: tuple[int, ...] = ()  # distinct lengths, longest first
        for p in prefixes:
            self.add(p)

    def _relength(self) -> None:
        self.lengths = tuple(sorted(self._by_len, reverse=True))

    def add(self, prefix: str) -> None:
        if not prefix:
            raise ValueError("empty prefix")
        if prefix in self._prefixes:
            return
        self._prefixes.add(prefix)
        n = len(prefix)
        count = self._by_len.get(n, 0)
        self._by_len[n] = count + 1
        if not count:
            self._relength()

    def discard(self, prefix: str) -> None:
        if prefix not in self._prefixes:
            return
        self._prefixes.discard(prefix)
        n = len(prefix)
        count = self._by_len[n] - 1
        if count:
            self._by_len[n] = count
        else:
            del self._by_len[n]
            self._relength()

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._prefixes

    def __len__(self) -> int:
        return len(self._prefixes)

    def __iter__(self) -> Iterator[str]:
        return iter(self._prefixes)

    def longest_match(self, e164: str) -> str | None:
        """The longest prefix of ``e164`` in the set, or None."""
        prefixes = self._prefixes
        size = len(e164)
        for n in self.lengths:
            if n <= size:
                p = e164[:n]
                if p in prefixes:
                    return p
        return None

    def __repr__(self) -> str:
        return f"PrefixSet(len={len(self)}, lengths={self.lengths})"


@dataclass(slots=True)
class Provider:
    """An upstream provider (Redis ``provider:<id>`` hash)."""

    id: str
    name: str = ""
    rmd_status: str = "unknown"  # one of RMD_STATUSES
    frn: str = ""
    rmd_number: str = ""
    ocn: str = ""
    monitor_only: bool = False
    rmd_order: str = ""  # the removal order when rmd_status is "removed"
    rmd_since: str = ""  # ISO date the RMD status began (as-of or order date)
    # STIR/SHAKEN: more OCNs the provider signs with (operator, comma list),
    # the OCN and the STIR/SHAKEN implementation claim of its RMD filing.
    ocns: str = ""
    rmd_ocn: str = ""
    implementation: str = ""

    def signing_ocns(self) -> set[str]:
        """Every OCN this provider signs with: ``ocn``, ``rmd_ocn``, ``ocns``."""
        out = {o.strip().upper() for o in self.ocns.split(",")}
        out.add(self.ocn.strip().upper())
        out.add(self.rmd_ocn.strip().upper())
        out.discard("")
        return out


@dataclass(slots=True)
class Notice:
    """An FCC notice naming a provider (Redis ``notice:<id>`` hash).

    ``kind`` is ``"k4"`` (bad-actor notice, 47 CFR 64.1200(k)(4): 48 h to
    mitigate, 14 days to report; rules/k4.py) or ``"n2"`` (notify-and-direct,
    47 CFR 64.1200(n)(2): block the identified campaigns). Times are UNIX
    epoch seconds, UTC; ``mitigation_due``/``report_due`` are the first
    instants *after* their periods. ``campaigns`` are E.164 numbers or
    prefixes (``"+1202555"``); see :func:`parse_campaigns`. The other times
    are derived from the notice's history (rules.notices.derive_fields):
    ``mitigated``/``reported`` when the provider first mitigated and first
    reported; ``effective`` the latest operator determination that its
    measures are effective, ``ineffective`` the first that they are not after
    it (the trigger); ``fcc_notified`` the latest
    notice to the FCC (None: none recorded); ``letter`` names the letter's file.
    """

    id: str
    provider: str
    kind: str
    issued: float
    mitigation_due: float
    report_due: float
    mitigated: float | None = None
    reported: float | None = None
    fcc_notified: float | None = None
    campaigns: tuple[str, ...] = ()
    letter: str = ""
    ineffective: float | None = None
    effective: float | None = None


@dataclass(slots=True)
class Order:
    """An Enforcement Bureau order naming a provider (Redis ``order:<id>`` hash).

    ``kind`` ``"fdo"``: a Final Determination Order (47 CFR 64.1200(n)(3)):
    providers immediately downstream block all traffic received directly from
    ``provider`` beginning 30 days after ``released``. ``blocks_from`` is that
    instant (UNIX epoch seconds, computed by :func:`rules.orders.fdo_blocks_from`);
    ``order`` is the FCC document number (``"DA 24-123"``). Only orders in force
    (not removed) are in a snapshot.
    """

    id: str
    provider: str
    kind: str
    order: str
    released: float
    blocks_from: float


def parse_campaigns(raw: str) -> tuple[str, ...]:
    """The ``campaigns`` field of a notice hash: comma-separated numbers or prefixes.

    Full numbers are normalised (``2025550123`` → ``+12025550123``); an entry
    already starting with ``+`` is kept as a prefix; other entries (short
    prefixes without ``+``, garbage) raise ValueError so a bad notice is
    refused rather than silently matching nothing.
    """
    out: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if item[:1] == "+" and item[1:].isdigit() and item[1:].isascii():
            out.append(item)
            continue
        e164 = normalise(item)
        if e164 is None or e164[:1] != "+":
            raise ValueError(f"campaign entry is not an E.164 number or +prefix: {item!r}")
        out.append(e164)
    return tuple(out)


# Redis set keys that apply() understands (docs/DESIGN.md key schema).
NUMBER_KINDS = ("block:caller", "allow:caller", "dno:caller", "emergency:caller")
SET_KINDS = NUMBER_KINDS + ("block:prefix", "block:provider", "nanpa:npa", "nanpa:nxx")


@dataclass(slots=True)
class Snapshot:
    """The in-memory rules one decision reads (see module docstring)."""

    block_caller: NumberSet = field(default_factory=NumberSet)
    allow_caller: NumberSet = field(default_factory=NumberSet)
    allow_expiry: dict[str, float] = field(default_factory=dict)
    dno_caller: NumberSet = field(default_factory=NumberSet)
    block_prefix: PrefixSet = field(default_factory=PrefixSet)
    block_provider: set[str] = field(default_factory=set)
    providers: dict[str, Provider] = field(default_factory=dict)
    notices: dict[str, list[Notice]] = field(default_factory=dict)  # by provider id
    # NANPA assigned codes; None (or empty) = not loaded, the rule is off.
    nanpa_npa: set[str] | None = None
    nanpa_nxx: set[str] | None = None  # 6 digits, "202555"
    # Derived: the NPAs nanpa_nxx covers (the NPA-NXX rule is applied only
    # inside them). Kept by __post_init__, set_nanpa() and apply(); call
    # set_nanpa() rather than assigning nanpa_nxx directly.
    nanpa_nxx_npa: set[str] = field(default_factory=set)
    emergency: frozenset[str] = EMERGENCY_DEFAULT
    # Calls FROM these numbers get 47 CFR 64.1200(k)(6)'s reasonable efforts
    # (PSAPs, government emergency numbers): the Redis set emergency:caller,
    # plus the configured list (E.164 as ints, kept across reloads).
    emergency_caller: NumberSet = field(default_factory=NumberSet)
    emergency_caller_config: frozenset[int] = frozenset()
    # Final Determination Orders in force, by provider id (47 CFR 64.1200(n)(3)).
    orders: dict[str, list[Order]] = field(default_factory=dict)
    # Provider that cannot be judged against the RMD: "block" or "monitor".
    unmapped_provider_policy: str = "monitor"
    # STIR/SHAKEN attestation policy by upstream provider id ("" = every
    # other provider, and calls from an unmapped source); empty = no policy
    # (rules/shaken.py AttestationPolicy; from [shaken] in the config).
    shaken_policy: Mapping[str, AttestationPolicy] = field(default_factory=dict)
    # Derived (index_provider): signer OCN -> provider id, the lowest id when
    # several providers claim one OCN; and every claim, to keep it on edits.
    ocn_provider: dict[str, str] = field(default_factory=dict)
    ocn_claims: dict[str, set[str]] = field(default_factory=dict)
    version: str = ""
    loaded_at: float = 0.0

    def __post_init__(self) -> None:
        self.nanpa_nxx_npa = {c[:3] for c in self.nanpa_nxx} if self.nanpa_nxx else set()

    @classmethod
    def empty(cls) -> Snapshot:
        return cls()

    def set_nanpa(self, npa: Iterable[str] | None, nxx: Iterable[str] | None) -> None:
        """Replace the NANPA assigned-code sets (None = not loaded, rule off)."""
        self.nanpa_npa = set(npa) if npa is not None else None
        self.nanpa_nxx = set(nxx) if nxx is not None else None
        self.__post_init__()

    def entries(self) -> int:
        """Total number of entries, for the snapshot-size gauge."""
        return (
            len(self.block_caller)
            + len(self.allow_caller)
            + len(self.allow_expiry)
            + len(self.dno_caller)
            + len(self.block_prefix)
            + len(self.block_provider)
            + len(self.providers)
            + sum(len(v) for v in self.notices.values())
            + len(self.emergency_caller)
            + sum(len(v) for v in self.orders.values())
            + len(self.nanpa_npa or ())
            + len(self.nanpa_nxx or ())
        )

    # -- single edits (the store's live follow) ---------------------------

    def apply(self, key_kind: str, op: str, members: Iterable[str]) -> list[str]:
        """Apply one SADD/SREM-like edit to a set key; return the refused members.

        ``key_kind`` is one of :data:`SET_KINDS` (the key without the prefix),
        ``op`` is ``"add"`` or ``"remove"``. Numbers are normalised to E.164
        first (an operator may type ``2025550123``); members that are not a
        usable number/prefix/code are returned, not applied.
        """
        if op not in ("add", "remove"):
            raise ValueError(f"unknown op {op!r}")
        if key_kind not in SET_KINDS:
            raise ValueError(f"unknown key kind {key_kind!r}")
        adding = op == "add"
        refused: list[str] = []
        for raw in members:
            if key_kind in NUMBER_KINDS:
                e164 = normalise(raw)
                if e164 is None or e164[:1] != "+":
                    refused.append(raw)
                    continue
                target: NumberSet = getattr(self, key_kind.replace(":", "_"))
                try:
                    if adding:
                        target.add(e164)
                    else:
                        target.discard(e164)
                except ValueError:
                    refused.append(raw)
                    continue
                if key_kind == "allow:caller" and not adding:
                    self.allow_expiry.pop(e164, None)
            elif key_kind == "block:prefix":
                p = raw.strip()
                if p[:1] != "+" or not (p[1:].isdigit() and p[1:].isascii()):
                    refused.append(raw)
                elif adding:
                    self.block_prefix.add(p)
                else:
                    self.block_prefix.discard(p)
            elif key_kind == "block:provider":
                if adding:
                    self.block_provider.add(raw)
                else:
                    self.block_provider.discard(raw)
            else:  # nanpa:npa (3 digits) / nanpa:nxx (6 digits)
                want = 3 if key_kind == "nanpa:npa" else 6
                if len(raw) != want or not (raw.isdigit() and raw.isascii()):
                    refused.append(raw)
                    continue
                attr = "nanpa_npa" if want == 3 else "nanpa_nxx"
                codes: set[str] | None = getattr(self, attr)
                if adding:
                    if codes is None:
                        codes = set()
                        setattr(self, attr, codes)
                    codes.add(raw)
                    if want == 6:
                        self.nanpa_nxx_npa.add(raw[:3])
                elif codes is not None:
                    codes.discard(raw)
                    npa = raw[:3]
                    if want == 6 and not any(f"{npa}{x:03d}" in codes for x in range(1000)):
                        self.nanpa_nxx_npa.discard(npa)
        return refused

    def set_allow_expiry(self, e164: str, expires: float | None) -> None:
        """ZADD/ZREM on ``allow:caller:expiry`` (None removes the expiry)."""
        if expires is None:
            self.allow_expiry.pop(e164, None)
        else:
            self.allow_expiry[e164] = expires

    def set_provider(self, provider: Provider) -> None:
        if provider.rmd_status not in RMD_STATUSES:
            raise ValueError(f"unknown rmd_status {provider.rmd_status!r}")
        self.index_provider(self.providers.get(provider.id), provider)
        self.providers[provider.id] = provider

    def remove_provider(self, provider_id: str) -> None:
        self.index_provider(self.providers.pop(provider_id, None), None)

    def index_provider(self, old: Provider | None, new: Provider | None) -> None:
        """Keep ``ocn_provider`` in step with one provider replaced (``old`` ->
        ``new``, either None): only the OCNs the two name are touched."""
        if old is None and new is None:
            return
        pid = new.id if new is not None else old.id  # type: ignore[union-attr]
        before = old.signing_ocns() if old is not None else set()
        after = new.signing_ocns() if new is not None else set()
        claims = self.ocn_claims
        for ocn in before ^ after:
            got = claims.setdefault(ocn, set())
            if ocn in after:
                got.add(pid)
            else:
                got.discard(pid)
            if got:
                self.ocn_provider[ocn] = min(got)
            else:
                del claims[ocn]
                self.ocn_provider.pop(ocn, None)

    def set_notice(self, notice: Notice) -> None:
        """Add or replace (by id) a notice."""
        if notice.kind not in NOTICE_KINDS:
            raise ValueError(f"unknown notice kind {notice.kind!r}")
        self.remove_notice(notice.id)
        self.notices.setdefault(notice.provider, []).append(notice)

    def remove_notice(self, notice_id: str) -> None:
        for pid, lst in list(self.notices.items()):
            kept = [n for n in lst if n.id != notice_id]
            if len(kept) != len(lst):
                if kept:
                    self.notices[pid] = kept
                else:
                    del self.notices[pid]

    def set_order(self, order: Order) -> None:
        """Add or replace (by id) an order in force."""
        if order.kind not in ORDER_KINDS:
            raise ValueError(f"unknown order kind {order.kind!r}")
        self.remove_order(order.id)
        self.orders.setdefault(order.provider, []).append(order)

    def remove_order(self, order_id: str) -> None:
        for pid, lst in list(self.orders.items()):
            kept = [o for o in lst if o.id != order_id]
            if len(kept) != len(lst):
                if kept:
                    self.orders[pid] = kept
                else:
                    del self.orders[pid]

    def notice(self, notice_id: str) -> Notice | None:
        for lst in self.notices.values():
            for n in lst:
                if n.id == notice_id:
                    return n
        return None
