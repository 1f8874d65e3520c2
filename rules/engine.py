"""The screening decision: one call's facts against the in-memory snapshot.

How this works: :func:`decide` walks the rules in a fixed order and returns
at the first one that decides (docs/DESIGN.md, README "What happens to a
call"):

1. emergency (47 CFR 64.1200(k)(5): a provider may not block an emergency
   call placed to 911): a call TO 911, 933, a configured PSAP number, or
   ``urn:service:sos`` and its ``urn:service:sos.*`` sub-services (RFC 5031;
   the callee comes from the Request-URI only) is allowed before anything
   else. A call FROM a number on the emergency-caller list (PSAPs and
   government emergency numbers; 47 CFR 64.1200(k)(6): all reasonable
   efforts not to block them) is allowed too, with its own reason;
2. provider gates no caller ID can lift, about the provider the call is
   received from directly:
   a. a provider that cannot be judged (the source maps to no provider, or
      the provider has no RMD identity: no ``provider:<id>`` record or
      ``rmd_status`` "unknown"): the ``unmapped_provider_policy`` decides,
      ``block`` (rule ``unmapped_provider``, 47 CFR 64.6305(g)) or
      ``monitor`` (allowed, counted as would-block ``unmapped_provider``);
   b. RMD gate: the provider is not in the Robocall Mitigation Database
      (removed by an FCC order, absent from the export in force, or never
      filed; the reason says which): 47 CFR 64.6305(g) forbids accepting its
      calls directly; certification is 47 CFR 64.6305(d)-(f);
   c. Final Determination Order (47 CFR 64.1200(n)(3)): all traffic received
      directly from the named provider is blocked from the 30th day after
      the order's release (rules/orders.py); before that, would-block;
3. operator allowlist (an entry past its expiry no longer allows): exempts
   the caller from steps 4-6, never from 1-2. A pass it grants over a rule
   of 4-6 that would otherwise have blocked is an ALLOWLIST verdict whose
   ``would_block`` names that rule (the proxy counts it in
   ``sipscreen_allowlist_overrides_total``). It exempts the number it lists,
   not the other numbers the call shows: one of those on a number list (step
   5b) still blocks unless it is allowlisted too (``_others_listed``);
4. do-not-originate (47 CFR 64.1200(o), mandatory since 2025-12-15): invalid
   NANP number, unallocated area code / NPA-NXX (only when NANPA data is
   loaded), inbound-only number;
5. operator block lists: caller, longest caller prefix; (5b) the same number
   lists (and the inbound-only DNO list) against the call's other identities
   (``facts.other_callers``: a second P-Asserted-Identity, From when a PAI
   gave the caller ID, the global number a local number's phone-context
   names, the numbers other readers find in a user part: before an escaped
   delimiter or any character a number cannot hold, or its digits alone; a
   number written in a display name; an ISUP body's calling numbers), each a
   block with its list's rule and a reason naming the number, because a
   softswitch may show that number;
   then provider; then the
   STIR/SHAKEN attestation policy of the upstream provider (``[shaken]``
   policy, operator policy: unsigned / C-attested / failed verification,
   each "pass" by default, "mark" (forwarded with a mark header: never a
   block, ``shaken_mark``) or "block"; rules/shaken.py AttestationPolicy;
   a call whose certificate is pending is not judged);
6. notices: k4 bad actor (47 CFR 64.1200(k)(4), rules/k4.py: the notified
   provider failed to mitigate within 48 hours, or failed to implement
   effective measures, and we notified the FCC with a summary of the basis
   on or after that trigger), then n2 campaign (47 CFR 64.1200(n)(2): the caller ID matches a
   campaign the notice identified, from that provider);
7. default: allowed.

Providers tied to OCNs (issue 11): when the call's STIR/SHAKEN Identity
verified, ``facts.ocn`` is the signer's OCN and ``Snapshot.ocn_provider``
names the provider that signed it. If that is not the provider the call came
from, the signer's FDOs (2c, after the trunk's), its provider-blocklist entry
(5) and its notices (6, after the trunk's) apply too, with the same rule,
citation and answer; the verdict says "matched by signature" and carries
``by_signature`` (``_by_signature``). An unsigned call pays one ``is None``
test for this.

A call without a usable caller ID skips the caller rules (3-5 and n2). A
caller asking for Privacy (RFC 3323) is still screened by number: privacy
hides the identity from the callee, not from the carrier.

Rules tied to a provider marked ``monitor_only`` (2a-c, 6) do not block: the
verdict allows and names the rule in ``would_block``. So does a k4 notice
whose deadline has not passed or whose FCC notification is not recorded,
and an FDO before its 30th day. A would-block never stops the walk: a later
rule that blocks still blocks (a monitor-only provider's call from an
invalid number is blocked by DNO); otherwise the first would-block is the
verdict, except that the ``monitor`` policy's ``unmapped_provider``
would-block (a configuration state) yields to any other would-block and to
an allowlist pass.

The common allow path allocates nothing: it returns a pre-built
:class:`~rules.verdict.Verdict`. Verdicts naming a prefix, provider, order
or notice are built once and cached (``functools.lru_cache``).

:func:`explain` evaluates every rule independently (no early return) for
``sipscreen check``; ``tests/unit/test_rules_engine.py`` checks that its
first deciding rule is always the one :func:`decide` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from rules.facts import CallFacts
from rules.k4 import k4_check, k4_verdict
from rules.numbers import EMERGENCY_DEFAULT, nanp_invalid_reason
from rules.snapshot import RMD_BLOCKING, Notice, Order, Provider, Snapshot
from rules.verdict import (
    ALLOW_DEFAULT,
    ALLOW_EMERGENCY,
    ALLOW_EMERGENCY_CALLER,
    ALLOW_LISTED,
    ALLOW_UNMAPPED_SOURCE,
    BLOCK_CALLER,
    BLOCK_DNO_INBOUND_ONLY,
    BLOCK_UNMAPPED_SOURCE,
    Rule,
    Verdict,
)

__all__ = [
    "Check",
    "decide",
    "decide_update",
    "explain",
    "is_emergency_callee",
    "is_emergency_caller",
    "shaken_mark",
]


@dataclass(slots=True)
class Check:
    """One rule as :func:`explain` saw it: did its condition match, and why.

    For the provider gates (step 2) ``matched`` means "blocks": a gate that
    only would block (monitor) is not a match, and its ``why`` says so.
    """

    rule: Rule
    matched: bool
    why: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SOS = "urn:service:sos"


def is_emergency_callee(snap: Snapshot, callee: str) -> bool:
    """Step 1: 911, 933, a configured PSAP number, ``urn:service:sos`` or one of
    its sub-services ``urn:service:sos.<x>`` (RFC 5031 §4.2; the facts give
    the URN lowercased)."""
    if callee in snap.emergency or callee in EMERGENCY_DEFAULT:
        return True
    return callee.startswith(_SOS) and (len(callee) == 15 or callee[15] == ".")


def is_emergency_caller(snap: Snapshot, caller: str) -> bool:
    """Step 1: ``caller`` on the emergency-caller lists (PSAPs, government
    emergency numbers: config ``emergency_callers`` and ``emergency:caller``;
    47 CFR 64.1200(k)(6))."""
    key = _number_key(caller)
    return key in snap.emergency_caller_config or key in snap.emergency_caller


def _number_key(caller: str) -> int | str:
    """The caller as the number sets look it up: E.164 as an int, else the str."""
    body = caller[1:]
    if caller[:1] == "+" and body.isdigit() and body.isascii() and body[0] != "0":
        return int(body)
    return caller


def _unexpired(snap: Snapshot, caller: str, now: float) -> bool:
    """``caller``'s allowlist entry has no expiry, or has not reached it."""
    expires = snap.allow_expiry.get(caller)
    return expires is None or now < expires


