"""The facts one decision is based on.

How this works: ``proxy/screen.py`` builds a :class:`CallFacts` from an
INVITE (P-Asserted-Identity else From, RFC 3325 §9.1; the Request-URI, never
To, for the callee; Privacy, RFC 3323; the trunk the call came in on →
provider id) with the numbers already normalised by
:func:`rules.numbers.normalise`, and hands it to :func:`rules.engine.decide`.
The engine only reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallFacts"]


@dataclass(slots=True)
class CallFacts:
    """One call as the engine sees it.

    ``caller``/``callee`` are E.164 (``+12025550123``) or short-code digits
    (``911``), None when no usable number was found. ``callee`` is read from
    the Request-URI only; an RFC 5031 emergency Request-URI gives its URN
    lower-cased (``urn:service:sos``, ``urn:service:sos.police``;
    :func:`rules.numbers.sos_urn`). ``provider`` is the id of
    the upstream provider the call was received from directly (the one the
    RMD gate of 47 CFR 64.6305(g) is about). ``ocn`` is the SHAKEN signer's
    OCN (the SPC of its certificate, RFC 8226) and ``attest`` its attestation
    (A/B/C, RFC 8588), both set only when the Identity header verified;
    ``verstat`` the verification result (ATIS-1000074:
    ``TN-Validation-Passed`` / ``-Failed`` / ``No-TN-Validation``), all three
    None when ``[shaken]`` is off (rules/shaken.py), and ``shaken_reason``
    why it did not pass (``unsigned``, ``stale``, ... ``rules.shaken.REASONS``).
    ``caller_private`` records a Privacy request (RFC 3323):
    it hides the identity from the callee, not from the carrier, so the
    caller is still screened by number.
    """

    caller: str | None
    callee: str | None
    provider: str | None
    source_ip: str = ""
    call_id: str = ""
    ocn: str | None = None
    caller_private: bool = False
    attest: str | None = None
    verstat: str | None = None
    shaken_reason: str = ""
    # The other numbers the call's identity headers carry (a further
    # P-Asserted-Identity, From when a PAI gave ``caller``, the global number a
    # local number names through its phone-context, the numbers other readers
    # find in a user part (rules/numbers.py user_readings), a number written
    # in a display name),
    # normalised, each once,
    # ``caller`` excluded: a softswitch may show one of them, so the
    # operator's number lists (DNO inbound-only, caller and prefix blocklists)
    # are checked against them too (rules/engine.py, step 5b).
    other_callers: tuple[str, ...] = ()
