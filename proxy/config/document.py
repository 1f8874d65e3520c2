"""The TOML document -> `Config` keyword arguments (`_from_doc`), section by section.

Every key is read with its type checked (`_get`), unknown sections and keys
are refused by name; the package docstring (proxy/config/__init__.py) lists
the layout. Cross-key checks run later on the built `Config`
(proxy/config/validate.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.config.answers import _answers
from proxy.config.shaken import _shaken
from proxy.config.trunks import TrunkMap, _tls_subject
from proxy.config.values import (
    ConfigError,
    _get,
    _parse_nets,
    _table,
    canonical_ip,
    header_name,
    parse_clock,
    parse_hostport,
    parse_listen,
)
from proxy.redis_url import sentinel_url


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
        kw["softswitch"] = (canonical_ip(h), port)  # as its datagrams name it
        kw["softswitch_transport"] = t
    if (v := _get(p, "workers", "proxy.workers", int)) is not None:
        kw["workers"] = v
    for name in ("monitor", "record_route"):
        if (v := _get(p, name, f"proxy.{name}", bool)) is not None:
            kw[name] = v
    if (v := p.get("strip_identity_headers")) is not None:
        key = "proxy.strip_identity_headers"
        if not isinstance(v, list):
            raise ConfigError(f"{key}: must be a list of header names, got {v!r}")
        kw["strip_identity_headers"] = tuple(header_name(x, f"{key}[{i}]") for i, x in enumerate(v))
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
    if (v := _get(p, "overload_hold_ms", "proxy.overload_hold_ms", int)) is not None:
        kw["overload_hold_ms"] = v
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
    if (v := _get(rec, "redis_url", "records.redis_url", str)) is not None:
        kw["records_redis_url"] = v

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
