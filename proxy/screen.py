"""Screening glue: one INVITE -> CallFacts -> rules.engine.decide -> Answer.

How this works: `Screener` is the `screen(request, src, transport)` callable
the SIP core (proxy/sip/core.py) calls for each initial INVITE. It

1. builds `rules.facts.CallFacts` from the request: the caller from the
   first P-Asserted-Identity with a number (RFC 3325 §9.1) else the From URI
   user, both read by the parser's one name-addr reader (quoted display
   names, `user:password`) and normalised to E.164 by
   `rules.numbers.normalise` (which undoes %HH escapes, RFC 3261 §19.1.4);
   `Privacy: id` / `user` (RFC 3323 §4.2) sets `caller_private` (the carrier
   still screens the number); the callee from the Request-URI only (never
   To: the softswitch routes on the Request-URI), or its RFC 5031
   `urn:service:sos[.<sub>]` lower-cased; the upstream provider from the
   trunk map (source IP -> provider, longest prefix) or, from a trusted SBC
   only, the configured header (more than one value in it, on two lines or
   as a comma list, is answered 400 and never guessed at: an unknown
   provider would skip the RMD gate);
   with `[shaken] enabled = true` only, the Identity header is verified by
   `rules.shaken.Verifier` (built by proxy/shaken.py; results cached by
   header value) and `facts.verstat` / `shaken_reason` set, and
   `facts.attest` / `facts.ocn` when it passed; off, the only cost is one
   `is not None` test;
2. calls `rules.engine.decide(store.snapshot, facts, now)` synchronously on
   the in-memory snapshot (no await, no Redis round trip);
3. maps a block to the answer configured for the rule's answer class
   (`603` / `603+` / `608`, precomputed in proxy/config/answers.py), or
   forwards (returns None) when allowed, when only a would-block matched, or
   in `--monitor` mode; with `[shaken]` on, a forwarded call whose
   P-Asserted-Identity/From needs a verstat edit (an upstream one stripped,
   ours added with `add_verstat`, proxy/sip/verstat.py) or carries a mark
   header (every arriving copy stripped; ours added when the attestation
   policy says "mark": rules.engine.shaken_mark, proxy/shaken.py
   mark_edits) returns `Forward(edits)` instead of None; a marked allow
   counts as allowed/shaken_policy and in `sipscreen_shaken_marked_total`,
   and is logged and recorded (action `mark`);
4. counts on pre-bound metric children, logs one JSON line per blocked (or
   would-block) call, and appends a decision record (all blocks, sampled
   allows) to the RecordWriter. An allowlist pass over a rule that would
   have blocked (verdict ALLOWLIST with `would_block`) counts as allowed
   (rule allowlist) and in `sipscreen_allowlist_overrides_total{rule}`, and is
   logged and recorded (action `allowlist_override`, rule = the rule passed
   over). A call whose provider cannot be judged against the RMD counts in
   `sipscreen_unmapped_provider_total{action}`: "blocked" (policy block; also
   blocked/unmapped_provider) or "passed" (policy monitor; also
   allowed/default, recorded as would_block unmapped_provider at the allow
   sample rate and not logged: a configuration state, not a per-call event).

`Screener.update` is the core's second call: an in-dialog UPDATE from a caller
whose identities (From, P-Asserted-Identity) its dialog's Record-Route stamp
does not prove (proxy/sip/core.py) is checked against the number lists
(`rules.engine.decide_update`), since an UPDATE can change the caller ID a
phone shows; a match is answered like a blocked call, counted in
`sipscreen_updates_screened_total`, logged and recorded (`reject_update`).

If the store never loaded a snapshot, the `no_snapshot_policy` decides:
"open" forwards and counts, "closed" answers 503 (RFC 3261 §21.5.4) with a
Retry-After.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from proxy.config import Config
from proxy.metrics import UNREADABLE_IDENTITY, UNREADABLE_ISUP, Metrics
from proxy.records import clip
from proxy.shaken import mark_edits, mark_value
from proxy.shakenstats import OTHER, ShakenStats
from proxy.sip.core import RETRY_AFTER, Answer, Forward, Screen
from proxy.sip.isup import BadIsup, calling_numbers, may_carry_isup
from proxy.sip.message import NameAddr, Request, name_addr_parts, uri_user
from proxy.sip.verstat import Edits, verstat_edits
from rules.engine import (
    decide,
    decide_update,
    is_emergency_callee,
    is_emergency_caller,
    shaken_mark,
)
from rules.facts import CallFacts
from rules.numbers import (
    dialled_service_code,
    global_number,
    in_context,
    normalise,
    numbers_written,
    overlong_nanp,
    sos_urn,
    user_readings,
)
from rules.shaken import Verifier
from rules.verdict import ALLOW_EMERGENCY, ALLOW_EMERGENCY_CALLER, Rule, Verdict

__all__ = ["DECISION_LOGGER", "Screener", "caller_from_request"]

DECISION_LOGGER = "sipscreen.decisions"
_log = logging.getLogger(DECISION_LOGGER)

# RFC 3261 §21.5.4: 503 with Retry-After when we cannot screen (no snapshot
# loaded and the operator chose to fail closed).
_ANSWER_503 = Answer(503, b"Service Unavailable", RETRY_AFTER)


class _Store(Protocol):
    @property
    def snapshot(self) -> Any: ...

    @property
    def loaded(self) -> bool: ...


class _Records(Protocol):
    def append(self, record: dict[str, str]) -> Any: ...


# proxy/shakenstats.py OUTCOMES index of a verified call, by attestation.
_ATTEST_OUTCOME = {"A": 3, "B": 4, "C": 5}

# Rules about a provider: the record says whether it matched by trunk or by signature.
_PROVIDER_RULES = frozenset(
    (
        Rule.UNMAPPED_PROVIDER,
        Rule.RMD_GATE,
        Rule.FDO,
        Rule.PROVIDER_BLOCK,
        Rule.SHAKEN_POLICY,
        Rule.NOTICE_K4,
        Rule.NOTICE_N2,
    )
)


def _iso_ms_reference(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, as proxy/records/ exports it (``_iso_ms``'s
    reference: tests/unit/test_record_time.py compares the two)."""
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        + "Z"
    )


