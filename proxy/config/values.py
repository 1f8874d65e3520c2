"""Value readers every section of the config shares, and `ConfigError`.

A bad value raises `ConfigError` naming the key (`proxy.workers: must be an
integer >= 1, got 0`): `_get` (a key of a TOML table, of one type),
`_table`, `_choice`, and the address, listen, clock and CIDR-list readers
that the TOML sections and the command-line overrides both use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from rules.notices import eastern_midnight

Listen = tuple[str, str, int]  # (transport "udp"|"tcp", host, port)
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key."""


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


# RFC 3261 §25.1 token (a header name); and the names the proxy or the softswitch
# read for routing and identity (a configured header never replaces or strips one)
HEADER_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
RELIED_ON_HEADERS = frozenset(
    "via v from f to t call-id i cseq contact m max-forwards route record-route "
    "content-length l content-type c identity y p-asserted-identity privacy".split()
)


def header_name(name: Any, key: str, relied_on: frozenset[str] = RELIED_ON_HEADERS) -> str:
    """A SIP header name (token, at most 64 characters) that is not in ``relied_on``;
    else a ConfigError naming ``key``."""
    if not isinstance(name, str) or not HEADER_TOKEN.fullmatch(name) or len(name) > 64:
        raise ConfigError(f"{key}: must be a SIP header name (token), got {name!r}")
    if name.lower() in relied_on:
        raise ConfigError(f"{key}: {name!r} is a header the proxy or softswitch relies on")
    return name


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


def canonical_ip(host: str) -> str:
    """``host`` as the proxy names a peer: an IPv4-mapped IPv6 address
    (``::ffff:a.b.c.d``, RFC 4291 §2.5.5.2) as its IPv4 address, any other
    host as it is.

    An IPv6 socket that is not IPV6_V6ONLY (Linux's default) carries IPv4
    too, and the kernel names its IPv4 peers so (RFC 3493 §3.7). The peer is
    the same host either way, and the trunk map, the trusted sources and the
    per-source limits must judge it as one: read as written, a trunk reaching
    a ``[::]`` listen address matched no IPv4 CIDR. proxy/_udpio.c does the
    same in C for the batched receive."""
    if host[:7].lower() != "::ffff:":
        return host
    addr = peer_address(host)
    return host if addr is None or addr.version == 6 else str(addr)


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` parsed as the proxy names a peer (``canonical_ip``: an
    IPv4-mapped IPv6 address is its IPv4 address, however it is spelt); None
    when it is no address."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return addr if mapped is None else mapped


def ipv4_net(net: _Net) -> _Net:
    """``net`` as the IPv4 network it is when it lies in ``::ffff:0:0/96`` (a trunk
    or trusted source written IPv4-mapped matches the IPv4 address
    ``canonical_ip`` names its peers by); any other network as it is."""
    if net.version == 6 and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


def _parse_nets(values: Any, key: str) -> tuple[_Net, ...]:
    if not isinstance(values, list):
        raise ConfigError(f"{key}: must be a list of CIDR strings")
    out: list[_Net] = []
    for i, v in enumerate(values):
        try:
            out.append(ipv4_net(ipaddress.ip_network(str(v), strict=False)))
        except ValueError as exc:
            raise ConfigError(f"{key}[{i}]: {exc}") from None
    return tuple(out)
