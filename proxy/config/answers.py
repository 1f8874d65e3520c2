"""The answer to a blocked call: `AnswerSpec` per answer class.

`build_answer` precomputes, once, the status, reason phrase and extra header
bytes of the SIP answer for each answer class (`analytics`,
`deterministic`). Both default to the plain `603 Decline`; the ATIS-1000099
`603+` is opt-in for `analytics` only and refused with a placeholder redress
contact; `607` (the user's own rejection, RFC 8197) is refused for a network
block. `_answers` reads the `[answer.*]` tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.values import ConfigError, _get, _table

ANSWER_KINDS = ("603", "603+", "608")
ANSWER_CLASSES = ("analytics", "deterministic")
DEFAULT_REDRESS_URL = "https://redress.example/"


@dataclass(frozen=True, slots=True)
class AnswerSpec:
    """The SIP final response sent for one answer class.

    `extra_headers` is complete header lines, each ending in CRLF, ready to
    be spliced into the response by the SIP core.
    """

    kind: str
    status: int
    reason: bytes
    extra_headers: bytes


def _quoted_string_ok(text: str) -> bool:
    # RFC 3261 §25.1 quoted-string: qdtext excludes DQUOTE and "\" unless
    # escaped; CR/LF would end the header line. We only allow printable
    # ASCII without DQUOTE/backslash, so no escaping is ever needed.
    return all(0x20 <= ord(c) < 0x7F and c not in '"\\' for c in text)


# RFC 8606 (ISUP cause location in the SIP Reason header, the Q.850
# locations): U user, LPN/LN private/public network serving the local (calling)
# user, TN transit network, RLN/RPN public/private network serving the remote
# (called) user, BI beyond an interworking point.
REASON_LOCATIONS = ("U", "LPN", "LN", "TN", "RLN", "RPN", "BI")
DEFAULT_LOCATION = "RLN"
# RFC 2606 / RFC 6761 reserved names: a redress contact there reaches nobody.
_PLACEHOLDER_SUFFIXES = (".example", ".invalid", ".test", ".localhost")
_PLACEHOLDER_DOMAINS = ("example.com", "example.net", "example.org", "localhost")


def _placeholder_host(host: str) -> bool:
    h = host.lower().rstrip(".")
    return (
        not h
        or h.endswith(_PLACEHOLDER_SUFFIXES)
        or h in ("example", "invalid", "test")
        or any(h == d or h.endswith("." + d) for d in _PLACEHOLDER_DOMAINS)
    )


def _check_redress(text: str, key: str) -> None:
    """The 603+ Reason text: ATIS-1000099 version, then a real redress contact."""
    from urllib.parse import urlparse

    fields = text.split(";")
    if fields[0] != "v=analytics1":
        raise ConfigError(
            f"{key}: the 603+ Reason text must start with the ATIS-1000099 version "
            f"'v=analytics1;', got {text!r}"
        )
    pairs = [f.partition("=") for f in fields[1:]]
    contacts = [(k, v) for k, _s, v in pairs if k in ("url", "tel", "email")]
    if not contacts:
        raise ConfigError(
            f"{key}: the 603+ Reason text needs a redress contact (url=, tel= or email=), "
            f"got {text!r}"
        )
    for name, value in contacts:
        if name == "url":
            host = urlparse(value).hostname or ""
            if urlparse(value).scheme not in ("http", "https") or _placeholder_host(host):
                raise ConfigError(
                    f"{key}: redress URL {value!r} is a placeholder or not an http(s) URL; "
                    "603+ (ATIS-1000099) must name the operator's real redress contact: "
                    "set redress_url"
                )
        elif name == "email" and _placeholder_host(value.rpartition("@")[2]):
            raise ConfigError(f"{key}: redress email {value!r} is a placeholder address")


def build_answer(
    kind: str,
    *,
    redress_url: str = DEFAULT_REDRESS_URL,
    reason_text: str | None = None,
    jcard_url: str | None = None,
    location: str = DEFAULT_LOCATION,
    key: str = "answer",
    answer_class: str = "analytics",
) -> AnswerSpec:
    """Build the precomputed answer for one of `603+`, `608`, `603`.

    `607 Unwanted` is refused: it is the called user's own rejection (RFC 8197,
    RFC 8688 §1), never a network block. `603+` is refused for any class but
    `analytics`, and with a placeholder redress contact.
    """
    if kind == "603+":
        # ATIS-1000099 "603+": `603 Network Blocked` with a Reason header
        # (RFC 3326) `SIP;cause=603;text="v=analytics1;url=<redress>";location=<loc>`
        # (version and redress contact in text, RFC 8606 location). Required
        # for analytics-based blocking (47 CFR 64.1200(k)(9)/(k)(10): notify the
        # caller, offer redress); deterministic blocks answer a plain 603.
        if answer_class != "analytics":
            raise ConfigError(
                f'{key}.kind: "603+" (ATIS-1000099) is for analytics-based blocking only; '
                f'{answer_class} blocks answer "603" (or "608")'
            )
        text = reason_text if reason_text is not None else f"v=analytics1;url={redress_url}"
        if not _quoted_string_ok(text):
            raise ConfigError(
                f"{key}.reason_text: must be printable ASCII without '\"' or '\\', got {text!r}"
            )
        _check_redress(text, f"{key}.redress_url" if reason_text is None else f"{key}.reason_text")
        if location not in REASON_LOCATIONS:
            raise ConfigError(
                f"{key}.location: must be one of {', '.join(REASON_LOCATIONS)} "
                f"(RFC 8606), got {location!r}"
            )
        hdr = f'Reason: SIP;cause=603;text="{text}";location={location}\r\n'
        return AnswerSpec(kind, 603, b"Network Blocked", hdr.encode("ascii"))
    if kind == "607":
        raise ConfigError(
            f'{key}.kind: "607" (Unwanted, RFC 8197) is the called user\'s own rejection, '
            'not a network block; use "603" (or "603+" for analytics, "608")'
        )
    if kind == "608":
        # RFC 8688 §3.2: an intermediary rejecting with 608 SHOULD add a
        # Call-Info with purpose=jwscard pointing at its signed jCard.
        if not jcard_url:
            raise ConfigError(f'{key}.jcard_url: required when kind = "608" (RFC 8688)')
        if not _quoted_string_ok(jcard_url) or any(c in jcard_url for c in "<> "):
            raise ConfigError(f"{key}.jcard_url: not a usable URL: {jcard_url!r}")
        hdr = f"Call-Info: <{jcard_url}>;purpose=jwscard\r\n"
        return AnswerSpec(kind, 608, b"Rejected", hdr.encode("ascii"))
    if kind == "603":
        # RFC 3261 §21.6.2: 603 Decline (ISUP cause 21 on the TDM side).
        return AnswerSpec(kind, 603, b"Decline", b"")
    raise ConfigError(f"{key}.kind: must be one of {', '.join(ANSWER_KINDS)}, got {kind!r}")


def _answers(doc: Mapping[str, Any]) -> dict[str, AnswerSpec]:
    tab = _table(doc, "answer")
    # Every class answers the deterministic plain 603 unless configured;
    # 603+ is opt-in for analytics (it needs the operator's redress contact).
    defaults = {"analytics": "603", "deterministic": "603"}
    out: dict[str, AnswerSpec] = {}
    for name in tab:
        if name not in ANSWER_CLASSES:
            raise ConfigError(
                f"answer.{name}: unknown answer class (expected {', '.join(ANSWER_CLASSES)})"
            )
    for cls in ANSWER_CLASSES:
        sub = tab.get(cls, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"answer.{cls}: must be a table")
        key = f"answer.{cls}"
        kind = _get(sub, "kind", f"{key}.kind", str) or defaults[cls]
        out[cls] = build_answer(
            kind,
            redress_url=_get(sub, "redress_url", f"{key}.redress_url", str) or DEFAULT_REDRESS_URL,
            reason_text=_get(sub, "reason_text", f"{key}.reason_text", str),
            jcard_url=_get(sub, "jcard_url", f"{key}.jcard_url", str),
            location=_get(sub, "location", f"{key}.location", str) or DEFAULT_LOCATION,
            key=key,
            answer_class=cls,
        )
    return out
