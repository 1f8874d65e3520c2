"""STIR/SHAKEN adapter: files (and the x5u fetcher) -> rules.shaken.Verifier.

How this works: when ``[shaken] enabled = true``, :func:`load_verifier`
reads, once, at start and on reload:

- ``trust_anchors``: the STI-CA roots, a PEM bundle as the STI-PA publishes it;
- ``crl`` (optional): the STI-PA's CRL, PEM or DER;
- ``certs``: a directory of certificates already fetched, one file per
  ``x5u`` named by the URL percent-encoded (``urllib.parse.quote(x5u,
  safe="")``, e.g. ``https%3A%2F%2Fcert.example%2Fsigner.pem``), each the PEM
  chain the URL serves (or one DER certificate), at most ``MAX_CERT_BYTES``.

The certificates are held in a dict, so the verifier's certificate source is
one dict lookup on the INVITE path (no file or network I/O); an ``x5u`` with
no file is "certificate pending" (``No-TN-Validation``). With ``fetch =
true`` the source is instead proxy/certfetch.py's ``CertFetcher`` (the
directory preloaded into it): a pending ``x5u`` is fetched over HTTPS in the
background and shared through Redis; the verifier does not change.

A file that cannot be read raises ``ConfigError`` naming it.

The attestation policy's "mark" (rules/engine.py ``shaken_mark``) is carried
to the softswitch by :func:`mark_edits`: every copy of the mark header that
arrived is removed (from any source: the mark is ours to state, as verstat
is, ATIS-1000074 §5.3.1) and, for a marked call, one line
``X-Sipscreen-Mark: shaken-policy;case=failed;reason=bad_signature;
verstat=TN-Validation-Failed;provider=acme`` is added at the end of the
header block (byte edits of the raw INVITE, like proxy/sip/verstat.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from proxy.certfetch import CertFetcher
from proxy.config import ConfigError, ShakenSpec
from proxy.sip.message import Request
from rules.facts import CallFacts
from rules.shaken import Verifier, load_certificates
from rules.verdict import Verdict

__all__ = [
    "MAX_CERT_BYTES",
    "cert_file_name",
    "load_cert_dir",
    "load_verifier",
    "mark_edits",
    "mark_value",
]

MAX_CERT_BYTES = 64 * 1024

# The fetcher built last per (Redis URL, prefix): a reload's new one adopts it.
_LAST_FETCHER: dict[tuple[str | None, str], CertFetcher] = {}


def cert_file_name(x5u: str) -> str:
    """The file name of ``x5u``'s certificate in the ``certs`` directory."""
    return quote(x5u, safe="")


def _read(path: str, key: str, limit: int = 16 << 20) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(f"{key}: {path} is over {limit} bytes")
    return data


def load_cert_dir(directory: str) -> dict[str, bytes]:
    """x5u -> certificate bytes for every readable certificate file in ``directory``."""
    out: dict[str, bytes] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"shaken.certs: cannot list {directory}: {exc.strerror or exc}") from None
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        data = _read(path, "shaken.certs", MAX_CERT_BYTES)
        try:
            load_certificates(data)
        except ValueError:
            raise ConfigError(f"shaken.certs: {path}: no certificate in it") from None
        out[unquote(name)] = data
    return out


def load_verifier(
    spec: ShakenSpec,
    *,
    redis_url: str | None = None,
    prefix: str = "",
    counters: Mapping[str, Any] | None = None,
) -> Verifier:
    """The verifier for ``spec`` (``[shaken]``); ConfigError on a bad file.

    With ``spec.fetch`` its certificate source is a :class:`CertFetcher`
    (``verifier.fetcher``) preloaded with the ``certs`` directory, sharing
    certificates through Redis at ``redis_url`` under ``prefix``."""
    anchors = _read(spec.trust_anchors, "shaken.trust_anchors")
    try:
        load_certificates(anchors)
    except ValueError:
        raise ConfigError(
            f"shaken.trust_anchors: {spec.trust_anchors}: no PEM certificate in it"
        ) from None
    crl = _read(spec.crl, "shaken.crl") if spec.crl else None
    certs = load_cert_dir(spec.certs) if spec.certs else {}
    source: Callable[[str], bytes | None] = certs.get
    fetcher = None
    if spec.fetch:
        if spec.fetch_ca:
            _read(spec.fetch_ca, "shaken.fetch_ca")
        fetcher = CertFetcher(
            spec, redis_url=redis_url, prefix=prefix, counters=counters, preload=certs
        )
        previous = _LAST_FETCHER.get((redis_url, prefix))
        if previous is not None:
            fetcher.adopt(previous)  # SIGHUP: keep what was fetched
        _LAST_FETCHER[(redis_url, prefix)] = fetcher
        source = fetcher.get
    try:
        verifier = Verifier(
            anchors,
            source,
            crl=crl,
            iat_window_s=spec.iat_window_s,
            cache_size=spec.cache_size,
        )
    except ValueError as exc:
        raise ConfigError(f"shaken.crl: {spec.crl}: unreadable CRL ({exc})") from None
    verifier.fetcher = fetcher
    return verifier


_UNSAFE = re.compile(rb"[^A-Za-z0-9._~+-]")


def mark_value(verdict: Verdict, facts: CallFacts) -> bytes:
    """The mark header's value for a marked call (``verdict`` from shaken_mark)."""
    parts = verdict.detail.split(":")  # "mark:<case>" or "mark:failed:<reason>"
    out = b"shaken-policy;case=" + parts[1].encode()
    if len(parts) > 2 and parts[2]:
        out += b";reason=" + parts[2].encode()
    if facts.verstat:
        out += b";verstat=" + facts.verstat.encode()
    if facts.provider:
        # a provider id is operator data: anything outside a token is replaced
        out += b";provider=" + _UNSAFE.sub(b"_", facts.provider.encode("utf-8", "replace"))[:64]
    return out


def mark_edits(
    req: Request, name: bytes, value: bytes | None
) -> tuple[tuple[int, int, bytes], ...] | None:
    """Edits of ``req.raw``: strip every ``name`` header line (case-insensitive)
    and, when ``value`` is given, add ``name: value`` as the last header line.

    None when there is nothing to do (no such header and nothing to add): one
    lowered copy of the header block and a find, as verstat_edits does."""
    raw = req.raw
    hend = req.headers_end
    present = raw[:hend].lower().find(b"\n" + name.lower()) >= 0
    if not present and value is None:
        return None
    edits: list[tuple[int, int, bytes]] = []
    if present:
        for s, e in req.header_spans(name):
            edits.append((req.header_line_start(s), e + 2, b""))
    if value is not None:
        # after the last header line's CRLF, before the empty line
        edits.append((hend + 2, hend + 2, name + b": " + value + b"\r\n"))
    return tuple(edits) if edits else None
