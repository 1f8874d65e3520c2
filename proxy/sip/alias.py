"""RFC 5923 connection reuse: which address a peer's ``;alias`` names, if any.

A peer that opened a TLS connection to us and puts ``alias`` on the top Via of
its requests asks us to send our requests for its Via sent-by address (where it
listens) on that same connection instead of opening one towards it (RFC 5923
§5, §6). Because the connection then stands for an address it did not connect
from, RFC 5923 allows it only on TLS with both ends authenticated by X.509
certificates (its abstract, §9): a plain TCP connection, or a TLS one without a
verified client certificate, gets no alias (the caller does not even ask).
On top of that the sent-by host must be one of the certificate's identities
(subjectAltName IP addresses and DNS names, or its CN when it has no
subjectAltName): a verified peer cannot take over another peer's address.

Sans-I/O: the server (proxy/server/tcp.py) calls ``alias_target`` for a request
that came on a mutually authenticated TLS connection, with the verified peer
certificate (``SSLObject.getpeercert()``), and registers the connection under
the address it returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from .message import Request, SIPError, parse

__all__ = ["alias_target", "cert_identities"]


def cert_identities(cert: Mapping[str, Any]) -> frozenset[str]:
    """The host names and IP addresses a verified certificate vouches for (lower
    case; IP addresses normalised): subjectAltName DNS and IP entries, else the
    subject's commonName (RFC 6125 §6.4.4: the CN only without a subjectAltName)."""
    out: set[str] = set()
    for kind, val in cert.get("subjectAltName", ()):
        if kind == "DNS":
            out.add(str(val).lower().rstrip("."))
        elif kind == "IP Address":
            out.add(_norm_host(str(val).strip()))
    if not out:
        for rdn in cert.get("subject", ()):
            for attr, val in rdn:
                if attr == "commonName":
                    out.add(_norm_host(str(val).lower().rstrip(".")))
    return frozenset(out)


def _norm_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower()


def alias_target(msg: bytes, identities: frozenset[str]) -> tuple[str, int] | None:
    """(host, port) of the top Via sent-by of the request ``msg`` when that Via
    carries ``alias`` (RFC 5923 §6), says TLS, and names a host among
    ``identities`` (``cert_identities`` of the connection's verified client
    certificate); else None. The port defaults to 5061 (RFC 3261 §18.2.1)."""
    if msg[:4] == b"SIP/" or b"alias" not in msg:
        return None
    try:
        req = parse(msg)
    except SIPError:
        return None  # the core answers or drops it; no alias from a bad message
    if not isinstance(req, Request) or not req.vias:
        return None
    top = req.vias[0]
    if b"alias" not in top.params or top.transport.upper() != b"TLS":
        return None
    host = _norm_host(top.host.decode("latin-1"))
    if host not in identities:
        return None
    return host, top.port or 5061