def _listed(snap: Snapshot, number: str) -> Verdict | None:
    """``number`` on the inbound-only DNO list, the caller blocklist or the prefix
    blocklist (the number lists of steps 4-5): that list's verdict, else None."""
    key = _number_key(number)
    if key in snap.dno_caller:
        return BLOCK_DNO_INBOUND_ONLY
    if key in snap.block_caller:
        return BLOCK_CALLER
    prefix = snap.block_prefix.longest_match(number) if snap.block_prefix.lengths else None
    return None if prefix is None else _prefix_verdict(prefix)


def _other_identity_verdict(snap: Snapshot, other: str, caller: str | None) -> Verdict | None:
    """Step 5b: ``other``, a number another identity of the call names (rules/facts.py
    ``other_callers``: another identity header, or a local number's phone-context),
    on the inbound-only DNO list or an operator blocklist: the verdict of that
    list, naming the number.
    Only the lists: a From that is not a valid number (``anonymous``, a PBX
    extension) is common on legitimate calls whose P-Asserted-Identity is real."""
    base = _listed(snap, other)
    if base is None:
        return None
    also = (
        "another identity of the call (From behind a P-Asserted-Identity, a second "
        f"P-Asserted-Identity, a local number's phone-context (RFC 3966 §5.1.5), a "
        f"user part read another way (an escaped delimiter, RFC 3261 §19.1.2; a "
        f"character a number cannot hold; its digits alone), or a number written in "
        f"a display name) is {other}"
    )
    if caller is not None:
        also += f"; the caller ID screened first was {caller}"
    return Verdict(True, base.rule, f"{base.reason} ({also})", detail=f"identity:{other}")


def _allowlisted(snap: Snapshot, number: str, now: float) -> bool:
    """``number`` has an allowlist entry that has not expired."""
    return _number_key(number) in snap.allow_caller and _unexpired(snap, number, now)


def _others_listed(snap: Snapshot, facts: CallFacts, caller: str, now: float) -> Verdict | None:
    """Step 5b under an allowlisted caller ID: the first other identity of the call
    on a number list that is not allowlisted itself, as a block. The allowlist
    vouches for the number it lists; a call that also shows a blocked number
    (a From behind the allowlisted P-Asserted-Identity, a number in the
    display name) would otherwise put that number on the callee's phone on
    the strength of another's entry."""
    for other in facts.other_callers:
        v = _other_identity_verdict(snap, other, caller)
        if v is not None and not _allowlisted(snap, other, now):
            why = f"{v.reason}; {caller}'s allowlist entry exempts {caller}, not {other}"
            return Verdict(True, v.rule, why, detail=v.detail)
    return None


def _provider_name(provider_id: str, name: str) -> str:
    return f"provider '{provider_id}'" + (f" ({name})" if name and name != provider_id else "")


# -- cached verdict builders (rare paths) ----------------------------------


@lru_cache(maxsize=4096)
def _prefix_verdict(prefix: str) -> Verdict:
    return Verdict(
        True,
        Rule.PREFIX_BLOCK,
        f"caller matches blocked prefix {prefix} on the operator's prefix blocklist",
        detail=prefix,
    )


@lru_cache(maxsize=256)
def _dno_invalid_verdict(why: str) -> Verdict:
    return Verdict(
        True,
        Rule.DNO_INVALID,
        f"caller ID is not a valid NANP number ({why}); "
        "47 CFR 64.1200(o) permits blocking calls from invalid numbers",
        detail=why,
    )


