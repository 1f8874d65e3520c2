"""Configuration: a TOML file (tomllib) overridden by command-line flags.

How this works: `load_config(path, overrides)` reads the TOML file (the
packaged `proxy/defaults/sipscreen.toml` when `path` is None), applies the
CLI overrides (flat keys named like the `Config` fields: `listen`,
`softswitch`, `redis_url`, `metrics`, `workers`, `monitor`, `loop`,
`log_level`, ...), validates every value and returns a frozen `Config`.

Everything the hot path needs is precomputed when the file loads, once:
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

Where things are (docs/DESIGN.md has the table): `values.py` the value
readers and `ConfigError`, `model.py` the `Config` dataclass and its
defaults, `document.py` the TOML sections -> `Config` arguments,
`validate.py` the checks across keys, `loader.py` `load_config` and the
command-line overrides, `answers.py` the answers to a blocked call,
`trunks.py` the trunk map and `tls_subject`, `tls.py` the SSL contexts and
certificate names, `shaken.py` the `[shaken]` section. The names below are
the package's interface; the modules import one another, never this file.
"""

from __future__ import annotations

from proxy.config.answers import AnswerSpec, build_answer
from proxy.config.loader import default_config_path, load_config
from proxy.config.model import Config
from proxy.config.shaken import ShakenSpec
from proxy.config.tls import cert_names, client_tls_context, server_tls_context
from proxy.config.trunks import TrunkMap
from proxy.config.values import ConfigError, parse_clock, parse_hostport, parse_listen

__all__ = [
    "AnswerSpec",
    "Config",
    "ConfigError",
    "ShakenSpec",
    "TrunkMap",
    "build_answer",
    "cert_names",
    "client_tls_context",
    "default_config_path",
    "load_config",
    "parse_clock",
    "parse_hostport",
    "parse_listen",
    "server_tls_context",
]
