"""STIR/SHAKEN verification of an INVITE's Identity header, sans-I/O.

How this works: :class:`Verifier` is built once from the configured STI-CA
trust anchors (a PEM bundle as the STI-PA publishes it), an optional CRL and
a *certificate source* (a callable ``x5u -> bytes | None`` supplied by an
adapter; it never fetches: ``None`` means "not cached yet"). For each INVITE
the screening glue calls ``verify(identity_values, caller, callee, now)``:

1. the Identity header (RFC 8224 §4; compact name ``y`` is mapped by the SIP
   parser) is split into the PASSporT and its ``info``/``alg``/``ppt``
   parameters; the PASSporT (RFC 8225 §5, full form, RFC 8224 §4) is
   base64url-decoded and its JOSE header (``alg`` ES256, ``typ`` passport,
   ``ppt`` shaken, ``x5u``; RFC 8588 §4) and claims (``attest`` A/B/C,
   ``orig.tn``, ``dest.tn``, ``iat``, ``origid``; RFC 8588 §4) are checked;
2. the certificate named by ``x5u`` is taken from the source, chained to a
   trust anchor (signature, validity dates at ``now``, CA basic constraints),
   checked against the CRL, and its SPC (the signer's OCN) read from the
   TNAuthList extension (RFC 8226 §9, OID 1.3.6.1.5.5.7.1.26);
3. the ES256 signature (RFC 7518 §3.4: raw ``r || s``) is verified over
   ``header.payload`` with ``cryptography``;
4. the claims are checked against the call: ``iat`` within ``iat_window_s``
   of ``now`` (RFC 8224 §6.2.1 step 4), ``orig.tn`` equal to the normalised
   caller and ``dest.tn`` containing the callee (RFC 8224 §6.2.1 step 2).

Steps 1-3 depend only on the header value (and the certificate), so their
outcome is cached by the exact header value until ``iat`` leaves the window
(bounded, oldest out first): retransmissions and repeated headers do not pay
the signature check again. Step 4 is rerun on every call (cheap).

The result is a :class:`ShakenResult` (immutable): ``verstat`` as ATIS-1000074
names it (``TN-Validation-Passed`` / ``TN-Validation-Failed`` /
``No-TN-Validation``), a short ``reason`` for anything but a pass, and
``attest``, ``ocn``, ``x5u`` when they could be read. Malformed input gives a
reason, never an exception. No clock is read, no socket opened.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "POLICY_ACTIONS",
    "AttestationPolicy",
    "FAILED",
    "NO_VALIDATION",
    "PASSED",
    "REASONS",
    "TNAUTHLIST_OID",
    "PASSporT",
    "ShakenError",
    "ShakenResult",
    "Verifier",
    "load_certificates",
    "parse_identity",
    "tnauthlist_spc",
]

# ATIS-1000074 §5.3.1 verstat values.
PASSED = "TN-Validation-Passed"
FAILED = "TN-Validation-Failed"
NO_VALIDATION = "No-TN-Validation"

# The reasons a result carries (metric label values: a closed set).
REASONS = (
    "unsigned",  # no Identity header: No-TN-Validation
    "cert_pending",  # the adapter has no certificate for x5u yet: No-TN-Validation
    "malformed",
    "unsupported",
    "bad_signature",
    "chain",
    "revoked",
    "stale",
    "claims_mismatch",
)

# RFC 8226 §9: id-pe-TNAuthList.
TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")

# A SHAKEN Identity header is ~600-900 bytes; anything far larger is refused
# before any decoding work.
MAX_IDENTITY = 4096
_MAX_CHAIN = 5


class ShakenError(ValueError):
    """An Identity header that cannot be verified; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ShakenResult:
    """The outcome of verifying one INVITE (ATIS-1000074 verstat)."""

    verstat: str
    reason: str = ""  # "" on a pass, else one of REASONS
    attest: str | None = None
    ocn: str | None = None
    x5u: str | None = None
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.verstat == PASSED


UNSIGNED = ShakenResult(NO_VALIDATION, "unsigned", detail="no Identity header")