@lru_cache(maxsize=4096)
def _dno_unallocated_verdict(code: str) -> Verdict:
    what = "area code" if len(code) == 3 else "NPA-NXX"
    return Verdict(
        True,
        Rule.DNO_UNALLOCATED,
        f"caller ID {what} {code} is not allocated according to NANPA data; "
        "47 CFR 64.1200(o) permits blocking calls from unallocated numbers",
        detail=code,
    )


@lru_cache(maxsize=4096)
def _provider_block_verdict(provider_id: str) -> Verdict:
    return Verdict(
        True,
        Rule.PROVIDER_BLOCK,
        f"provider '{provider_id}' is on the operator's provider blocklist",
        detail=provider_id,
    )


_SHAKEN_WHAT = {
    "unsigned": "carries no Identity header (unsigned)",
    "c_attested": "is C-attested (gateway attestation, RFC 8588)",
    "failed": "failed STIR/SHAKEN verification",
}


def _shaken_case(provider_id: str, kind: str, why: str) -> str:
    """'call from <who> <what the attestation case is>', as both policy verdicts say it."""
    who = f"provider '{provider_id}'" if provider_id else "an unmapped source"
    return f"call from {who} " + _SHAKEN_WHAT[kind] + (f" ({why})" if kind == "failed" else "")


@lru_cache(maxsize=4096)
def _shaken_verdict(provider_id: str, kind: str, why: str) -> Verdict:
    return Verdict(
        True,
        Rule.SHAKEN_POLICY,
        f"{_shaken_case(provider_id, kind, why)}; the operator's attestation policy for it is "
        f"{kind} = block (operator policy, not a CFR requirement)",
        detail=f"{kind}:{why}" if kind == "failed" else kind,
    )


def _shaken_kind(facts: CallFacts) -> str | None:
    """Which attestation policy case a call is: unsigned, c_attested, failed or None."""
    verstat = facts.verstat
    if verstat == "TN-Validation-Passed":
        return "c_attested" if facts.attest == "C" else None
    if verstat == "TN-Validation-Failed":
        return "failed"
    if facts.shaken_reason == "unsigned":
        return "unsigned"
    return None  # not verified ([shaken] off) or certificate pending


_NO_MARK = (Rule.EMERGENCY, Rule.ALLOWLIST)


@lru_cache(maxsize=4096)
def _mark_verdict(provider_id: str, kind: str, why: str) -> Verdict:
    return Verdict(
        False,
        Rule.SHAKEN_POLICY,
        f"{_shaken_case(provider_id, kind, why)}; the operator's attestation policy for it is "
        f"{kind} = mark: forwarded with the mark header, not blocked "
        "(operator policy, not a CFR requirement)",
        detail=f"mark:{kind}:{why}" if kind == "failed" else f"mark:{kind}",
    )


def shaken_mark(snap: Snapshot, facts: CallFacts, verdict: Verdict) -> Verdict | None:
    """The attestation policy's "mark" for a call forwarded with ``verdict``, or None.

    Never blocking (``blocked`` is False): the screening glue adds the mark
    header to the forwarded INVITE, counts and records it. ``decide`` never
    returns it (a mark does not stop the rules after it: a notice still
    blocks). An emergency call (47 CFR 64.1200(k)(5)/(k)(6)) and an
    allowlisted caller (exempt from step 5) are never marked.
    """
    policies = snap.shaken_policy
    if not policies or facts.verstat is None or verdict.rule in _NO_MARK:
        return None
    provider = facts.provider
    pol = policies.get(provider or "") or policies.get("")
    if pol is None:
        return None
    kind = _shaken_kind(facts)
    if kind is None or getattr(pol, kind) != "mark":
        return None
    return _mark_verdict(provider or "", kind, facts.shaken_reason)


def _shaken_policy(snap: Snapshot, provider: str | None, facts: CallFacts) -> Verdict | None:
    """Step 5, last: the provider's attestation policy, or None."""
    policies = snap.shaken_policy
    pol = policies.get(provider or "") or policies.get("")
    if pol is None:
        return None
    kind = _shaken_kind(facts)
    if kind is None or getattr(pol, kind) != "block":
        return None
    return _shaken_verdict(provider or "", kind, facts.shaken_reason)


@lru_cache(maxsize=4096)
def _rmd_verdict(
    provider_id: str, name: str, status: str, monitor_only: bool, order: str = "", since: str = ""
) -> Verdict:
    # The reason says which way the provider fails the gate: an FCC removal
    # order, missing from the export in force, or never filed.
    who = _provider_name(provider_id, name)
    if status == "removed":
        state = "was removed from the Robocall Mitigation Database"
        state += f" by order {order}" if order else " (no order named)"
        state += f" on {since}" if since else ""
    elif status == "absent":
        state = "is absent from the Robocall Mitigation Database export"
        state += f" (since the export of {since}; no removal order recorded)" if since else ""
    else:
        state = "is not in the Robocall Mitigation Database (never filed)"
    reason = (
        f"{who} {state}; 47 CFR 64.6305(g) requires refusing traffic received directly from "
        "a provider whose certification (47 CFR 64.6305(d)-(f)) is not in the RMD"
    )
    # detail (the record's "notice or order id"): the removal order when one
    # is recorded, else the provider
    detail = order if status == "removed" and order else provider_id
    if monitor_only:
        return Verdict(
            False,
            Rule.DEFAULT,
            "monitor only, allowed: " + reason,
            detail=detail,
            would_block=Rule.RMD_GATE,
        )
    return Verdict(True, Rule.RMD_GATE, reason, detail=detail)