_ISO_SECOND: list[Any] = [None, ""]  # the last whole second formatted, its text


def _iso_ms(ts: float) -> str:
    """``_iso_ms_reference(ts)``, the date and time formatted once per second: the
    microseconds rounded half-even and carried as ``datetime.fromtimestamp``
    does, then cut to milliseconds."""
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1.0
        us -= 1_000_000
    if us < 0 or whole < 0:  # before 1970: not a record's time; the reference says
        return _iso_ms_reference(ts)
    cache = _ISO_SECOND
    if cache[0] != whole:
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        cache[0] = whole
    return f"{cache[1]}.{us // 1000:03d}Z"


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _number(na: NameAddr) -> str | None:
    """The E.164 number (or short code) of a parsed From / P-Asserted-Identity value.

    `NameAddr.user` is the user part of a sip:/sips: URI without a
    `:password` (RFC 3261 §19.1.1) or the number of a tel: URI; `normalise`
    undoes %HH escapes (RFC 3261 §19.1.4) and drops URI parameters.
    """
    return _caller_number(_text(na.user or na.uri))  # _uri_number's, one call less per INVITE


def _uri_number(uri: bytes, user: bytes) -> str | None:
    """``_number`` of a URI read apart from a NameAddr (a P-Asserted-Identity
    entry, ``name_addr_parts``), ``user`` its ``uri_user``."""
    return _caller_number(_text(user or uri))


def _caller_number(text: str) -> str | None:
    """``normalise(text)``, or a ``+1`` caller ID longer than E.164 allows as it is
    (``overlong_nanp``: an invalid NANP number, 47 CFR 64.1200(o), not no number)."""
    return normalise(text) or overlong_nanp(text)


# RFC 3325 §9.1 allows two P-Asserted-Identity values (a sip:/sips: and a
# tel:); more than this many are refused unread (each entry costs a name-addr
# read: thousands in one request would stall a worker).
PAI_MAX = 10


class UnreadableIdentity(Exception):
    """An identity the screen cannot read one way only: a P-Asserted-Identity
    entry the name-addr reader refuses (`raw`, `why`), more than PAI_MAX
    entries, or (``isup``) an ISUP body (SIP-T) the reader cannot follow."""

    def __init__(self, raw: bytes, why: str = "", isup: bool = False) -> None:
        super().__init__(raw)
        self.raw = raw
        self.why = why or "a P-Asserted-Identity entry is not a name-addr or addr-spec"
        # (rule label, citation): which 400 it is (Screener._unreadable)
        self.labels = UNREADABLE_ISUP if isup else UNREADABLE_IDENTITY


def caller_from_request(req: Request) -> str | None:
    """Caller ID: first P-Asserted-Identity (RFC 3325 §9.1), else From
    (``caller_identities``, whose first item it is); with an unreadable PAI
    entry, From's (the records of a refused request)."""
    try:
        return caller_identities(req)[0]
    except UnreadableIdentity:
        return _number(req.from_)