POLICY_ACTIONS = ("pass", "mark", "block")


@dataclass(frozen=True, slots=True)
class AttestationPolicy:
    """What the operator does with an upstream provider's calls by their
    verification result (operator policy, not a rule of the CFR: blocking on
    attestation alone is a carrier's choice). Each is "pass" (counted in
    sipscreen_shaken_results_total), "mark" (passed, never blocked, but the
    forwarded INVITE carries the mark header for the softswitch to route or
    display on; counted, logged and recorded: rules/engine.py shaken_mark) or
    "block" (the deterministic answer).

    ``unsigned``: no Identity header; ``c_attested``: verified, attestation C
    (gateway); ``failed``: TN-Validation-Failed, whatever the reason. A call
    whose certificate is not cached yet ("cert_pending") is never judged.
    """

    unsigned: str = "pass"
    c_attested: str = "pass"
    failed: str = "pass"

    @property
    def blocks_anything(self) -> bool:
        return "block" in (self.unsigned, self.c_attested, self.failed)

    @property
    def acts_on_anything(self) -> bool:
        """Some case is marked or blocked (else the engine can skip the policy)."""
        return any(a != "pass" for a in (self.unsigned, self.c_attested, self.failed))


@dataclass(frozen=True, slots=True)
class PASSporT:
    """A parsed SHAKEN PASSporT (RFC 8225 + RFC 8588), not yet verified."""

    signing_input: bytes  # ASCII "header.payload" (RFC 7515 §5.1)
    signature: bytes  # raw r || s, 64 bytes for ES256
    x5u: str
    attest: str
    orig_tn: str  # canonical: digits only (RFC 8224 §8.3)
    dest_tns: tuple[str, ...]  # canonical
    iat: int
    origid: str


# -- parsing (RFC 8224 §4, RFC 8225 §5, RFC 8588 §4) ---------------------------


_B64URL_RE = re.compile(rb"[A-Za-z0-9_-]+")