@lru_cache(maxsize=4096)
def _unjudged_verdict(
    provider_id: str, name: str, why: str, block: bool, monitor_only: bool
) -> Verdict:
    reason = (
        f"{_provider_name(provider_id, name)} {why}, so its RMD filing cannot be "
        "checked; 47 CFR 64.6305(g) permits accepting calls directly only from "
        "providers in the Robocall Mitigation Database"
    )
    if block and not monitor_only:
        return Verdict(
            True,
            Rule.UNMAPPED_PROVIDER,
            reason + " (unmapped_provider_policy = block)",
            detail=provider_id,
        )
    head = "monitor only" if block else "unmapped_provider_policy = monitor"
    return Verdict(
        False,
        Rule.DEFAULT,
        f"{head}, allowed: {reason}",
        detail=provider_id,
        would_block=Rule.UNMAPPED_PROVIDER,
    )


_NO_RECORD = "has no provider record"
_NO_RMD_ID = "has no RMD identity (rmd_status unknown)"


def _gate_unjudged(snap: Snapshot, provider: str, prov: Provider | None) -> Verdict:
    block = snap.unmapped_provider_policy == "block"
    if prov is None:
        return _unjudged_verdict(provider, "", _NO_RECORD, block, False)
    return _unjudged_verdict(provider, prov.name, _NO_RMD_ID, block, prov.monitor_only)


@lru_cache(maxsize=4096)
def _fdo_verdict(
    order_id: str,
    document: str,
    provider_id: str,
    name: str,
    blocks_from: float,
    in_force: bool,
    monitor_only: bool,
) -> Verdict:
    who = _provider_name(provider_id, name)
    if in_force:
        reason = (
            f"Final Determination Order {document} (order {order_id}) against {who}: "
            "47 CFR 64.1200(n)(3) requires blocking all traffic received directly from it "
            f"beginning 30 days after the order's release ({_iso(blocks_from)})"
        )
        if monitor_only:
            return Verdict(
                False,
                Rule.DEFAULT,
                "monitor only, allowed: " + reason,
                detail=order_id,
                would_block=Rule.FDO,
            )
        return Verdict(True, Rule.FDO, reason, detail=order_id)
    reason = (
        f"allowed: Final Determination Order {document} (order {order_id}) against {who} "
        f"blocks all its traffic from {_iso(blocks_from)} (00:00 US Eastern, the 30th day "
        "after release; 47 CFR 64.1200(n)(3))"
    )
    return Verdict(False, Rule.DEFAULT, reason, detail=order_id, would_block=Rule.FDO)


@lru_cache(maxsize=4096)
def _allow_over_verdict(over: Verdict) -> Verdict:
    """The allowlist's pass over a rule of steps 4-6 that would have blocked."""
    rule = over.rule
    return Verdict(
        False,
        Rule.ALLOWLIST,
        f"caller is on the operator's allowlist; allowed over rule {rule.label} "
        f"({rule.citation}), which would otherwise block: {over.reason}",
        detail=over.detail,
        would_block=rule,
    )


@lru_cache(maxsize=4096)
def _by_signature(v: Verdict, ocn: str, trunk: str) -> Verdict:
    """``v`` (a provider rule about the provider that signed the call) marked
    as matched by signature: same rule, citation and answer."""
    via = f"provider '{trunk}'" if trunk else "an unmapped source"
    return Verdict(
        v.blocked,
        v.rule,
        f"{v.reason}; matched by signature: it signed this call (verified STIR/SHAKEN "
        f"Identity, OCN {ocn}), received through {via}",
        detail=v.detail,
        would_block=v.would_block,
        by_signature=True,
    )


def _signer(snap: Snapshot, facts: CallFacts | None, provider: str | None) -> str | None:
    """The provider tied to the verified signer's OCN, when not the trunk's own."""
    if facts is None or facts.ocn is None:
        return None
    signer = snap.ocn_provider.get(facts.ocn)
    return None if signer == provider else signer


@lru_cache(maxsize=4096)
def _n2_verdict(
    notice_id: str, provider_id: str, name: str, campaign: str, monitor_only: bool
) -> Verdict:
    reason = (
        f"caller matches campaign {campaign} identified by notice {notice_id} against "
        f"{_provider_name(provider_id, name)}; 47 CFR 64.1200(n)(2) requires blocking "
        "the identified and substantially similar traffic"
    )
    detail = f"{notice_id}:{campaign}"
    if monitor_only:
        return Verdict(
            False,
            Rule.DEFAULT,
            "monitor only, allowed: " + reason,
            detail=detail,
            would_block=Rule.NOTICE_N2,
        )
    return Verdict(True, Rule.NOTICE_N2, reason, detail=detail)


def _n2_match(notice: Notice, caller: str, now: float) -> str | None:
    if now < notice.issued:
        return None
    for campaign in notice.campaigns:
        # A campaign entry is a full E.164 number or a prefix of one.
        if caller.startswith(campaign):
            return campaign
    return None


# -- the decision ------------------------------------------------------------


def _caller_dno(snap: Snapshot, caller: str) -> Verdict | None:
    """DNO verdict for a +1 caller (47 CFR 64.1200(o)), or None."""
    why = nanp_invalid_reason(caller)
    if why is not None:
        return _dno_invalid_verdict(why)
    npa_set = snap.nanpa_npa
    if npa_set:
        npa = caller[2:5]
        if npa not in npa_set:
            return _dno_unallocated_verdict(npa)
    nxx_set = snap.nanpa_nxx
    if nxx_set:
        # Only for NPAs the loaded NPA-NXX data covers: NANPA's central office
        # code files hold US codes; Canadian codes are administered by CNA.
        npa = caller[2:5]
        if npa in snap.nanpa_nxx_npa:
            code = caller[2:8]
            if code not in nxx_set:
                return _dno_unallocated_verdict(code)
    return None