def caller_identities(req: Request) -> tuple[str | None, tuple[str, ...]]:
    """(caller ID, the other numbers the identity headers carry).

    The caller ID is the first P-Asserted-Identity entry with a number (RFC
    3325 §9.1), else From's. The others: further PAI entries with a number,
    From's when a PAI gave the caller ID, and the numbers each name-addr shows
    that its caller-ID reading does not (``_other_readings``: a local number's
    phone-context, the user part read another way, a number written in the
    display name); each once, the caller excluded.

    Every identity header is read by the one name-addr reader the From
    header gets (proxy/sip/message.py `parse_name_addr`, through
    `name_addr_parts`), so a PAI cannot be read differently from a From that
    holds the same value.
    """
    # The parser splits comma-separated entries outside quotes and <>
    # (RFC 3325 §9.1 allows one sip: and one tel: identity). An entry the
    # reader refuses raises UnreadableIdentity: skipped, it could hide a
    # number a more lenient softswitch reads from it (the request is refused).
    pais: list[str] = []
    local: list[str] = []
    entries = req.pai
    if len(entries) > PAI_MAX:
        raise UnreadableIdentity(
            b"%d entries" % len(entries),
            f"more than {PAI_MAX} P-Asserted-Identity entries (RFC 3325 §9.1 allows two)",
        )
    for raw in entries:
        parts = name_addr_parts(raw)  # parse_name_addr's reading, None if it refuses
        if parts is None:
            raise UnreadableIdentity(raw)
        display, uri = parts
        user = uri_user(uri)[1]
        num = _uri_number(uri, user)
        if num is not None:
            pais.append(num)
        local += _other_readings(display, uri, user)
    f = req.from_
    frm = _number(f)
    local += _other_readings(f.display, f.uri, f.user)
    if req.indexed.get(b"content-type") is not None:
        local += _isup_numbers(req)
    caller: str | None
    if pais:
        caller = pais[0]
        rest = pais[1:] + ([frm] if frm is not None else []) + local
    elif local:
        caller, rest = frm, local
    else:
        return frm, ()
    return caller, tuple(n for n in dict.fromkeys(rest) if n != caller)


_SDP = b"application/sdp"


def _isup_content(req: Request) -> list[bytes]:
    """The Content-Type values under which ``req``'s body may hold an ISUP IAM."""
    buf = req.header_block
    out = []
    for s, e in req.indexed.get(b"content-type") or ():
        ct = buf[s:e].strip()
        if may_carry_isup(ct):
            out.append(ct)
    return out


def _isup_numbers(req: Request) -> tuple[str, ...]:
    """The calling numbers of the ISUP IAM a SIP-T / SIP-I INVITE carries
    (proxy/sip/isup.py), as E.164 numbers: nature of address 4 (international)
    gets its ``+``, others are read as ``normalise`` reads digits (a national
    number of ten digits is NANP). A softswitch that interworks to the PSTN
    sends the IAM on, and the called party's phone shows its number; a body
    the reader cannot follow raises UnreadableIdentity."""
    found: list[str] = []
    for ct in _isup_content(req):
        for enc in req.header(b"content-encoding"):
            if enc.strip().lower() not in (b"", b"identity"):
                # RFC 3261 §20.12: a softswitch that decodes it reads the IAM
                raise UnreadableIdentity(
                    ct, f"an ISUP body under Content-Encoding {_text(enc)}", isup=True
                )
        try:
            pairs = calling_numbers(ct, req.body)
        except BadIsup as exc:
            raise UnreadableIdentity(
                ct, f"{exc} (an ISUP body, RFC 3204, SIP-T)", isup=True
            ) from None
        for noa, digits in pairs:
            num = global_number(("+" + digits) if noa == 4 else digits) if digits else None
            if num is not None and num not in found:
                found.append(num)
    return tuple(found)


def _emergency_caller(snap: Any, req: Request) -> str | None:
    """The first identity of ``req`` the screen can read (From, each readable
    P-Asserted-Identity entry, at most PAI_MAX of them) that is on the
    emergency-caller lists (47 CFR 64.1200(k)(6)), else None: for a request
    whose other headers cannot be read."""
    numbers = [_number(req.from_)]
    for raw in req.pai[:PAI_MAX]:
        parts = name_addr_parts(raw)
        if parts is not None:
            numbers.append(_uri_number(parts[1], uri_user(parts[1])[1]))
    for num in numbers:
        if num is not None and is_emergency_caller(snap, num):
            return num
    return None


_DIGIT = re.compile(rb"[0-9]")
_QUOTED_PAIR = re.compile(rb"\\(.)", re.DOTALL)
# what a number may be written with (rules/numbers.py normalise)
_NUMBER_CHARS = b"+0123456789-.() \t"
_PLUS_DIGITS = b"+0123456789"


def _display_text(display: bytes) -> str:
    """A display name as a phone shows it: its quotes and quoted-pairs undone
    (RFC 3261 §25.1), its octets read as UTF-8 (RFC 3261 §25.1 UTF8-NONASCII)."""
    if display[:1] == b'"':
        display = display[1:-1]
        if b"\\" in display:
            display = _QUOTED_PAIR.sub(rb"\1", display)
    return display.decode("utf-8", "replace")


def _may_hide(display: bytes, uri: bytes, user: bytes) -> bool:
    """A name-addr may name a number its caller-ID reading does not: its URI has a
    phone-context or a %HH escape, its user part a digit beside a character a
    number cannot hold, or its display name a digit or a non-ASCII octet (a
    fullwidth or other-script digit). Two memchr and an lstrip for the usual
    From (``+`` and digits), which has none of them."""
    return (
        b"%" in uri
        or (b";" in uri and b"phone-context" in uri.lower())
        or (
            bool(user.lstrip(_PLUS_DIGITS))
            and bool(user.translate(None, _NUMBER_CHARS))
            and _DIGIT.search(user) is not None
        )
        or (bool(display) and (_DIGIT.search(display) is not None or not display.isascii()))
    )