def _b64url(part: bytes, what: str) -> bytes:
    # RFC 7515 §2: base64url without padding; any other byte is malformed.
    # (A compiled fullmatch: the alphabet check in C, not per byte in Python.)
    if _B64URL_RE.fullmatch(part) is None:
        raise ShakenError("malformed", f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise ShakenError("malformed", f"{what} is not base64url") from None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise ShakenError("malformed", f"{what} is not JSON") from None
    if not isinstance(obj, dict):
        raise ShakenError("malformed", f"{what} is not a JSON object")
    return obj


def _params(rest: bytes) -> dict[str, str]:
    """``;info=<url>;alg=ES256;ppt=shaken`` -> lower-case names, unquoted values."""
    out: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        if rest[i] in b" \t;":
            i += 1
            continue
        eq = rest.find(b"=", i)
        semi = rest.find(b";", i)
        if eq < 0 or (0 <= semi < eq):
            end = n if semi < 0 else semi
            out[rest[i:end].strip().decode("latin-1").lower()] = ""
            i = end
            continue
        name = rest[i:eq].strip().decode("latin-1").lower()
        j = eq + 1
        while j < n and rest[j] in b" \t":
            j += 1
        if j < n and rest[j : j + 1] == b"<":  # ident-info-uri = LAQUOT absoluteURI RAQUOT
            close = rest.find(b">", j)
            if close < 0:
                raise ShakenError("malformed", "unterminated <> in Identity parameters")
            value, i = rest[j + 1 : close], close + 1
        elif j < n and rest[j : j + 1] == b'"':
            close = rest.find(b'"', j + 1)
            if close < 0:
                raise ShakenError("malformed", 'unterminated " in Identity parameters')
            value, i = rest[j + 1 : close], close + 1
        else:
            end = n if semi < 0 else semi
            value, i = rest[j:end].strip(), end
        out[name] = value.decode("latin-1")
    return out


# parse_identity's memo of Identity parameters and valid JOSE headers (pure:
# the same bytes always parse the same); cleared whole when full.
_SEEN_MAX = 256
_PARAMS_SEEN: dict[bytes, dict[str, str]] = {}
_HEADER_SEEN: dict[bytes, str] = {}


def _jose_header(h64: bytes) -> str:
    """The x5u of a valid SHAKEN JOSE header (RFC 8225 §4.1, RFC 8588 §4)."""
    header = _json_object(_b64url(h64, "PASSporT header"), "PASSporT header")
    alg = header.get("alg")
    if alg != "ES256":  # RFC 8225 §4.1 / RFC 8588 §4
        raise ShakenError("unsupported", f"header alg {alg!r}")
    if header.get("typ") != "passport":  # RFC 8225 §4.1
        raise ShakenError("unsupported", f"header typ {header.get('typ')!r}")
    if header.get("ppt") != "shaken":  # RFC 8588 §4
        raise ShakenError("unsupported", f"header ppt {header.get('ppt')!r}")
    x5u = header.get("x5u")
    if not isinstance(x5u, str) or not x5u:
        raise ShakenError("malformed", "header x5u missing")
    return x5u


def parse_identity(value: bytes) -> PASSporT:
    """Parse one Identity header value; raise :class:`ShakenError` on any defect."""
    if len(value) > MAX_IDENTITY:
        raise ShakenError("malformed", f"Identity header over {MAX_IDENTITY} bytes")
    value = value.strip()
    semi = value.find(b";")
    token, rest = (value, b"") if semi < 0 else (value[:semi].strip(), value[semi + 1 :])
    # The parameters and the JOSE header are the same on every call from one
    # signer: each is parsed once and kept (bounded) by its exact bytes.
    params = _PARAMS_SEEN.get(rest)
    if params is None:
        params = _params(rest)
        if len(_PARAMS_SEEN) >= _SEEN_MAX:
            _PARAMS_SEEN.clear()
        _PARAMS_SEEN[rest] = params
    # RFC 8224 §4: alg defaults to ES256, ppt absent means a plain PASSporT.
    if params.get("alg", "ES256") != "ES256":
        raise ShakenError("unsupported", f"alg={params['alg']}")
    if params.get("ppt", "shaken") != "shaken":
        raise ShakenError("unsupported", f"ppt={params['ppt']}")
    parts = token.split(b".")
    if len(parts) != 3:
        raise ShakenError("malformed", "PASSporT is not header.payload.signature")
    h64, p64, s64 = parts
    if not p64:
        # RFC 8224 §4: the Identity header carries the full form.
        raise ShakenError("unsupported", "compact-form PASSporT")
    x5u = _HEADER_SEEN.get(h64)
    if x5u is None:
        x5u = _jose_header(h64)
        if len(_HEADER_SEEN) >= _SEEN_MAX:
            _HEADER_SEEN.clear()
        _HEADER_SEEN[h64] = x5u
    payload = _json_object(_b64url(p64, "PASSporT payload"), "PASSporT payload")
    signature = _b64url(s64, "PASSporT signature")
    info = params.get("info")
    if info is not None and info != x5u:  # RFC 8224 §4: info carries x5u
        raise ShakenError("malformed", "Identity info differs from x5u")
    if len(signature) != 64:  # RFC 7518 §3.4: r || s, 32 bytes each
        raise ShakenError("malformed", "ES256 signature is not 64 bytes")

    attest = payload.get("attest")
    if attest not in ("A", "B", "C"):  # RFC 8588 §4
        raise ShakenError("malformed", f"attest {attest!r}")
    orig = payload.get("orig")
    orig_tn = orig.get("tn") if isinstance(orig, dict) else None
    if not isinstance(orig_tn, str) or not orig_tn:
        raise ShakenError("malformed", "orig.tn missing")
    dest = payload.get("dest")
    dest_tn = dest.get("tn") if isinstance(dest, dict) else None
    if isinstance(dest_tn, str):
        dest_tn = [dest_tn]
    if not isinstance(dest_tn, list) or not dest_tn or not all(isinstance(t, str) for t in dest_tn):
        raise ShakenError("malformed", "dest.tn missing")
    iat = payload.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise ShakenError("malformed", "iat is not an integer")
    origid = payload.get("origid")
    if not isinstance(origid, str) or not origid:
        raise ShakenError("malformed", "origid missing")
    return PASSporT(
        h64 + b"." + p64,
        signature,
        x5u,
        attest,
        _tn(orig_tn),
        tuple(_tn(t) for t in dest_tn),
        iat,
        origid,
    )


def _tn(number: str | None) -> str:
    """RFC 8224 §8.3 canonical form: digits only (the leading + dropped)."""
    if not number:
        return ""
    body = number[1:] if number[0] == "+" else number
    if body.isascii() and body.isdigit():  # the common case: no copy per character
        return body
    return "".join(c for c in number if c.isdigit())


# -- certificates (RFC 8226) -----------------------------------------------------


def _der_tlv(buf: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER TLV at ``i``."""
    if i + 2 > len(buf):
        raise ValueError("truncated")
    tag = buf[i]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    ln = buf[i + 1]
    j = i + 2
    if ln & 0x80:
        k = ln & 0x7F
        if k == 0 or k > 3 or j + k > len(buf):
            raise ValueError("bad length")
        ln = int.from_bytes(buf[j : j + k], "big")
        j += k
    if j + ln > len(buf):
        raise ValueError("truncated")
    return tag, j, j + ln


def tnauthlist_spc(der: bytes) -> str | None:
    """The first SPC in a TNAuthList extension value (RFC 8226 §9), or None.

    ``TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry``,
    ``TNEntry ::= CHOICE { spc [0] ServiceProviderCode, range [1] ..., one [2] ... }``,
    ``ServiceProviderCode ::= IA5String``. The module is EXPLICIT TAGS
    (``A0 len 16 len SPC``); the implicit encoding (``80 len SPC``) some
    issuers produce is read too. Anything else gives None.
    """
    try:
        tag, i, end = _der_tlv(der, 0)
        if tag != 0x30 or end != len(der):
            return None
        spc: str | None = None
        while i < end:  # every entry must be well formed, not just the first SPC
            tag, c0, c1 = _der_tlv(der, i)
            i = c1
            if tag == 0xA0:  # [0] EXPLICIT IA5String
                t2, d0, d1 = _der_tlv(der, c0)
                if t2 != 0x16 or d1 != c1:
                    return None
                raw = der[d0:d1]
            elif tag == 0x80:  # [0] IMPLICIT
                raw = der[c0:c1]
            else:
                continue
            if not (raw and raw.isascii() and raw.isalnum()):
                return None
            if spc is None:
                spc = raw.decode("ascii")
        return spc
    except ValueError:
        return None


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in ``data``: a PEM bundle, or one DER certificate.

    Raises ValueError when nothing can be read.
    """
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
    else:
        certs = [x509.load_der_x509_certificate(data)]
    if not certs:
        raise ValueError("no certificate")
    return certs


def _load_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN" not in data:
        return [x509.load_der_x509_crl(data)]
    out = []
    marker = b"-----BEGIN X509 CRL-----"
    for chunk in data.split(marker)[1:]:
        out.append(x509.load_pem_x509_crl(marker + chunk))
    if not out:
        raise ValueError("no CRL in the PEM data")
    return out


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# -- the verifier ----------------------------------------------------------------

CertSource = Callable[[str], bytes | None]
_ISSUER_KEYS = (
    ec.EllipticCurvePublicKey,
    rsa.RSAPublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
)


_ES256 = ec.ECDSA(hashes.SHA256())


@dataclass(frozen=True, slots=True)
class _Signer:
    """A certificate (chain) as served at one x5u, checked once (not by time)."""

    data: bytes
    key: ec.EllipticCurvePublicKey | None  # None: failure says why
    ocn: str | None
    not_before: float  # the chain's validity window, UNIX seconds
    not_after: float
    failure: tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Checked:
    """What the cache keeps for one header value: the parse and the crypto outcome."""

    passport: PASSporT | None
    failure: ShakenResult | None  # set when steps 1-3 failed
    ocn: str | None
    expires: float


class Verifier:
    """Verify Identity headers against configured trust anchors (see module doc)."""

    def __init__(
        self,
        trust_anchors: bytes,
        certs: CertSource,
        *,
        crl: bytes | None = None,
        iat_window_s: int = 60,
        cache_size: int = 4096,
    ) -> None:
        """``trust_anchors``: PEM bundle of STI-CA roots; ``certs``: x5u -> the
        certificate (PEM chain or DER) or None when not cached yet; ``crl``:
        PEM or DER CRL(s). Raises ValueError on unreadable anchors or CRL."""
        self._anchors = load_certificates(trust_anchors)
        self._crls = _load_crls(crl) if crl else []
        self._certs = certs
        self.iat_window_s = iat_window_s
        self._cache: OrderedDict[bytes, _Checked] = OrderedDict()
        # x5u -> its certificate checked once (chain, CRL, TNAuthList, key).
        self._signers: dict[str, _Signer] = {}
        self._cache_size = cache_size
        # The adapter that feeds ``certs`` (proxy/certfetch.py), if any: opaque here.
        self.fetcher: object | None = None

    def clear_cache(self) -> None:
        self._cache.clear()
        self._signers.clear()

    # steps 1-3 (cached) -----------------------------------------------------

    def _check_token(self, value: bytes, now: float) -> _Checked | None:
        """Parse + certificate + signature; None when the certificate is pending."""
        try:
            pp = parse_identity(value)
        except ShakenError as exc:
            return _Checked(None, ShakenResult(FAILED, exc.reason, detail=exc.detail), None, 0.0)
        if abs(now - pp.iat) > self.iat_window_s:
            # RFC 8224 §6.2.1 step 4, before any certificate or signature
            # work: a replayed old header costs a parse, not an ES256 check
            # (not cached: expires 0).
            res = ShakenResult(
                FAILED, "stale", pp.attest, None, pp.x5u, f"iat {pp.iat} outside the window"
            )
            return _Checked(pp, res, None, 0.0)
        return self._check_crypto(pp, now)

    def _check_crypto(self, pp: PASSporT, now: float) -> _Checked | None:
        expires = float(pp.iat + self.iat_window_s)

        def failed(reason: str, detail: str) -> _Checked:
            res = ShakenResult(FAILED, reason, pp.attest, None, pp.x5u, detail)
            return _Checked(pp, res, None, expires)

        data = self._certs(pp.x5u)
        if data is None:
            return None
        signer = self._signers.get(pp.x5u)
        if signer is None or (signer.data is not data and signer.data != data):
            signer = self._signer(data)
            self._signers[pp.x5u] = signer
            if len(self._signers) > self._cache_size:
                del self._signers[next(iter(self._signers))]
        if signer.key is None:
            return failed(*signer.failure)
        if not signer.not_before <= now <= signer.not_after:
            return failed("chain", "a certificate of the chain is not valid now")
        sig = encode_dss_signature(
            int.from_bytes(pp.signature[:32], "big"), int.from_bytes(pp.signature[32:], "big")
        )
        try:
            signer.key.verify(sig, pp.signing_input, _ES256)
        except InvalidSignature:
            return failed("bad_signature", "ES256 signature does not verify")
        return _Checked(pp, None, signer.ocn, expires)

    def _signer(self, data: bytes) -> _Signer:
        """What a certificate (chain) at an x5u gives, whatever the time: the
        leaf key and OCN and the chain's validity window, or why it fails."""

        def failed(reason: str, detail: str) -> _Signer:
            return _Signer(data, None, None, 0.0, 0.0, (reason, detail))

        try:
            certs = load_certificates(data)
        except ValueError:
            return failed("chain", "certificate at x5u unreadable")
        leaf = certs[0]
        chain = self._chain(leaf, certs[1:])
        if isinstance(chain, tuple):
            return failed(*chain)
        revoked = self._revoked(chain[:-1], [*certs[1:], *self._anchors])
        if revoked is not None:
            return failed(*revoked)
        try:
            ext = leaf.extensions.get_extension_for_oid(TNAUTHLIST_OID).value
        except x509.ExtensionNotFound:
            return failed("chain", "no TNAuthList in the certificate")
        der = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        ocn = tnauthlist_spc(der)
        if ocn is None:
            return failed("chain", "TNAuthList has no readable SPC")
        key = leaf.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            return failed("unsupported", "certificate key is not P-256")
        not_before = max(c.not_valid_before_utc.timestamp() for c in chain)
        not_after = min(c.not_valid_after_utc.timestamp() for c in chain)
        return _Signer(data, key, ocn, not_before, not_after, ("", ""))

    def _chain(
        self, leaf: x509.Certificate, extra: Sequence[x509.Certificate]
    ) -> list[x509.Certificate] | tuple[str, str]:
        """Leaf -> intermediates -> an anchor (the list, anchor last), or why not
        (RFC 5280 §6, minimal: names, signatures, CA basic constraints)."""
        chain = [leaf]
        cert = leaf
        for _ in range(_MAX_CHAIN):
            anchor = next((a for a in self._anchors if _issued_by(cert, a)), None)
            if anchor is not None:
                chain.append(anchor)
                return chain
            issuer = next((c for c in extra if _is_ca(c) and _issued_by(cert, c)), None)
            if issuer is None:
                return ("chain", "certificate does not chain to a trust anchor")
            chain.append(issuer)
            cert = issuer
        return ("chain", "chain too long")

    def _revoked(
        self, chain: Iterable[x509.Certificate], issuers: Sequence[x509.Certificate]
    ) -> tuple[str, str] | None:
        for cert in chain:
            for crl in self._crls:
                if crl.issuer != cert.issuer:
                    continue
                signer = next((c for c in issuers if c.subject == crl.issuer), None)
                if signer is None:
                    continue
                key = signer.public_key()
                if not isinstance(key, _ISSUER_KEYS):
                    continue
                if not crl.is_signature_valid(key):
                    continue
                if crl.get_revoked_certificate_by_serial_number(cert.serial_number):
                    return ("revoked", f"serial {cert.serial_number:x} revoked by CRL")
        return None

    # the entry point ---------------------------------------------------------

    def verify(
        self, values: Sequence[bytes], caller: str | None, callee: str | None, now: float
    ) -> ShakenResult:
        """Verify the first Identity header value (``values``: every value)."""
        if not values:
            return UNSIGNED
        value = values[0]
        if b"," in value:  # RFC 3261 §7.3.1: a comma-joined list on one line
            value = value.split(b",", 1)[0]
        cache = self._cache
        hit = cache.get(value)
        if hit is None or hit.expires < now:
            checked = self._check_token(value, now)
            if checked is None:
                return ShakenResult(
                    NO_VALIDATION, "cert_pending", detail="certificate not cached yet"
                )
            if hit is not None:
                del cache[value]
            if checked.expires >= now and len(value) <= MAX_IDENTITY:
                cache[value] = checked
                if len(cache) > self._cache_size:
                    cache.popitem(last=False)
            hit = checked
        if hit.failure is not None:
            return hit.failure
        pp = hit.passport
        assert pp is not None
        # RFC 8224 §6.2.1 step 4: freshness, both ways (a future iat too).
        if abs(now - pp.iat) > self.iat_window_s:
            return ShakenResult(
                FAILED, "stale", pp.attest, hit.ocn, pp.x5u, f"iat {pp.iat} outside the window"
            )
        # RFC 8224 §6.2.1 step 2 / RFC 8225 §5.2.1: the tn claims match the call.
        if _tn(caller) != pp.orig_tn:
            return ShakenResult(
                FAILED, "claims_mismatch", pp.attest, hit.ocn, pp.x5u, "orig.tn is not the caller"
            )
        dest = _tn(callee)
        if not dest or dest not in pp.dest_tns:
            return ShakenResult(
                FAILED, "claims_mismatch", pp.attest, hit.ocn, pp.x5u, "dest.tn lacks the callee"
            )
        return ShakenResult(PASSED, "", pp.attest, hit.ocn, pp.x5u)