def _fdo_rules(
    snap: Snapshot, orders: list[Order], prov: Provider | None, now: float
) -> Verdict | None:
    """Step 2c: a blocking FDO verdict first, else the first would-block, else None."""
    name = prov.name if prov is not None else ""
    monitor_only = prov.monitor_only if prov is not None else False
    pending: Verdict | None = None
    for o in orders:
        v = _fdo_verdict(
            o.id, o.order, o.provider, name, o.blocks_from, now >= o.blocks_from, monitor_only
        )
        if v.blocked:
            return v
        if pending is None:
            pending = v
    return pending


def _notice_rules(
    snap: Snapshot, notices: list[Notice], provider_id: str, caller: str | None, now: float
) -> Verdict | None:
    """Step 6 (k4, then n2): a blocking verdict first, else the first would-block
    verdict, else None."""
    prov: Provider | None = snap.providers.get(provider_id)
    name = prov.name if prov is not None else ""
    monitor_only = prov.monitor_only if prov is not None else False
    pending: Verdict | None = None
    for notice in notices:
        if notice.kind != "k4":
            continue
        k4v = k4_verdict(notice, provider_id, name, monitor_only, now)  # rules/k4.py
        if k4v is None:
            continue
        if k4v.blocked:
            return k4v
        if pending is None:
            pending = k4v
    if caller is not None:
        for notice in notices:
            if notice.kind != "n2":
                continue
            campaign = _n2_match(notice, caller, now)
            if campaign is not None:
                v = _n2_verdict(notice.id, provider_id, name, campaign, monitor_only)
                if v.blocked:
                    return v
                if pending is None:
                    pending = v
    return pending


def _after_allowlist(
    snap: Snapshot,
    caller: str | None,
    key: int | str,
    provider: str | None,
    now: float,
    facts: CallFacts | None = None,
) -> Verdict | None:
    """Steps 4-6: the first blocking verdict, else the first would-block, else None."""
    if caller is not None:
        # 4. 47 CFR 64.1200(o): do-not-originate.
        if caller[:2] == "+1":
            dno = _caller_dno(snap, caller)
            if dno is not None:
                return dno
        if key in snap.dno_caller:
            return BLOCK_DNO_INBOUND_ONLY
        # 5. Operator policy: caller and prefix blocklists.
        if key in snap.block_caller:
            return BLOCK_CALLER
        block_prefix = snap.block_prefix
        if block_prefix.lengths:
            prefix = block_prefix.longest_match(caller)
            if prefix is not None:
                return _prefix_verdict(prefix)
    if facts is not None and facts.other_callers:
        # 5b. The same number lists against the call's other identities.
        for other in facts.other_callers:
            v = _other_identity_verdict(snap, other, caller)
            if v is not None:
                return v
    if provider is not None:
        # 5. Operator policy: provider blocklist.
        if provider in snap.block_provider:
            return _provider_block_verdict(provider)
    ocn = facts.ocn if facts is not None else None
    signer = None if ocn is None else _signer(snap, facts, provider)  # unsigned: None
    if signer is not None and signer in snap.block_provider:
        return _by_signature(_provider_block_verdict(signer), ocn or "", provider or "")
    # 5. Operator policy: STIR/SHAKEN attestation ([shaken] on and a policy set).
    if snap.shaken_policy and facts is not None and facts.verstat is not None:
        v = _shaken_policy(snap, provider, facts)
        if v is not None:
            return v
    out: Verdict | None = None
    if provider is not None:
        # 6. Notices (47 CFR 64.1200(k)(4), (n)(2)).
        notices = snap.notices.get(provider)
        if notices:
            out = _notice_rules(snap, notices, provider, caller, now)
            if signer is None or (out is not None and out.blocked):
                return out
    if signer is not None:
        # 6. The signer's notices, matched by signature.
        notices = snap.notices.get(signer)
        if notices:
            v = _notice_rules(snap, notices, signer, caller, now)
            if v is not None and (v.blocked or out is None):
                return _by_signature(v, ocn or "", provider or "")
    return out


