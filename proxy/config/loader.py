"""`load_config`: read the TOML file, resolve its relative paths, apply the
command-line overrides, build the `Config` and validate it."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from proxy.config.document import _from_doc
from proxy.config.model import Config
from proxy.config.validate import _validate
from proxy.config.values import (
    ConfigError,
    canonical_ip,
    parse_clock,
    parse_hostport,
    parse_listen,
)


def default_config_path() -> str:
    """Path of the packaged sample config (proxy/defaults/sipscreen.toml)."""
    return str(resources.files("proxy").joinpath("defaults", "sipscreen.toml"))


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
    "overload_hold_ms",
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
            kw["softswitch"] = (canonical_ip(h), port)  # as its datagrams name it
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