def _other_readings(display: bytes, uri: bytes, user: bytes) -> tuple[str, ...]:
    """The numbers a name-addr shows that its caller-ID reading (``normalise`` of
    the URI's user) may not, to a softswitch or phone that reads it another
    way (rules/numbers.py): the global number of a local number's
    phone-context (RFC 3966 §5.1.5; ``in_context``):
    ``tel:736-9999;phone-context=+1-212`` is +12127369999 to a softswitch that
    resolves it; the numbers other readers of the user part find
    (``user_readings``): the number before an escaped delimiter
    (``sip:+12127369999%40evil@h``) or before any character a number cannot
    hold (``+12127369999x``), and its digits alone (``+1212x736y9999``); and
    the numbers written in the display name (``numbers_written``), which a
    phone shows, fullwidth and other-script digits included. () for the
    usual name-addr."""
    if not _may_hide(display, uri, user):
        return ()
    text = _text(uri)
    found = in_context(text)
    more = user_readings(text)
    if display:
        more += numbers_written(_display_text(display))
    for num in more:
        if num not in found:
            found += (num,)
    return found


def _callee(req: Request) -> str | None:
    """Callee: the Request-URI's number, or its RFC 5031 emergency service URN.

    Only the Request-URI: the softswitch routes on it (RFC 3261 §16.5), and
    the To header is whatever the caller wrote (RFC 3261 §8.1.1.2). A
    `urn:service:sos[.<sub>]` Request-URI (RFC 6881 §6.2.1) gives the URN
    lower-cased; a three-digit code dialled with the NANP prefix (``1-911``,
    ``+1911``) gives the code (``dialled_service_code``); anything else that
    is not a number gives None.
    """
    ruri = req.ruri
    # the user part as From's is read (no `:password`), else the whole URI
    user = uri_user(ruri)[1]
    text = _text(user or ruri)
    num = normalise(text)
    if num is None or num[:1] != "+":
        if num is None and ruri[:4].lower() == b"urn:":
            return sos_urn(_text(ruri))
        # 1-911 / +1911: the code (47 CFR 64.1200(k)(5): never block a 911 call)
        return dialled_service_code(text) or num
    return num


def _private(privacy: bytes | None) -> bool:
    # RFC 3323 §4.2: Privacy = priv-value *(";" priv-value); "id" (RFC 3325)
    # and "user" ask to hide the caller's identity from the callee.
    if not privacy:
        return False
    for tok in _text(privacy).lower().replace(",", ";").split(";"):
        if tok.strip() in ("id", "user"):
            return True
    return False


class AmbiguousProvider(Exception):
    """The trusted provider header holds more than one value (`values`, joined)."""

    def __init__(self, values: bytes) -> None:
        super().__init__(values)
        self.values = values


