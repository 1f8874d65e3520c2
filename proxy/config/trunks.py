"""Trunks: source IP -> provider id (`TrunkMap`) and the TLS subjects of `[[trunk]]`.

/32 (and /128) entries sit in an exact-IP dict; wider CIDRs are tried
longest prefix first and the answer for each IP seen is cached in the same
dict, so a lookup is one dict probe after the first call from a trunk.
A trunk's `tls_subject` is normalised by `_tls_subject` as
`proxy.config.tls.cert_names` spells a peer certificate's names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from proxy.config.values import ConfigError, _Net, ipv4_net, peer_address


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
                net = ipv4_net(ipaddress.ip_network(cidr, strict=False))
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
        addr = peer_address(ip)  # an IPv4 peer named IPv4-mapped: its IPv4 address
        if addr is None:
            return None
        hit = self._exact.get(str(addr))  # a /32 or /128 entry, spelt as ipaddress spells it
        if hit is not None:
            return hit
        for net, provider in self._nets:
            if addr.version == net.version and addr in net:
                return provider
        return None

    def __len__(self) -> int:
        return len(self.entries)


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
