"""TLS: the SSL contexts of our listeners and outgoing connections, and the
names a verified peer certificate is matched by (`cert_names`, against the
trunks' `tls_subject`, issue 14)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config.model import Config


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
