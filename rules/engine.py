"""The screening decision: one call's facts against the in-memory snapshot.

How this works: :func:`decide` walks the rules in a fixed order and returns
at the first one that decides (docs/DESIGN.md, rules/engine.py):

1. emergency: a call to 911, 933 or a configured PSAP number is allowed
   before anything else (47 CFR 64.1200(k): never block emergency calls);
2. caller allowlist (operator policy; an entry past its expiry no longer
   allows);
3. caller blocklist, 4. longest caller prefix (operator policy);
5. do-not-originate (47 CFR 64.1200(o)): invalid NANP number, unallocated
   area code / NPA-NXX (only when NANPA data is loaded), inbound-only number;
6. provider blocklist (operator policy);
7. RMD gate: the provider we receive the call from directly is not in the
   Robocall Mitigation Database (47 CFR 64.6305(g); certification is
   64.6305(d)-(f)): removed by an FCC order, absent from the export in
   force, or never filed (the reason says which);
8. k4 notice: the notified provider let its deadline pass without a
   recorded response, and we have notified the FCC (47 CFR 64.1200(k)(4));
9. n2 notice: the caller ID matches a campaign the notice identified, from
   that provider (47 CFR 64.1200(n)(2));
10. default: allowed.

A call without a usable caller ID skips the caller rules (2-5). A caller
asking for Privacy (RFC 3323) is still screened by number: privacy hides
the identity from the callee, not from the carrier.

Rules tied to a provider marked ``monitor_only`` (7-9) do not block: the
verdict allows and names the rule in ``would_block``. So does a k4 notice
whose deadline has not passed or whose FCC notification is not recorded.

The common allow path allocates nothing: it returns a pre-built
:class:`~rules.verdict.Verdict`. Verdicts naming a prefix, provider or
notice are built once and cached (``functools.lru_cache``).

:func:`explain` evaluates every rule independently (no early return) for
``sipscreen check``; ``tests/unit/test_rules_engine.py`` checks that its
first deciding rule is always the one :func:`decide` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from rules.facts import CallFacts
from rules.numbers import EMERGENCY_DEFAULT, nanp_invalid_reason
from rules.snapshot import RMD_BLOCKING, Notice, Provider, Snapshot
from rules.verdict import (
    ALLOW_DEFAULT,
    ALLOW_EMERGENCY,
    ALLOW_LISTED,
    BLOCK_CALLER,
    BLOCK_DNO_INBOUND_ONLY,
    Rule,
    Verdict,
)

__all__ = ["Check", "decide", "explain"]


@dataclass(slots=True)
class Check:
    """One rule as :func:`explain` saw it: did its condition match, and why."""

    rule: Rule
    matched: bool
    why: str


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


@lru_cache(maxsize=4096)
def _rmd_verdict(
    provider_id: str, name: str, status: str, monitor_only: bool, order: str = "", since: str = ""
) -> Verdict:
    # The reason says which way the provider fails the gate: an FCC removal
    # order, missing from the export in force, or never listed.
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
    if monitor_only:
        return Verdict(
            False,
            Rule.DEFAULT,
            "monitor only, allowed: " + reason,
            detail=provider_id,
            would_block=Rule.RMD_GATE,
        )
    return Verdict(True, Rule.RMD_GATE, reason, detail=provider_id)


# k4 notice states, as returned by _k4_state.
_K4_BLOCK = "block"
_K4_PENDING_DEADLINE = "pending_deadline"
_K4_PENDING_FCC = "pending_fcc"
_K4_RESPONDED = "responded"
_K4_RESPONDED_LATE = "responded_late"


def _k4_state(notice: Notice, which: str, now: float) -> tuple[str, float, float | None]:
    """(state, deadline, response time) of a k4 notice at ``now``.

    ``which`` is the snapshot's ``k4_deadline``: ``"mitigation"`` (48 hours)
    or ``"report"`` (14 days). Choice for a response recorded *after* the
    deadline: it stops the automatic block. The seed letter says failure to
    act within the deadlines "authorizes" downstream providers to block
    "permanently" (47 CFR 64.1200(k)(4) permits, it does not oblige); a
    recorded response means an operator has looked at the provider, so the
    decision to keep blocking is left to them (``block:provider``), and
    :func:`explain` says the response was late.
    """
    if which == "mitigation":
        deadline, response = notice.mitigation_due, notice.mitigated
    else:
        deadline, response = notice.report_due, notice.reported
    if response is not None and response <= now:
        state = _K4_RESPONDED if response <= deadline else _K4_RESPONDED_LATE
        return state, deadline, response
    if now < deadline:
        return _K4_PENDING_DEADLINE, deadline, None
    # 47 CFR 64.1200(k)(4): notify the Commission before initiating blocking.
    if notice.fcc_notified is None or notice.fcc_notified > now:
        return _K4_PENDING_FCC, deadline, None
    return _K4_BLOCK, deadline, None


@lru_cache(maxsize=4096)
def _k4_verdict(
    notice_id: str,
    provider_id: str,
    name: str,
    state: str,
    which: str,
    deadline: float,
    notified: bool,
    monitor_only: bool,
) -> Verdict:
    who = _provider_name(provider_id, name)
    label = "mitigation (48-hour)" if which == "mitigation" else "report (14-day)"
    if state == _K4_BLOCK:
        reason = (
            f"{who} was notified of illegal robocall traffic (notice {notice_id}) and its "
            f"{label} deadline {_iso(deadline)} passed with no response recorded; the FCC "
            "has been notified; 47 CFR 64.1200(k)(4) permits blocking all its traffic"
        )
        if monitor_only:
            return Verdict(
                False,
                Rule.DEFAULT,
                "monitor only, allowed: " + reason,
                detail=notice_id,
                would_block=Rule.NOTICE_K4,
            )
        return Verdict(True, Rule.NOTICE_K4, reason, detail=notice_id)
    missing: list[str] = []
    if state == _K4_PENDING_DEADLINE:
        missing.append(f"once the {label} deadline {_iso(deadline)} passes without a response")
    if not notified:
        missing.append(
            "once the FCC has been notified (47 CFR 64.1200(k)(4) requires notice before blocking)"
        )
    reason = f"allowed: notice {notice_id} against {who} would block " + " and ".join(missing)
    return Verdict(False, Rule.DEFAULT, reason, detail=notice_id, would_block=Rule.NOTICE_K4)


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


def _provider_rules(
    snap: Snapshot, provider_id: str, caller: str | None, now: float
) -> Verdict | None:
    """Rules 7-9 for a provider not on the blocklist: a blocking verdict first,
    else the first would-block verdict, else None."""
    prov: Provider | None = snap.providers.get(provider_id)
    name = prov.name if prov is not None else ""
    monitor_only = prov.monitor_only if prov is not None else False
    pending: Verdict | None = None
    if prov is not None:
        status = prov.rmd_status
        if status in RMD_BLOCKING:  # 47 CFR 64.6305(g)
            v = _rmd_verdict(
                provider_id, name, status, monitor_only, prov.rmd_order, prov.rmd_since
            )
            if v.blocked:
                return v
            pending = v
    notices = snap.notices.get(provider_id)
    if notices:
        which = snap.k4_deadline
        for notice in notices:
            if notice.kind != "k4":
                continue
            state, deadline, _ = _k4_state(notice, which, now)
            if state == _K4_RESPONDED or state == _K4_RESPONDED_LATE:
                continue
            notified = notice.fcc_notified is not None and notice.fcc_notified <= now
            v = _k4_verdict(
                notice.id, provider_id, name, state, which, deadline, notified, monitor_only
            )
            if v.blocked:
                return v
            if pending is None:
                pending = v
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


def decide(snap: Snapshot, facts: CallFacts, now: float) -> Verdict:
    """The verdict for one call; ``now`` is UNIX epoch seconds."""
    # 47 CFR 64.1200(k): emergency calls are never blocked, whatever else matches.
    callee = facts.callee
    if callee is not None and (callee in snap.emergency or callee in EMERGENCY_DEFAULT):
        return ALLOW_EMERGENCY

    caller = facts.caller
    if caller is not None:
        # Parse the number once for the three number sets (E.164 as an int;
        # anything else is looked up as a string and simply never matches).
        body = caller[1:]
        key: int | str = caller
        if caller[:1] == "+" and body.isdigit() and body.isascii() and body[0] != "0":
            key = int(body)
        # Operator policy: allowlist, then caller and prefix blocklists.
        if key in snap.allow_caller:
            expires = snap.allow_expiry.get(caller)
            if expires is None or now < expires:
                return ALLOW_LISTED
        if key in snap.block_caller:
            return BLOCK_CALLER
        block_prefix = snap.block_prefix
        if block_prefix.lengths:
            prefix = block_prefix.longest_match(caller)
            if prefix is not None:
                return _prefix_verdict(prefix)
        # 47 CFR 64.1200(o): do-not-originate.
        if caller[:2] == "+1":
            dno = _caller_dno(snap, caller)
            if dno is not None:
                return dno
        if key in snap.dno_caller:
            return BLOCK_DNO_INBOUND_ONLY

    provider = facts.provider
    if provider is not None:
        if provider in snap.block_provider:
            return _provider_block_verdict(provider)
        # Only providers with something against them take the slow path.
        prov = snap.providers.get(provider)
        if (prov is not None and prov.rmd_status in RMD_BLOCKING) or provider in snap.notices:
            v = _provider_rules(snap, provider, caller, now)
            if v is not None:
                return v
    return ALLOW_DEFAULT


# -- explain (sipscreen check) -------------------------------------------------


def explain(snap: Snapshot, facts: CallFacts, now: float) -> list[Check]:
    """Every rule, in decision order, with whether it matched and why."""
    checks: list[Check] = []
    caller, callee, provider = facts.caller, facts.callee, facts.provider

    # 1. emergency
    if callee is None:
        checks.append(Check(Rule.EMERGENCY, False, "no usable callee number"))
    elif callee in snap.emergency or callee in EMERGENCY_DEFAULT:
        checks.append(
            Check(Rule.EMERGENCY, True, f"callee {callee} is an emergency number; never blocked")
        )
    else:
        checks.append(Check(Rule.EMERGENCY, False, f"callee {callee} is not an emergency number"))

    no_caller = "no usable caller ID; caller rules skipped"
    # 2. allowlist
    if caller is None:
        checks.append(Check(Rule.ALLOWLIST, False, no_caller))
    elif caller in snap.allow_caller:
        expires = snap.allow_expiry.get(caller)
        if expires is None:
            checks.append(Check(Rule.ALLOWLIST, True, f"{caller} is allowlisted (no expiry)"))
        elif now < expires:
            checks.append(
                Check(Rule.ALLOWLIST, True, f"{caller} is allowlisted until {_iso(expires)}")
            )
        else:
            checks.append(
                Check(Rule.ALLOWLIST, False, f"{caller}'s allowlist entry expired {_iso(expires)}")
            )
    else:
        checks.append(Check(Rule.ALLOWLIST, False, f"{caller} is not allowlisted"))

    # 3. caller blocklist
    if caller is None:
        checks.append(Check(Rule.CALLER_BLOCK, False, no_caller))
    elif caller in snap.block_caller:
        checks.append(Check(Rule.CALLER_BLOCK, True, BLOCK_CALLER.reason))
    else:
        checks.append(Check(Rule.CALLER_BLOCK, False, f"{caller} is not on the caller blocklist"))

    # 4. prefix blocklist
    prefix = snap.block_prefix.longest_match(caller) if caller is not None else None
    if caller is None:
        checks.append(Check(Rule.PREFIX_BLOCK, False, no_caller))
    elif prefix is not None:
        checks.append(Check(Rule.PREFIX_BLOCK, True, _prefix_verdict(prefix).reason))
    else:
        checks.append(Check(Rule.PREFIX_BLOCK, False, "no blocked prefix matches"))

    # 5. DNO
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
    elif caller in snap.dno_caller:
        checks.append(Check(Rule.DNO_INBOUND_ONLY, True, BLOCK_DNO_INBOUND_ONLY.reason))
    else:
        checks.append(
            Check(Rule.DNO_INBOUND_ONLY, False, f"{caller} is not on the inbound-only DNO list")
        )

    # 6. provider blocklist
    no_provider = "upstream provider unknown; provider rules skipped"
    if provider is None:
        checks.append(Check(Rule.PROVIDER_BLOCK, False, no_provider))
    elif provider in snap.block_provider:
        checks.append(Check(Rule.PROVIDER_BLOCK, True, _provider_block_verdict(provider).reason))
    else:
        checks.append(
            Check(Rule.PROVIDER_BLOCK, False, f"'{provider}' is not on the provider blocklist")
        )

    # 7. RMD gate
    prov = snap.providers.get(provider) if provider is not None else None
    if provider is None:
        checks.append(Check(Rule.RMD_GATE, False, no_provider))
    elif prov is None:
        checks.append(
            Check(Rule.RMD_GATE, False, f"'{provider}' has no provider record; RMD status unknown")
        )
    elif prov.rmd_status in RMD_BLOCKING:
        v = _rmd_verdict(
            provider, prov.name, prov.rmd_status, prov.monitor_only, prov.rmd_order, prov.rmd_since
        )
        checks.append(Check(Rule.RMD_GATE, True, v.reason))
    else:
        checks.append(Check(Rule.RMD_GATE, False, f"RMD status of '{provider}': {prov.rmd_status}"))

    # 8. k4 notices, 9. n2 notices
    notices = snap.notices.get(provider, []) if provider is not None else []
    name = prov.name if prov is not None else ""
    monitor_only = prov.monitor_only if prov is not None else False
    k4 = [n for n in notices if n.kind == "k4"]
    if provider is None:
        checks.append(Check(Rule.NOTICE_K4, False, no_provider))
    elif not k4:
        checks.append(Check(Rule.NOTICE_K4, False, f"no k4 notice against '{provider}'"))
    for notice in k4:
        state, deadline, response = _k4_state(notice, snap.k4_deadline, now)
        if state in (_K4_RESPONDED, _K4_RESPONDED_LATE):
            late = ""
            if state == _K4_RESPONDED_LATE:
                late = (
                    f" late (deadline {_iso(deadline)}); the letter authorizes blocking "
                    "permanently after a missed deadline: add the provider to "
                    "block:provider to keep blocking"
                )
            assert response is not None
            why = f"notice {notice.id}: response recorded {_iso(response)}{late}; not blocking"
            checks.append(Check(Rule.NOTICE_K4, False, why))
        else:
            notified = notice.fcc_notified is not None and notice.fcc_notified <= now
            v = _k4_verdict(
                notice.id, provider or "", name, state, snap.k4_deadline, deadline, notified,
                monitor_only,
            )  # fmt: skip
            checks.append(Check(Rule.NOTICE_K4, state == _K4_BLOCK, v.reason))

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

    verdict = decide(snap, facts, now)
    if verdict.rule is Rule.DEFAULT:
        checks.append(Check(Rule.DEFAULT, True, verdict.reason))
    else:
        # the default applies only when no rule above decided the call
        checks.append(
            Check(Rule.DEFAULT, False, f"not reached: rule {verdict.rule.label} decides the call")
        )
    return checks
