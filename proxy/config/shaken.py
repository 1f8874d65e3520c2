"""``[shaken]``: STIR/SHAKEN verification (`ShakenSpec`) and its attestation policy.

Off = `Config.shaken` is None. Paths are relative to the config file;
`unsigned`, `c_attested`, `failed` ("pass" | "mark" | "block") are the default
attestation policy and `[shaken.provider.<id>]` the same keys for one
upstream provider (the others inherit the default); the `fetch*` and
`cert_ttl_*` keys drive the background HTTPS fetch of x5u certificates
(proxy/certfetch.py); `mark_header` is the header a "mark" adds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.config.values import RELIED_ON_HEADERS, ConfigError, _choice, _get, _table, header_name
from rules.shaken import POLICY_ACTIONS, AttestationPolicy


@dataclass(frozen=True, slots=True)
class ShakenSpec:
    """``[shaken]``: STIR/SHAKEN verification (RFC 8224/8588), when enabled."""

    trust_anchors: str  # PEM bundle of STI-CA roots
    crl: str | None = None  # PEM/DER CRL
    certs: str | None = None  # directory of certificates by x5u (interim source)
    iat_window_s: int = 60  # RFC 8224 §6.2.1: freshness of iat
    cache_size: int = 4096  # verification results kept by Identity value
    # Attestation policy by upstream provider id ("" = the default); empty
    # when no policy blocks anything (the engine then skips the rule).
    policy: Mapping[str, AttestationPolicy] = field(default_factory=dict)
    # Background HTTPS fetch of x5u certificates (proxy/certfetch.py); off
    # unless fetch = true. fetch_hosts empty = any host.
    fetch: bool = False
    fetch_hosts: tuple[str, ...] = ()
    fetch_timeout_s: float = 2.0
    fetch_max_bytes: int = 64 * 1024
    fetch_ca: str | None = None  # CA bundle for the HTTPS servers (None = system)
    cert_ttl_min_s: int = 60
    cert_ttl_max_s: int = 86400
    fetch_backoff_s: float = 5.0
    fetch_backoff_max_s: float = 900.0
    # ATIS-1000074: add verstat= to the forwarded P-Asserted-Identity (else From).
    add_verstat: bool = False
    # The header a "mark" action adds to the forwarded INVITE; any copy that
    # arrives is stripped (a caller must not forge or pre-set the mark).
    mark_header: str = "X-Sipscreen-Mark"


_SHAKEN_FETCH_KEYS: dict[str, type] = {
    "fetch": bool,
    "fetch_hosts": list,
    "fetch_timeout_s": float,
    "fetch_max_bytes": int,
    "fetch_ca": str,
    "cert_ttl_min_s": int,
    "cert_ttl_max_s": int,
    "fetch_backoff_s": float,
    "fetch_backoff_max_s": float,
    "add_verstat": bool,
    "mark_header": str,
}

_SHAKEN_KEYS: dict[str, type] = {
    **_SHAKEN_FETCH_KEYS,
    "enabled": bool,
    "trust_anchors": str,
    "crl": str,
    "certs": str,
    "iat_window_s": int,
    "cache_size": int,
    "unsigned": str,
    "c_attested": str,
    "failed": str,
    "provider": dict,
}
_POLICY_KEYS = ("unsigned", "c_attested", "failed")


def _policy(
    tab: Mapping[str, Any], key: str, base: AttestationPolicy | None = None
) -> AttestationPolicy:
    out: dict[str, str] = {}
    for name in _POLICY_KEYS:
        v = _get(tab, name, f"{key}.{name}", str)
        if v is None:
            v = getattr(base, name) if base is not None else "pass"
        _choice(v, f"{key}.{name}", POLICY_ACTIONS)
        out[name] = v
    return AttestationPolicy(**out)


def _shaken(doc: Mapping[str, Any], source_path: str | None) -> ShakenSpec | None:
    tab = _table(doc, "shaken")
    for k in tab:
        if k not in _SHAKEN_KEYS:
            raise ConfigError(
                f"shaken.{k}: unknown key (expected one of {', '.join(sorted(_SHAKEN_KEYS))})"
            )
    vals = {k: _get(tab, k, f"shaken.{k}", t) for k, t in _SHAKEN_KEYS.items()}
    if not vals["enabled"]:
        return None
    base = Path(source_path).resolve().parent if source_path else None

    def path(v: Any) -> str | None:
        if not v:
            return None
        return str(base / v) if base is not None and not Path(v).is_absolute() else str(v)

    anchors = path(vals["trust_anchors"])
    if anchors is None:
        raise ConfigError("shaken.trust_anchors: required when shaken.enabled = true")
    window = vals["iat_window_s"]
    if window is not None and not 1 <= window <= 3600:
        raise ConfigError(f"shaken.iat_window_s: must be within 1..3600, got {window}")
    size = vals["cache_size"]
    if size is not None and not 1 <= size <= 10_000_000:
        raise ConfigError(f"shaken.cache_size: must be within 1..10000000, got {size}")
    default = _policy(tab, "shaken")
    policy: dict[str, AttestationPolicy] = {"": default}
    for pid, sub in (vals["provider"] or {}).items():
        key = f"shaken.provider.{pid}"
        if not isinstance(sub, dict):
            raise ConfigError(f"{key}: must be a table")
        for k in sub:
            if k not in _POLICY_KEYS:
                raise ConfigError(
                    f"{key}.{k}: unknown key (expected one of {', '.join(_POLICY_KEYS)})"
                )
        policy[pid] = _policy(sub, key, default)
    if not any(p.acts_on_anything for p in policy.values()):
        policy = {}  # pass and count everything: the engine skips the rule
    return ShakenSpec(
        anchors,
        path(vals["crl"]),
        path(vals["certs"]),
        60 if window is None else window,
        4096 if size is None else size,
        policy,
        **_shaken_fetch(vals, path),
    )


# The names the proxy or the softswitch read for routing and identity, which a
# mark must never replace or strip (P-Preferred-Identity too: a mark is added)
_MARK_RESERVED = RELIED_ON_HEADERS | {"p-preferred-identity"}


def _mark_header(name: str) -> str:
    """``shaken.mark_header``: a header name the proxy can add and strip."""
    try:
        return header_name(name, "shaken.mark_header", _MARK_RESERVED)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; choose another (e.g. X-Sipscreen-Mark)") from None


def _shaken_fetch(vals: Mapping[str, Any], path: Callable[[Any], str | None]) -> dict[str, Any]:
    """The fetch keys of ``[shaken]`` (checked; absent = the ShakenSpec default)."""
    out: dict[str, Any] = {}
    hosts = vals["fetch_hosts"]
    if hosts is not None:
        for i, h in enumerate(hosts):
            if not isinstance(h, str) or not h or "/" in h or " " in h:
                raise ConfigError(f"shaken.fetch_hosts[{i}]: must be a host name, got {h!r}")
        out["fetch_hosts"] = tuple(h.lower() for h in hosts)
    bounds: dict[str, tuple[float, float]] = {
        "fetch_timeout_s": (0.05, 60),
        "fetch_max_bytes": (1024, 1 << 20),
        "cert_ttl_min_s": (1, 7 * 86400),
        "cert_ttl_max_s": (1, 30 * 86400),
        "fetch_backoff_s": (0.01, 3600),
        "fetch_backoff_max_s": (0.01, 86400),
    }
    for k, (lo, hi) in bounds.items():
        v = vals[k]
        if v is None:
            continue
        if not lo <= v <= hi:
            raise ConfigError(f"shaken.{k}: must be within {lo:g}..{hi:g}, got {v}")
        out[k] = v
    for flag in ("fetch", "add_verstat"):
        if vals[flag] is not None:
            out[flag] = vals[flag]
    if vals["fetch_ca"]:
        out["fetch_ca"] = path(vals["fetch_ca"])
    mark = vals["mark_header"]
    if mark is not None:
        out["mark_header"] = _mark_header(mark)
    lo_ttl = out.get("cert_ttl_min_s", 60)
    if out.get("cert_ttl_max_s", 86400) < lo_ttl:
        raise ConfigError("shaken.cert_ttl_max_s: must be at least shaken.cert_ttl_min_s")
    return out
