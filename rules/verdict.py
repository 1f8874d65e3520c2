"""What a screening decision says: the rule that decided it and why.

How this works: :class:`Rule` names every rule the engine applies, in the
order the engine applies them (see ``rules/engine.py``). Each member carries
three fixed attributes read on the hot path without computing anything:

* ``label``: the snake_case metric label (``sipscreen_calls_total{rule=...}``),
* ``citation``: the regulation (or "operator policy") the rule enforces,
* ``answer_class``: which configured SIP answer a block under this rule gets
  (``"deterministic"`` for lists, DNO, the RMD gate, unmapped providers and
  Final Determination Orders, which are commonly
  answered with a plain 603; ``"analytics"`` for the notice-based rules,
  answered with a plain 603 unless the operator opts in to the ATIS-1000099
  603+; ``"none"`` for the rules that allow).

:class:`Verdict` is immutable. The frequent verdicts (emergency, listed,
default allow, caller block, ...) are module constants so the common path
allocates nothing; rare verdicts that name a provider or prefix are built by
the engine when they happen.

``would_block`` on an allowing verdict names the rule that matched but did
not block: a provider marked ``monitor_only`` (its gate or notice rule), the
``monitor`` policy for unmapped providers, a notice or order not yet in
force, or, on an :data:`Rule.ALLOWLIST` verdict, the rule the operator's
allowlist let the call pass over (counted by the proxy as an allowlist
override).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ALLOW_DEFAULT",
    "ALLOW_EMERGENCY",
    "ALLOW_EMERGENCY_CALLER",
    "ALLOW_LISTED",
    "ALLOW_UNMAPPED_SOURCE",
    "ANSWER_CLASSES",
    "BLOCK_CALLER",
    "BLOCK_DNO_INBOUND_ONLY",
    "BLOCK_UNMAPPED_SOURCE",
    "EMERGENCY_CITATION",
    "Rule",
    "Verdict",
]

ANSWER_CLASSES = ("deterministic", "analytics", "none")


# 47 CFR 64.1200(k)(5): no blocking of an emergency call placed to 911;
# (k)(6): all reasonable efforts not to block calls from PSAPs and
# government emergency numbers.
EMERGENCY_CITATION = "47 CFR 64.1200(k)(5)-(6)"


class Rule(enum.Enum):
    """Every rule of the decision, in engine order (DEFAULT last)."""

    # value = (label, citation, answer_class); labels are unique, so no aliases.
    # 1. emergency
    EMERGENCY = ("emergency", EMERGENCY_CITATION, "none")
    # 2. provider gates no caller ID lifts
    UNMAPPED_PROVIDER = ("unmapped_provider", "47 CFR 64.6305(g)", "deterministic")
    RMD_GATE = ("rmd_gate", "47 CFR 64.6305(g)", "deterministic")
    FDO = ("fdo", "47 CFR 64.1200(n)(3)", "deterministic")
    # 3. operator allowlist
    ALLOWLIST = ("allowlist", "operator policy", "none")
    # 4. do-not-originate
    DNO_INVALID = ("dno_invalid", "47 CFR 64.1200(o)", "deterministic")
    DNO_UNALLOCATED = ("dno_unallocated", "47 CFR 64.1200(o)", "deterministic")
    DNO_INBOUND_ONLY = ("dno_inbound_only", "47 CFR 64.1200(o)", "deterministic")
    # 5. operator block lists
    CALLER_BLOCK = ("caller_block", "operator policy", "deterministic")
    PREFIX_BLOCK = ("prefix_block", "operator policy", "deterministic")
    PROVIDER_BLOCK = ("provider_block", "operator policy", "deterministic")
    # STIR/SHAKEN attestation policy per upstream provider ([shaken] policy)
    SHAKEN_POLICY = ("shaken_policy", "operator policy", "deterministic")
    # 6. notices
    NOTICE_K4 = ("notice_k4", "47 CFR 64.1200(k)(4)", "analytics")
    NOTICE_N2 = ("notice_n2", "47 CFR 64.1200(n)(2)", "analytics")
    DEFAULT = ("default", "operator policy", "none")

    def __init__(self, label: str, citation: str, answer_class: str) -> None:
        self.label = label
        self.citation = citation
        self.answer_class = answer_class


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one decision.

    ``would_block`` names a rule that matched but did not block (monitor-only
    provider, a notice whose conditions are not all met yet); ``detail`` is a
    short machine-friendly fact such as the prefix or notice id that matched.
    """

    blocked: bool
    rule: Rule
    reason: str
    detail: str = ""
    would_block: Rule | None = None
    # The provider rule matched the provider that SIGNED the call (verified
    # STIR/SHAKEN OCN), not the trunk it came in on (records: matched_by).
    by_signature: bool = False


# Pre-built verdicts: the common path returns one of these (no allocation).
ALLOW_DEFAULT = Verdict(False, Rule.DEFAULT, "no rule matched; allowed")
ALLOW_EMERGENCY = Verdict(
    False,
    Rule.EMERGENCY,
    "emergency call (911, 933, urn:service:sos or a configured PSAP number); "
    "47 CFR 64.1200(k)(5) forbids blocking emergency calls",
)
ALLOW_EMERGENCY_CALLER = Verdict(
    False,
    Rule.EMERGENCY,
    "caller is an emergency caller (a PSAP or government emergency number on the "
    "emergency-caller list); 47 CFR 64.1200(k)(6) requires all reasonable efforts "
    "not to block its calls",
    detail="emergency_caller",
)
ALLOW_LISTED = Verdict(False, Rule.ALLOWLIST, "caller is on the operator's allowlist")
BLOCK_CALLER = Verdict(True, Rule.CALLER_BLOCK, "caller is on the operator's caller blocklist")
BLOCK_DNO_INBOUND_ONLY = Verdict(
    True,
    Rule.DNO_INBOUND_ONLY,
    "caller ID is an inbound-only number on the do-not-originate list; "
    "47 CFR 64.1200(o) permits blocking calls that purport to come from it",
)

_UNMAPPED = (
    "the call's source maps to no upstream provider (no trunk entry), so the RMD "
    "filing of the provider it is received from directly cannot be checked; "
    "47 CFR 64.6305(g) permits accepting calls directly only from providers in the "
    "Robocall Mitigation Database"
)
BLOCK_UNMAPPED_SOURCE = Verdict(
    True, Rule.UNMAPPED_PROVIDER, _UNMAPPED + " (unmapped_provider_policy = block)"
)
ALLOW_UNMAPPED_SOURCE = Verdict(
    False,
    Rule.DEFAULT,
    "unmapped_provider_policy = monitor, allowed: " + _UNMAPPED,
    would_block=Rule.UNMAPPED_PROVIDER,
)
