"""What a decision record holds (`FIELDS`) and where it goes (the stream and
index keys); pure: `clip` and `iso_ms` are used on the screening path."""

from __future__ import annotations

import datetime as dt

# The columns of a record, in export order (DOMAIN.md "Records").
FIELDS = (
    "ts",  # decision time, ISO-8601 UTC with ms
    "call_id",  # as received (clipped)
    "source",  # ip:port the INVITE came from ([v6]:port)
    "transport",  # udp / tcp
    "provider",  # upstream provider id (trunk map or trusted SBC header)
    "ocn",  # SHAKEN signer OCN when verified
    "caller",  # normalised E.164 (PAI, else From)
    "callee",  # normalised E.164 (Request-URI, else To)
    "caller_raw",  # From URI user part as received
    "callee_raw",  # Request-URI user part as received
    "caller_private",  # 1 when Privacy: id/user
    "pai",  # P-Asserted-Identity header(s) as received
    "from",  # From header value as received
    "identity",  # Identity header(s) as received (RFC 8224)
    "rule",
    "citation",
    "reason",
    "detail",  # notice id (k4; n2 id:campaign), order id (fdo, RMD removal), prefix
    "action",  # reject / would_block / monitor / allow / allowlist_override / mark /
    # reject_update / monitor_update (an in-dialog UPDATE's identities, screen.update)
    "monitor",  # 1 when the proxy ran with --monitor
    "status",  # SIP status sent (reject only)
    "snapshot_version",
    "attest",  # SHAKEN attestation A/B/C when the Identity verified ([shaken] on)
    "verstat",  # ATIS-1000074: TN-Validation-Passed / -Failed / No-TN-Validation ([shaken] on)
    "shaken_reason",  # why it did not pass: unsigned, cert_pending, stale, bad_signature, ...
    "matched_by",  # provider rules: "trunk" (the provider it came from) or "signature" (its signer)
)
STREAM = "records"
INDEX = "records:ix:"


def iso_ms(ts: float) -> str:
    """ISO-8601 UTC with milliseconds: `2026-11-29T12:00:00.123Z`."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def clip(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, marked `…[+N]` when cut (N = cut).

    Received strings are latin-1 decoded, so a character is a received byte.
    The result is at most `limit` characters long, marker included (only
    the marker when `limit` is shorter than it; limit 0 = no cut).
    """
    if limit <= 0 or len(value) <= limit:
        return value
    cut = len(value) - limit
    while True:
        mark = f"…[+{cut}]"
        keep = max(limit - len(mark), 0)
        if len(value) - keep == cut:
            return value[:keep] + mark
        cut = len(value) - keep


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d")


def index_keys(prefix: str, rec: dict[str, str], day: str) -> list[str]:
    """The index sorted sets a record written on `day` (UTC, YYYY-MM-DD)
    goes into (an empty caller, callee or provider has none)."""
    keys = []
    ix = prefix + INDEX
    if callee := rec.get("callee"):
        keys.append(f"{ix}callee:{callee}")
    if caller := rec.get("caller"):
        keys.append(f"{ix}caller:{caller}")
    if provider := rec.get("provider"):
        keys.append(f"{ix}provider:{provider}:{day}")
    return keys