class Screener(Screen):
    """The core's `Screen` (proxy/sip/core.py), handed to `ProxyCore` and `RedirectCore`.

    It raises no `ScreenError`: with no snapshot loaded it answers itself
    (`no_snapshot_policy`: forward as it is, or 503), counted in its own
    metrics; an exception out of it is a bug, which the core counts
    (`screen_bugs`), logs, and fails open on."""

    def __init__(
        self,
        config: Config,
        store: _Store,
        metrics: Metrics,
        records: _Records | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.records = records
        self._clock = clock
        self._rng = rng
        self._monitor = config.monitor
        self._closed = config.no_snapshot_policy == "closed"
        # The share of allowed calls recorded; 0 without a record writer, so
        # the allow path tests one number.
        self._sample = config.records_sample_allowed if records is not None else 0.0
        self._trunk_lookup = config.trunks.lookup
        # Set by the worker while it takes a message from a TLS connection whose
        # verified client certificate names a trunk (tls_subject, found once per
        # connection at the handshake): that provider, before every other lookup
        self.provider_override: str | None = None
        self._trusted_header = (
            config.trusted_provider_header.encode("ascii")
            if config.trusted_provider_header
            else None
        )
        # More than one provider from the trusted SBC (two header lines, or a
        # comma list) is never guessed at: answered 400 (RFC 3261 §21.4.1).
        self._ambiguous_provider = Answer(
            400,
            b"Ambiguous " + (self._trusted_header or b"provider") + b" header",
            b"",
        )
        self._ambiguous_count = metrics.invites.labels(
            "would_block" if config.monitor else "blocked",
            "ambiguous_provider_header",
            "RFC 3261 §21.4.1",
        )
        # An identity the screen cannot read, never skipped (_refuse_unreadable):
        # a P-Asserted-Identity entry the name-addr reader refuses (RFC 3325
        # §9.1), an ISUP body (SIP-T) the reader cannot follow (RFC 3204). By
        # UnreadableIdentity.labels: (the 400, its sipscreen_invites_total child)
        self._unreadable: dict[tuple[str, str], tuple[Answer, Any]] = {
            labels: (
                Answer(400, reason, b""),
                metrics.invites.labels("would_block" if config.monitor else "blocked", *labels),
            )
            for labels, reason in (
                (UNREADABLE_IDENTITY, b"Bad P-Asserted-Identity"),
                (UNREADABLE_ISUP, b"Bad ISUP Body"),
            )
        }
        # Answer per answer class, built once from the configured AnswerSpec.
        self._answers: dict[str, Answer] = {}
        for cls, spec in config.answers.items():
            self._answers[cls] = Answer(spec.status, spec.reason, spec.extra_headers)
        default = self._answers.get("deterministic") or Answer(603, b"Decline", b"")
        self._answer_by_rule: dict[Rule, Answer] = {
            rule: self._answers.get(rule.answer_class, default) for rule in Rule
        }
        self._allowed = metrics.invites_allowed
        self._blocked = metrics.invites_blocked
        self._would = metrics.invites_would_block
        self._overrides = metrics.allowlist_overrides_by_rule
        self._unmapped_passed = metrics.unmapped_passed
        self._unmapped_blocked = metrics.unmapped_blocked
        self._observe = metrics.decision_tally.observe  # flushed by flush_counts
        # [shaken] (off by default): None keeps the INVITE path as it was.
        self._shaken: Verifier | None = None
        self._add_verstat = config.shaken is not None and config.shaken.add_verstat
        self._shaken_count = metrics.shaken_children
        self._marked = metrics.shaken_marked_children
        self._mark_name = (
            config.shaken.mark_header if config.shaken else "X-Sipscreen-Mark"
        ).encode()
        self._stats: ShakenStats | None = None
        if config.shaken is not None:
            from proxy.shaken import load_verifier

            self._stats = ShakenStats.shared(
                config.redis_url,
                config.key_prefix,
                metrics.shaken_provider_calls,
                metrics.shaken_provider_claim,
            )

            self._shaken = load_verifier(
                config.shaken,
                redis_url=config.redis_url,
                prefix=config.key_prefix,
                counters=metrics.shaken_cert_fetch_children,
            )
        self.errors = 0
        # The last decision (verdict, facts), None when the last INVITE was not
        # decided (no snapshot, ambiguous provider): redirect mode's headers
        # (proxy/redirect.py) read it right after the call.
        self.last: tuple[Verdict, CallFacts] | None = None
        # Records say which mode took the decision in redirect mode only (the
        # inline records are unchanged).
        self._mode = config.mode if config.mode != "inline" else None

    # -- facts --------------------------------------------------------------

    def provider_for(self, req: Request, source_ip: str) -> str | None:
        """Upstream provider: trusted SBC header, else trunk map by source IP.

        Raises `AmbiguousProvider` when the trusted SBC's header holds more
        than one value (two lines, or a comma list): no value is picked.
        """
        if self._trusted_header is not None and self.config.is_trusted_source(source_ip):
            values = req.header(self._trusted_header)
            if values:
                if len(values) > 1 or b"," in values[0]:
                    raise AmbiguousProvider(b", ".join(values))
                return _text(values[0]).strip() or None
        return self._trunk_lookup(source_ip)

    def facts_for(self, req: Request, src: tuple[str, int]) -> CallFacts:
        source_ip = src[0]
        frm = req.from_
        ct = req.indexed.get(b"content-type")
        if (
            req.pai
            or _may_hide(frm.display, frm.uri, frm.user)
            or (
                ct is not None  # a body other than one SDP may hold an ISUP IAM (SIP-T)
                and (len(ct) > 1 or req.header_block[ct[0][0] : ct[0][1]].strip() != _SDP)
                and _isup_content(req)
            )
        ):
            caller, others = caller_identities(req)
        else:  # the common case: From alone, no other identity
            caller, others = _number(frm), ()
        facts = CallFacts(
            caller,
            _callee(req),
            self.provider_override or self.provider_for(req, source_ip),
            source_ip,
            _text(req.call_id),
            None,  # OCN: from a verified SHAKEN Identity only (RFC 8588)
            _private(req.privacy),
        )
        if others:
            facts.other_callers = others
        return facts

    def _verify(
        self, verifier: Verifier, req: Request, facts: CallFacts, now: float
    ) -> Edits | None:
        """STIR/SHAKEN (RFC 8224 §6.2): the verification result into the facts,
        counted in sipscreen_shaken_results_total{result,attest}; the edits of
        the forwarded INVITE (ATIS-1000074 verstat: an upstream one stripped,
        ours added with ``add_verstat``), if any.

        The signer's OCN and attestation are taken only from a header that
        verified: a failed one names no one."""
        res = verifier.verify(req.header(b"identity"), facts.caller, facts.callee, now)
        facts.verstat = res.verstat
        facts.shaken_reason = res.reason
        reason = res.reason
        if reason == "":
            facts.attest = res.attest
            facts.ocn = res.ocn
            self._shaken_count[("", res.attest)].inc()
            outcome = _ATTEST_OUTCOME.get(res.attest or "", 2)
        else:
            self._shaken_count[(reason, None)].inc()
            outcome = 0 if reason == "unsigned" else 1 if reason == "cert_pending" else 2
        stats = self._stats
        if stats is not None:
            provider = facts.provider
            prov = self.store.snapshot.providers.get(provider) if provider is not None else None
            if prov is None:
                stats.count(OTHER, outcome)
            else:
                stats.count(prov.id, outcome, prov.implementation)
        return verstat_edits(req, res.verstat.encode() if self._add_verstat else None)

    def _shaken_forward(
        self, req: Request, facts: CallFacts, snap: Any, verdict: Verdict, edits: Edits | None
    ) -> tuple[Forward | None, Verdict | None]:
        """The forwarded INVITE's edits ([shaken] on): verstat's, plus the mark.

        A call that is forwarded (allowed, or any call under --monitor) loses
        every mark header that arrived (a caller cannot forge or pre-set it)
        and, when the attestation policy marks it, gets ours; the mark is
        counted here, recorded by the caller."""
        mark = None
        if not verdict.blocked or self._monitor:
            mark = shaken_mark(snap, facts, verdict)
            value = None if mark is None else mark_value(mark, facts)
            more = mark_edits(req, self._mark_name, value)
            if more is not None:
                edits = more if edits is None else edits + more
            if mark is not None:
                self._marked[mark.detail.split(":")[1]].inc()
        return (None if edits is None else Forward(edits)), mark

    # -- the hot path ----------------------------------------------------------

    def __call__(
        self, req: Request, src: tuple[str, int], transport: str
    ) -> Answer | Forward | None:
        store = self.store
        self.last = None
        if not store.loaded:
            if self._closed:
                self.metrics.invites_no_snapshot_refused.inc()
                return _ANSWER_503
            self.metrics.invites_no_snapshot.inc()
            return None
        t0 = time.perf_counter()
        snap = store.snapshot
        try:
            facts = self.facts_for(req, src)
        except (AmbiguousProvider, UnreadableIdentity) as exc:
            callee = _callee(req)
            if callee is not None and is_emergency_callee(snap, callee):
                # 47 CFR 64.1200(k)(5): an emergency call is never blocked, a header
                # the screen cannot read included (step 1 needs only the callee)
                self.last = (ALLOW_EMERGENCY, CallFacts(None, callee, None, src[0]))
                self._allowed[Rule.EMERGENCY].inc()
                return None
            psap = _emergency_caller(snap, req)
            if psap is not None:
                # 47 CFR 64.1200(k)(6): a PSAP calling back is not blocked for a
                # header the screen cannot read either, when an identity it can
                # read names the PSAP (a caller may present a PSAP's number as
                # its caller ID anyway: step 1 passes it)
                self.last = (ALLOW_EMERGENCY_CALLER, CallFacts(psap, callee, None, src[0]))
                self._allowed[Rule.EMERGENCY].inc()
                return None
            if isinstance(exc, AmbiguousProvider):
                return self._refuse_ambiguous(req, src, transport, exc)
            self._unreadable[exc.labels][1].inc()
            return self._refuse_unreadable(req, src, transport, exc)
        now = self._clock()
        fwd: Forward | None = None
        mark: Verdict | None = None
        shaken = self._shaken
        edits: Edits | None = None
        if shaken is not None:
            edits = self._verify(shaken, req, facts, now)
        verdict: Verdict = decide(snap, facts, now)
        self.last = (verdict, facts)
        self._observe(time.perf_counter() - t0)
        if shaken is not None:
            fwd, mark = self._shaken_forward(req, facts, snap, verdict, edits)
        if not verdict.blocked:
            would = verdict.would_block
            if would is None:
                if mark is not None:
                    # the attestation policy's mark: allowed by that rule,
                    # recorded and logged (a mark is an event, not sampled)
                    self._allowed[Rule.SHAKEN_POLICY].inc()
                    self._record(req, src, transport, facts, mark, "mark", snap, now)
                    return fwd
                self._allowed[verdict.rule].inc()
                if self._sample and self._rng() < self._sample:
                    self._record(req, src, transport, facts, verdict, "allow", snap, now)
                return fwd
            if verdict.rule is Rule.ALLOWLIST:
                # The allowlist passed the call over `would`: allowed, counted
                # by the rule it passed over, recorded and logged.
                self._allowed[Rule.ALLOWLIST].inc()
                self._overrides[would].inc()
                self._record(
                    req, src, transport, facts, verdict, "allowlist_override", snap, now, rule=would
                )
                return fwd
            if would is Rule.UNMAPPED_PROVIDER:
                self._unmapped_passed.inc()
                if snap.unmapped_provider_policy != "block":
                    # unmapped_provider_policy = monitor: allowed/default plus the
                    # unmapped counter on every call; recorded at the allow sample
                    # rate and not logged (a configuration state, not an event).
                    if mark is not None:  # ...unless the attestation policy marked it
                        self._allowed[Rule.SHAKEN_POLICY].inc()
                        self._record(req, src, transport, facts, mark, "mark", snap, now)
                        return fwd
                    self._allowed[verdict.rule].inc()
                    if self._sample and self._rng() < self._sample:
                        self._record(
                            req,
                            src,
                            transport,
                            facts,
                            verdict,
                            "would_block",
                            snap,
                            now,
                            rule=would,
                            log=False,
                        )
                    return fwd
                # policy block, provider monitor_only: a call the gate would have
                # refused, counted as would_block and recorded like the others
            self._would[would].inc()
            self._record(req, src, transport, facts, verdict, "would_block", snap, now, rule=would)
            return fwd
        if self._monitor:
            # --monitor: count and log what would be blocked, forward it.
            self._would[verdict.rule].inc()
            if verdict.rule is Rule.UNMAPPED_PROVIDER:
                self._unmapped_passed.inc()
            self._record(req, src, transport, facts, verdict, "monitor", snap, now)
            return fwd
        self._blocked[verdict.rule].inc()
        if verdict.rule is Rule.UNMAPPED_PROVIDER:
            self._unmapped_blocked.inc()
        answer = self._answer_by_rule[verdict.rule]
        self._record(req, src, transport, facts, verdict, "reject", snap, now, answer=answer)
        return answer

    def update(self, req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        """An in-dialog UPDATE whose identities the dialog's stamp does not prove
        (proxy/sip/core.py, the ``Screen`` contract's ``update``): its caller ID
        and other identities against the number lists (rules/engine.py
        ``decide_update``). A match is answered as the list's rule answers a
        call, counted in ``sipscreen_updates_screened_total``, logged and
        recorded (action ``reject_update``; ``--monitor``: ``monitor_update``
        and forwarded). None: forwarded (no snapshot yet: as it is)."""
        store = self.store
        if not store.loaded:
            return None
        snap = store.snapshot
        try:
            try:
                facts = self.facts_for(req, src)
            except AmbiguousProvider:  # no provider rule applies to an UPDATE
                caller, others = caller_identities(req)
                facts = CallFacts(caller, None, None, src[0], _text(req.call_id))
                facts.other_callers = others
        except UnreadableIdentity as exc:
            self._count_update("would_refuse" if self._monitor else "refused", *exc.labels)
            return self._refuse_unreadable(req, src, transport, exc)
        now = self._clock()
        verdict = decide_update(snap, facts, now)
        rule = verdict.rule
        if not verdict.blocked:
            self._count_update("allowed", rule.label, rule.citation)
            return None
        if self._monitor:
            self._count_update("would_refuse", rule.label, rule.citation)
            self._record(req, src, transport, facts, verdict, "monitor_update", snap, now)
            return None
        self._count_update("refused", rule.label, rule.citation)
        answer = self._answer_by_rule[rule]
        self._record(req, src, transport, facts, verdict, "reject_update", snap, now, answer=answer)
        return answer

    def _count_update(self, verdict: str, rule: str, citation: str) -> None:
        """One UPDATE in sipscreen_updates_screened_total (its child made at start)."""
        m = self.metrics
        child = m.updates_by.get((verdict, rule))
        (child if child is not None else m.updates.labels(verdict, rule, citation)).inc()

    def _refuse_ambiguous(
        self, req: Request, src: tuple[str, int], transport: str, exc: AmbiguousProvider
    ) -> Answer | None:
        """The trusted SBC sent more than one provider: 400 (``_refuse_header``).

        Taking the first (or any) value would let a provider header the SBC
        passed through from a caller pick the provider, and an unknown
        provider skips the RMD gate (47 CFR 64.6305(g)): refuse instead. The
        values come from the caller, through the SBC.
        """
        self._ambiguous_count.inc()
        return self._refuse_header(
            req,
            src,
            transport,
            "ambiguous_provider_header",
            "RFC 3261 §21.4.1",
            "more than one value in the trusted provider header "
            "(RMD gate, 47 CFR 64.6305(g), cannot be applied)",
            exc.values,
            self._ambiguous_provider,
        )

    def _refuse_unreadable(
        self, req: Request, src: tuple[str, int], transport: str, exc: UnreadableIdentity
    ) -> Answer | None:
        """A P-Asserted-Identity entry that is not a name-addr or addr-spec (RFC 3325
        §9.1): 400 (``_refuse_header``). Skipping it would screen the call on
        another identity while a softswitch with a more lenient reader shows
        the number it finds in the entry (``"unbalanced <sip:+1...@h>``,
        ``< tel:+1... >``): a caller ID the screen never judged. The caller
        counts it."""
        return self._refuse_header(
            req,
            src,
            transport,
            *exc.labels,
            f"{exc.why}; the caller ID cannot be screened",
            exc.raw,
            self._unreadable[exc.labels][0],
        )

    def _refuse_header(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        rule: str,
        citation: str,
        reason: str,
        detail_raw: bytes,
        answer: Answer,
    ) -> Answer | None:
        """A request refused for a header the screen cannot read one way only:
        ``answer`` (a 400), logged and recorded (`--monitor`: forwarded,
        recorded as "monitor"; the caller counts it). The record has every
        field of a blocked call's, received strings clipped as theirs, the
        header's value in ``detail``."""
        raw = self._raw_fields(req, _text(req.call_id), "")
        detail = _text(detail_raw)
        cap_hdr = self.config.records_max_header
        if 0 < cap_hdr < len(detail):
            detail = clip(detail, cap_hdr)
            self.metrics.records_truncated_children["detail"].inc()
        ip, port = src[0], src[1]
        rec: dict[str, str] = {
            "ts": _iso_ms(self._clock()),
            "call_id": raw["call_id"],
            "source": f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
            "transport": transport,
            "provider": "",
            "ocn": "",
            "caller": caller_from_request(req) or "",
            "callee": _callee(req) or "",
            "caller_raw": raw["caller_raw"],
            "callee_raw": raw["callee_raw"],
            "caller_private": "1" if _private(req.privacy) else "0",
            "pai": raw["pai"],
            "from": raw["from"],
            "identity": raw["identity"],
            "rule": rule,
            "citation": citation,
            "reason": reason,
            "detail": detail,
            "action": "monitor" if self._monitor else "reject",
            "monitor": "1" if self._monitor else "0",
            "status": "" if self._monitor else str(answer.status),
            "snapshot_version": str(getattr(self.store.snapshot, "version", "")),
            "attest": "",
            "verstat": "",
            "shaken_reason": "",
            "matched_by": "",
        }
        if self._mode is not None:
            rec["mode"] = self._mode
        if _log.isEnabledFor(logging.WARNING):
            _log.warning(json.dumps(rec, separators=(",", ":")))
        if self.records is not None:
            try:
                self.records.append(rec)
            except Exception:  # a full queue must never fail a call
                self.metrics.records_dropped_children["error"].inc()
        return None if self._monitor else answer

    def _raw_fields(self, req: Request, call_id: str, provider: str) -> dict[str, str]:
        """The received strings of a record, each clipped to its configured size
        (`records.max_call_id` / `records.max_header`, ending in `…[+N]`), the
        cut counted by field."""
        cfg = self.config
        cap_id = cfg.records_max_call_id
        cap_hdr = cfg.records_max_header
        frm = req.from_
        # Field names of proxy/records/schema.py FIELDS; every value a str (XADD).
        raw: dict[str, str] = {
            "call_id": call_id,
            "provider": provider,
            "caller_raw": _text(frm.user or frm.uri),
            "callee_raw": _text(uri_user(req.ruri)[1] or req.ruri),
            "pai": _text(b", ".join(req.header(b"p-asserted-identity"))),
            "from": _text(frm.raw),
            "identity": _text(b", ".join(req.header(b"identity"))),
        }
        cut = self.metrics.records_truncated_children
        for k, v in raw.items():
            limit = cap_id if k == "call_id" else cap_hdr
            if 0 < limit < len(v):
                raw[k] = clip(v, limit)
                cut[k].inc()
        return raw

    # -- the block path: records and the JSON log line ------------------------

    def _record(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        facts: CallFacts,
        verdict: Verdict,
        action: str,
        snap: Any,
        now: float,
        *,
        rule: Rule | None = None,
        answer: Answer | None = None,
        log: bool = True,
    ) -> None:
        """Build the decision record (the record path only: blocked,
        would-block, monitor, sampled allows), log it, queue it.

        The raw strings are read from the request here, not on the allow
        path; every string received from the network is clipped to its
        configured size (`records.max_call_id` / `records.max_header`),
        ending in `…[+N]`, and the cut is counted by field.
        """
        r = rule or verdict.rule
        ip, port = src[0], src[1]
        raw = self._raw_fields(req, facts.call_id, facts.provider or "")
        rec: dict[str, str] = {
            "ts": _iso_ms(now),
            "call_id": raw["call_id"],
            "source": f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
            "transport": transport,
            "provider": raw["provider"],
            "ocn": facts.ocn or "",
            "caller": facts.caller or "",
            "callee": facts.callee or "",
            "caller_raw": raw["caller_raw"],
            "callee_raw": raw["callee_raw"],
            "caller_private": "1" if facts.caller_private else "0",
            "pai": raw["pai"],
            "from": raw["from"],
            "identity": raw["identity"],
            "rule": r.label,
            "citation": r.citation,
            "reason": verdict.reason,
            "detail": verdict.detail,
            "action": action,
            "monitor": "1" if self._monitor else "0",
            "status": str(answer.status) if answer is not None else "",
            "snapshot_version": str(getattr(snap, "version", "")),
            "attest": facts.attest or "",
            "verstat": facts.verstat or "",
            "shaken_reason": facts.shaken_reason,
            "matched_by": "signature"
            if verdict.by_signature
            else ("trunk" if r in _PROVIDER_RULES else ""),
        }
        if self._mode is not None:
            rec["mode"] = self._mode
        if log and action != "allow" and _log.isEnabledFor(logging.INFO):
            _log.info(json.dumps(rec, separators=(",", ":")))
        if self.records is not None:
            try:
                self.records.append(rec)
            except Exception:  # a failing writer must never fail a call
                self.metrics.records_dropped_children["error"].inc()