def decide(snap: Snapshot, facts: CallFacts, now: float) -> Verdict:
    """The verdict for one call; ``now`` is UNIX epoch seconds."""
    # 1. Emergency, 47 CFR 64.1200(k)(5): never blocked, whatever else matches.
    # (is_emergency_callee and _number_key inlined: the hot path.)
    callee = facts.callee
    if callee is not None and (
        callee in snap.emergency
        or callee in EMERGENCY_DEFAULT
        or (callee.startswith(_SOS) and (len(callee) == 15 or callee[15] == "."))
    ):
        return ALLOW_EMERGENCY
    caller = facts.caller
    key: int | str = ""
    if caller is not None:
        # Parse the number once for every number set (E.164 as an int;
        # anything else is looked up as a string and simply never matches).
        body = caller[1:]
        key = caller
        if caller[:1] == "+" and body.isdigit() and body.isascii() and body[0] != "0":
            key = int(body)
        # 47 CFR 64.1200(k)(6): calls from PSAPs / government emergency numbers.
        # (NumberSet.__contains__ is Python code, ~0.2 µs: skipped while the
        # Redis set is empty, read from its own slots.)
        ec = snap.emergency_caller
        if key in snap.emergency_caller_config or (
            (ec._added or ec._cap) and key in ec  # noqa: SLF001
        ):
            return ALLOW_EMERGENCY_CALLER

    # 2. Provider gates (47 CFR 64.6305(g), 64.1200(n)(3)): no allowlist lifts them.
    # `pending`: the first would-block of a gate; `unjudged`: the would-block of
    # an unjudgeable provider under the monitor policy, a configuration state
    # that any more specific would-block (or allowlist pass) outranks.
    pending: Verdict | None = None
    unjudged: Verdict | None = None
    provider = facts.provider
    if provider is None:
        if snap.unmapped_provider_policy == "block":
            return BLOCK_UNMAPPED_SOURCE
        unjudged = ALLOW_UNMAPPED_SOURCE
    else:
        prov = snap.providers.get(provider)
        if prov is None or prov.rmd_status == "unknown":
            unjudged = _gate_unjudged(snap, provider, prov)
            if unjudged.blocked:
                return unjudged
        elif prov.rmd_status in RMD_BLOCKING:  # 47 CFR 64.6305(g)
            pending = _rmd_verdict(
                provider,
                prov.name,
                prov.rmd_status,
                prov.monitor_only,
                prov.rmd_order,
                prov.rmd_since,
            )
            if pending.blocked:
                return pending
        orders = snap.orders.get(provider)
        if orders:
            v = _fdo_rules(snap, orders, prov, now)
            if v is not None:
                if v.blocked:
                    return v
                if pending is None:
                    pending = v
    ocn = facts.ocn
    if ocn is not None:
        # 2c. An order against the provider that SIGNED the call (verified OCN).
        signer = snap.ocn_provider.get(ocn)
        if signer is not None and signer != provider:
            orders = snap.orders.get(signer)
            if orders:
                v = _fdo_rules(snap, orders, snap.providers.get(signer), now)
                if v is not None:
                    v = _by_signature(v, ocn, provider or "")
                    if v.blocked:
                        return v
                    if pending is None:
                        pending = v

    # 3. Operator allowlist: exempts from 4-6; a pass over a rule is counted.
    if caller is not None and key in snap.allow_caller and _unexpired(snap, caller, now):
        if facts.other_callers:
            v = _others_listed(snap, facts, caller, now)
            if v is not None:
                return v  # another number the call shows is listed: not exempt
        if pending is not None:
            return pending  # a gate's would-block outranks the allowlist
        over = _after_allowlist(snap, caller, key, provider, now, facts)
        if over is not None and over.blocked:
            return _allow_over_verdict(over)
        return unjudged if unjudged is not None else ALLOW_LISTED

    # 4-6. DNO, operator block lists, notices.
    v = _after_allowlist(snap, caller, key, provider, now, facts)
    if v is not None and v.blocked:
        return v
    if pending is not None:
        return pending
    if v is not None:
        return v
    return unjudged if unjudged is not None else ALLOW_DEFAULT


def decide_update(snap: Snapshot, facts: CallFacts, now: float) -> Verdict:
    """The verdict on the identities an in-dialog UPDATE presents (RFC 3311) that
    the dialog's stamp does not prove it was set up with (proxy/sip/core.py).

    An UPDATE can change the caller ID a phone shows while it rings or during
    the call (RFC 4916 §4 connected identity: From; P-Asserted-Identity, which
    Asterisk's trust_connected_line and most phones honour), so a blocked
    number must not arrive that way. Its caller ID and other identities
    (``facts.caller``, ``facts.other_callers``) are checked against the number
    lists every identity of the INVITE was checked against (steps 4-5 and 5b:
    inbound-only DNO, caller and prefix blocklists), after the exemptions of a
    call (an emergency caller ID, 47 CFR 64.1200(k)(6), passes the UPDATE; an
    allowlisted number is exempt itself, as in ``decide``, not the others).
    Only those lists: an UPDATE that repeats the identities the call was
    admitted with (a session refresh, RFC 4028) is then never refused, while
    validity rules such as DNO invalid-number (which the From behind a
    P-Asserted-Identity never faced) or the attestation policy (an UPDATE is
    not signed, RFC 8224 §4) would refuse lawful refreshes. Refusing an UPDATE
    leaves the call as it was (RFC 3311 §5.2): it blocks no call, emergency
    calls included."""
    caller = facts.caller
    if caller is not None and is_emergency_caller(snap, caller):
        return ALLOW_EMERGENCY_CALLER
    for number in (caller, *facts.other_callers) if caller is not None else facts.other_callers:
        base = _listed(snap, number)
        if base is not None and not _allowlisted(snap, number, now):
            why = (
                f"{base.reason} (an in-dialog UPDATE presented {number} as the caller's "
                "identity, which the call was not admitted with; RFC 3311, RFC 4916 §4)"
            )
            return Verdict(True, base.rule, why, detail=f"update:{number}")
    if caller is not None and _allowlisted(snap, caller, now):
        return ALLOW_LISTED
    return ALLOW_DEFAULT


# -- explain (sipscreen check) -------------------------------------------------


