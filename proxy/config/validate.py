"""Checks across keys on the built `Config` (`_validate`): ranges, choices,
what TLS and redirect mode need, and that the TLS files load."""

from __future__ import annotations

import re

from proxy.config.answers import _quoted_string_ok
from proxy.config.document import _LIMIT_KEYS
from proxy.config.model import Config
from proxy.config.tls import server_tls_context
from proxy.config.values import ConfigError, _choice
from proxy.redis_url import is_sentinel, parse_sentinel_url


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


def _check_redis_url(url: str, key: str) -> None:
    if is_sentinel(url):
        try:
            parse_sentinel_url(url)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    elif not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"{key}: must start with redis://, rediss://, unix:// or "
            f"redis+sentinel://host:port[,host:port...]/mastername[/db], got {url!r}"
        )


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
    if not 0 <= c.overload_hold_ms <= 10_000:
        raise ConfigError(
            f"proxy.overload_hold_ms: must be within 0..10000 ms, got {c.overload_hold_ms}"
        )
    _check_redis_url(c.redis_url, "redis.url")
    if c.records_redis_url:
        _check_redis_url(c.records_redis_url, "records.redis_url")
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
