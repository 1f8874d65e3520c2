"""What a screening decision says: the rule that decided it and why.

How this works: :class:`Rule` names every rule the engine applies, in the
order the engine applies them (see ``rules/engine.py``). Each member carries
three fixed attributes read on the hot path without computing anything:

* ``label``: the snake_case metric label (``sipscreen_calls_total{rule=...}``),
* ``citation``: the regulation (or "operator policy") the rule enforces,
* ``answer_class``: which configured SIP answer a block under this rule gets
  (``"deterministic"`` for lists, DNO and the RMD gate, which are commonly
  answered with a plain 603; ``"analytics"`` for the notice-based rules,
  answered with a plain 603 unless the operator opts in to the ATIS-1000099
  603+; ``"none"`` for the rules that allow).

:class:`Verdict` is immutable. The frequent verdicts (emergency, listed,
default allow, caller block, ...) are module constants so the common path
allocates nothing; rare verdicts that name a provider or prefix are built by
the engine when they happen.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ALLOW_DEFAULT",
    "ALLOW_EMERGENCY",
    "ALLOW_LISTED",
    "ANSWER_CLASSES",
    "BLOCK_CALLER",
    "BLOCK_DNO_INBOUND_ONLY",
    "Rule",
    "Verdict",
]

ANSWER_CLASSES = ("deterministic", "analytics", "none")


class Rule(enum.Enum):
    """Every rule of the decision, in engine order (DEFAULT last)."""

    # value = (label, citation, answer_class); labels are unique, so no aliases.
    EMERGENCY = ("emergency", "47 CFR 64.1200(k)", "none")
    ALLOWLIST = ("allowlist", "operator policy", "none")
    CALLER_BLOCK = ("caller_block", "operator policy", "deterministic")
    PREFIX_BLOCK = ("prefix_block", "operator policy", "deterministic")
    DNO_INVALID = ("dno_invalid", "47 CFR 64.1200(o)", "deterministic")
    DNO_UNALLOCATED = ("dno_unallocated", "47 CFR 64.1200(o)", "deterministic")
    DNO_INBOUND_ONLY = ("dno_inbound_only", "47 CFR 64.1200(o)", "deterministic")
    PROVIDER_BLOCK = ("provider_block", "operator policy", "deterministic")
    RMD_GATE = ("rmd_gate", "47 CFR 64.6305(g)", "deterministic")
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


# Pre-built verdicts: the common path returns one of these (no allocation).
ALLOW_DEFAULT = Verdict(False, Rule.DEFAULT, "no rule matched; allowed")
ALLOW_EMERGENCY = Verdict(
    False,
    Rule.EMERGENCY,
    "emergency call; 47 CFR 64.1200(k) forbids blocking calls to 911, 933 or a PSAP",
)
ALLOW_LISTED = Verdict(False, Rule.ALLOWLIST, "caller is on the operator's allowlist")
BLOCK_CALLER = Verdict(True, Rule.CALLER_BLOCK, "caller is on the operator's caller blocklist")
BLOCK_DNO_INBOUND_ONLY = Verdict(
    True,
    Rule.DNO_INBOUND_ONLY,
    "caller ID is an inbound-only number on the do-not-originate list; "
    "47 CFR 64.1200(o) permits blocking calls that purport to come from it",
)