def explain(snap: Snapshot, facts: CallFacts, now: float) -> list[Check]:
    """Every rule, in decision order, with whether it matched and why."""
    checks: list[Check] = []
    caller, callee, provider = facts.caller, facts.callee, facts.provider
    key = _number_key(caller) if caller is not None else ""

    # 1. emergency: to 911/933/PSAP/urn:service:sos (k)(5), from an emergency caller (k)(6)
    if callee is not None and is_emergency_callee(snap, callee):
        checks.append(
            Check(
                Rule.EMERGENCY,
                True,
                f"callee {callee} is an emergency number or service; "
                "47 CFR 64.1200(k)(5): never blocked",
            )
        )
    elif caller is not None and is_emergency_caller(snap, caller):
        checks.append(
            Check(
                Rule.EMERGENCY,
                True,
                f"caller {caller} is on the emergency-caller list (PSAP / government "
                "emergency number); 47 CFR 64.1200(k)(6): all reasonable efforts not to block",
            )
        )
    else:
        to = f"callee {callee} is not an emergency number" if callee else "no usable callee"
        frm = f"caller {caller} is not an emergency caller" if caller else "no usable caller ID"
        checks.append(Check(Rule.EMERGENCY, False, f"{to}; {frm}"))

    # 2a. provider that cannot be judged (unmapped_provider_policy)
    prov = snap.providers.get(provider) if provider is not None else None
    policy = snap.unmapped_provider_policy
    if provider is None:
        v = BLOCK_UNMAPPED_SOURCE if policy == "block" else ALLOW_UNMAPPED_SOURCE
        checks.append(Check(Rule.UNMAPPED_PROVIDER, v.blocked, v.reason))
    elif prov is None or prov.rmd_status == "unknown":
        v = _gate_unjudged(snap, provider, prov)
        checks.append(Check(Rule.UNMAPPED_PROVIDER, v.blocked, v.reason))
    else:
        checks.append(
            Check(
                Rule.UNMAPPED_PROVIDER,
                False,
                f"'{provider}' has an RMD identity ({prov.rmd_status})",
            )
        )

    # 2b. RMD gate
    if provider is None:
        checks.append(
            Check(Rule.RMD_GATE, False, "upstream provider unknown (see unmapped_provider)")
        )
    elif prov is None:
        checks.append(
            Check(Rule.RMD_GATE, False, f"'{provider}' has no provider record; RMD status unknown")
        )
    elif prov.rmd_status in RMD_BLOCKING:
        v = _rmd_verdict(
            provider, prov.name, prov.rmd_status, prov.monitor_only, prov.rmd_order, prov.rmd_since
        )
        checks.append(Check(Rule.RMD_GATE, v.blocked, v.reason))
    else:
        checks.append(Check(Rule.RMD_GATE, False, f"RMD status of '{provider}': {prov.rmd_status}"))

    # 2c. Final Determination Orders
    orders = snap.orders.get(provider, []) if provider is not None else []
    if provider is None:
        checks.append(Check(Rule.FDO, False, "upstream provider unknown; no order applies"))
    elif not orders:
        checks.append(Check(Rule.FDO, False, f"no Final Determination Order against '{provider}'"))
    for o in orders:
        in_force = now >= o.blocks_from
        v = _fdo_verdict(
            o.id, o.order, o.provider, prov.name if prov else "", o.blocks_from, in_force,
            prov.monitor_only if prov else False,
        )  # fmt: skip
        checks.append(Check(Rule.FDO, v.blocked, v.reason))
    signer = _signer(snap, facts, provider)
    sprov = snap.providers.get(signer) if signer is not None else None
    ocn, trunk = facts.ocn or "", provider or ""
    for o in snap.orders.get(signer, []) if signer is not None else []:
        v = _fdo_verdict(
            o.id, o.order, o.provider, sprov.name if sprov else "", o.blocks_from,
            now >= o.blocks_from, sprov.monitor_only if sprov else False,
        )  # fmt: skip
        v = _by_signature(v, ocn, trunk)
        checks.append(Check(Rule.FDO, v.blocked, v.reason))

    no_caller = "no usable caller ID; caller rules skipped"
    # 3. allowlist
    if caller is None:
        checks.append(Check(Rule.ALLOWLIST, False, no_caller))
    elif key in snap.allow_caller:
        expires = snap.allow_expiry.get(caller)
        if expires is not None and now >= expires:
            checks.append(
                Check(Rule.ALLOWLIST, False, f"{caller}'s allowlist entry expired {_iso(expires)}")
            )
        else:
            until = "no expiry" if expires is None else f"until {_iso(expires)}"
            why = f"{caller} is allowlisted ({until}); exempt from DNO, block lists, notices"
            others = _others_listed(snap, facts, caller, now) if facts.other_callers else None
            over = _after_allowlist(snap, caller, key, provider, now, facts)
            if others is not None:
                why += f"; not {others.detail.split(':', 1)[1]}, which the call also shows"
            elif over is not None and over.blocked:
                why += f"; passes over {over.rule.label} ({over.rule.citation}), counted"
            checks.append(Check(Rule.ALLOWLIST, True, why))
    else:
        checks.append(Check(Rule.ALLOWLIST, False, f"{caller} is not allowlisted"))

    # 4. DNO
    invalid = nanp_invalid_reason(caller) if caller is not None else None
    if caller is None:
        checks.append(Check(Rule.DNO_INVALID, False, no_caller))
    elif invalid is not None:
        checks.append(Check(Rule.DNO_INVALID, True, _dno_invalid_verdict(invalid).reason))
    elif caller[:2] == "+1":
        checks.append(Check(Rule.DNO_INVALID, False, "structurally valid NANP number"))
    else:
        checks.append(Check(Rule.DNO_INVALID, False, "not a NANP (+1) number; not judged"))

    if caller is None:
        checks.append(Check(Rule.DNO_UNALLOCATED, False, no_caller))
    elif caller[:2] != "+1" or invalid is not None:
        checks.append(Check(Rule.DNO_UNALLOCATED, False, "not a valid NANP number; not judged"))
    elif not snap.nanpa_npa and not snap.nanpa_nxx:
        checks.append(Check(Rule.DNO_UNALLOCATED, False, "NANPA data not loaded; rule off"))
    else:
        dno = _caller_dno(snap, caller)
        if dno is not None:
            checks.append(Check(Rule.DNO_UNALLOCATED, True, dno.reason))
        else:
            checks.append(Check(Rule.DNO_UNALLOCATED, False, "allocated per loaded NANPA data"))

    if caller is None:
        checks.append(Check(Rule.DNO_INBOUND_ONLY, False, no_caller))
    elif key in snap.dno_caller:
        checks.append(Check(Rule.DNO_INBOUND_ONLY, True, BLOCK_DNO_INBOUND_ONLY.reason))
    else:
        checks.append(
            Check(Rule.DNO_INBOUND_ONLY, False, f"{caller} is not on the inbound-only DNO list")
        )

    # 5. operator block lists: caller, prefix, provider
    if caller is None:
        checks.append(Check(Rule.CALLER_BLOCK, False, no_caller))
    elif key in snap.block_caller:
        checks.append(Check(Rule.CALLER_BLOCK, True, BLOCK_CALLER.reason))
    else:
        checks.append(Check(Rule.CALLER_BLOCK, False, f"{caller} is not on the caller blocklist"))

    prefix = snap.block_prefix.longest_match(caller) if caller is not None else None
    if caller is None:
        checks.append(Check(Rule.PREFIX_BLOCK, False, no_caller))
    elif prefix is not None:
        checks.append(Check(Rule.PREFIX_BLOCK, True, _prefix_verdict(prefix).reason))
    else:
        checks.append(Check(Rule.PREFIX_BLOCK, False, "no blocked prefix matches"))

    # 5b. the call's other identities against the same number lists
    for other in facts.other_callers:
        ov = _other_identity_verdict(snap, other, caller)
        if ov is not None:
            checks.append(Check(ov.rule, True, ov.reason))
        else:
            why = f"{other} (another identity of the call) is on no number list"
            checks.append(Check(Rule.CALLER_BLOCK, False, why))

    no_provider = "upstream provider unknown; provider rules skipped"
    if provider is None:
        checks.append(Check(Rule.PROVIDER_BLOCK, False, no_provider))
    elif provider in snap.block_provider:
        checks.append(Check(Rule.PROVIDER_BLOCK, True, _provider_block_verdict(provider).reason))
    else:
        checks.append(
            Check(Rule.PROVIDER_BLOCK, False, f"'{provider}' is not on the provider blocklist")
        )
    if signer is not None and signer in snap.block_provider:
        v = _by_signature(_provider_block_verdict(signer), ocn, trunk)
        checks.append(Check(Rule.PROVIDER_BLOCK, True, v.reason))
    elif signer is not None:
        why = f"signer '{signer}' (OCN {ocn}) is not on the provider blocklist"
        checks.append(Check(Rule.PROVIDER_BLOCK, False, why))

    # 5. STIR/SHAKEN attestation policy (operator policy)
    shaken_v = _shaken_policy(snap, provider, facts) if facts.verstat is not None else None
    if shaken_v is not None:
        checks.append(Check(Rule.SHAKEN_POLICY, True, shaken_v.reason))
    elif facts.verstat is None:
        checks.append(Check(Rule.SHAKEN_POLICY, False, "STIR/SHAKEN not verified ([shaken] off)"))
    else:
        got = facts.verstat + (f" ({facts.shaken_reason})" if facts.shaken_reason else "")
        got += f", attest {facts.attest}" if facts.attest else ""
        mark = shaken_mark(snap, facts, ALLOW_DEFAULT)
        how = "marks it (forwarded with the mark header)" if mark is not None else "passes it"
        checks.append(Check(Rule.SHAKEN_POLICY, False, f"{got}: the attestation policy {how}"))

    # 6. k4 notices, n2 notices
    notices = snap.notices.get(provider, []) if provider is not None else []
    name = prov.name if prov is not None else ""
    monitor_only = prov.monitor_only if prov is not None else False
    k4 = [n for n in notices if n.kind == "k4"]
    if provider is None:
        checks.append(Check(Rule.NOTICE_K4, False, no_provider))
    elif not k4:
        checks.append(Check(Rule.NOTICE_K4, False, f"no k4 notice against '{provider}'"))
    for notice in k4:
        blocks, why = k4_check(notice, provider or "", name, monitor_only, now)  # rules/k4.py
        checks.append(Check(Rule.NOTICE_K4, blocks, why))

    n2 = [n for n in notices if n.kind == "n2"]
    if provider is None:
        checks.append(Check(Rule.NOTICE_N2, False, no_provider))
    elif not n2:
        checks.append(Check(Rule.NOTICE_N2, False, f"no n2 notice against '{provider}'"))
    for notice in n2:
        campaign = _n2_match(notice, caller, now) if caller is not None else None
        if campaign is None:
            why = f"notice {notice.id}: caller matches none of its campaigns"
            if caller is None:
                why = f"notice {notice.id}: no usable caller ID to match"
            checks.append(Check(Rule.NOTICE_N2, False, why))
        else:
            v = _n2_verdict(notice.id, provider or "", name, campaign, monitor_only)
            checks.append(Check(Rule.NOTICE_N2, True, v.reason))

    # 6. the signer's notices (k4, n2), matched by signature, after the trunk's
    s_notices = snap.notices.get(signer, []) if signer is not None else []
    s_name = sprov.name if sprov is not None else ""
    s_mo = sprov.monitor_only if sprov is not None else False
    for notice in s_notices:
        if notice.kind == "k4" and signer is not None:
            blocks, why = k4_check(notice, signer, s_name, s_mo, now)
            checks.append(Check(Rule.NOTICE_K4, blocks, f"{why} (signer, OCN {ocn})"))
    for notice in s_notices:
        if notice.kind == "n2" and signer is not None:
            campaign = _n2_match(notice, caller, now) if caller is not None else None
            if campaign is None:
                why = (
                    f"notice {notice.id} (signer, OCN {ocn}): caller matches none of its campaigns"
                )
                checks.append(Check(Rule.NOTICE_N2, False, why))
            else:
                v = _by_signature(
                    _n2_verdict(notice.id, signer, s_name, campaign, s_mo), ocn, trunk
                )
                checks.append(Check(Rule.NOTICE_N2, v.blocked, v.reason))

    verdict = decide(snap, facts, now)
    if verdict.rule is Rule.DEFAULT:
        checks.append(Check(Rule.DEFAULT, True, verdict.reason))
    else:
        # the default applies only when no rule above decided the call
        checks.append(
            Check(Rule.DEFAULT, False, f"not reached: rule {verdict.rule.label} decides the call")
        )
    return checks
