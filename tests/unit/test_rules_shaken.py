"""rules/shaken.py: Identity parsing, PASSporT verification, claims, cache.

Every certificate and key is generated in the test (tests/unit/shaken_pki.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.shaken import (
    FAILED,
    NO_VALIDATION,
    PASSED,
    REASONS,
    ShakenError,
    Verifier,
    parse_identity,
    tnauthlist_spc,
)
from tests.unit.shaken_pki import (
    EPOCH,
    NOW,
    PKI,
    X5U,
    b64u,
    identity,
    passport,
    pem,
    tnauthlist_der,
)

CALLER = "+12127360123"
CALLEE = "+13125557000"


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


def verifier(pki: PKI, chain: bytes | None = None, **kw: object) -> Verifier:
    served = {X5U: pki.chain if chain is None else chain}
    return Verifier(pki.anchors, served.get, **kw)  # type: ignore[arg-type]


def check(v: Verifier, value: bytes, *, now: float = NOW, caller: str = CALLER) -> object:
    return v.verify([value], caller, CALLEE, now)


def test_valid_a_attested_passes(pki: PKI) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key)))
    assert res.verstat == PASSED and res.reason == ""  # type: ignore[attr-defined]
    assert (res.attest, res.ocn, res.x5u) == ("A", "1234", X5U)  # type: ignore[attr-defined]


@pytest.mark.parametrize("attest", ["B", "C"])
def test_b_and_c_attestation_pass_verification(pki: PKI, attest: str) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key, attest=attest)))
    assert res.verstat == PASSED and res.attest == attest  # type: ignore[attr-defined]


def test_compact_header_params_and_missing_params(pki: PKI) -> None:
    token = passport(pki.signer_key)
    v = verifier(pki)
    # info only (alg defaults to ES256, RFC 8224 §4), extra whitespace
    assert check(v, token + b" ; info=<" + X5U.encode() + b">").verstat == PASSED  # type: ignore[attr-defined]
    assert check(v, token).verstat == PASSED  # type: ignore[attr-defined]


def test_unsigned_is_no_validation(pki: PKI) -> None:
    res = verifier(pki).verify([], CALLER, CALLEE, NOW)
    assert (res.verstat, res.reason) == (NO_VALIDATION, "unsigned")


def test_certificate_pending_is_no_validation_and_not_cached(pki: PKI) -> None:
    served: dict[str, bytes] = {}
    v = Verifier(pki.anchors, served.get)
    value = identity(passport(pki.signer_key))
    res = v.verify([value], CALLER, CALLEE, NOW)
    assert (res.verstat, res.reason) == (NO_VALIDATION, "cert_pending")
    served[X5U] = pki.chain  # the adapter fetched it
    assert v.verify([value], CALLER, CALLEE, NOW).verstat == PASSED


def _reason(res: object) -> tuple[str, str]:
    return res.verstat, res.reason  # type: ignore[attr-defined]


def test_tampered_payload(pki: PKI) -> None:
    h, _p, s = passport(pki.signer_key).split(b".")
    forged = passport(pki.signer_key, attest="A", orig="12127360199").split(b".")[1]
    res = check(verifier(pki), identity(h + b"." + forged + b"." + s), caller="+12127360199")
    assert _reason(res) == (FAILED, "bad_signature")


def test_wrong_key(pki: PKI) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    res = check(verifier(pki), identity(passport(other)))
    assert _reason(res) == (FAILED, "bad_signature")
    assert res.ocn is None  # type: ignore[attr-defined]


def test_expired_certificate(pki: PKI) -> None:
    old = pki.signer_cert(serial=101, not_after=EPOCH + dt.timedelta(days=30))
    res = check(verifier(pki, pem(old, pki.inter)), identity(passport(pki.signer_key)))
    assert _reason(res) == (FAILED, "chain")


def test_not_yet_valid_certificate(pki: PKI) -> None:
    late = pki.signer_cert(serial=102, not_before=dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
    res = check(verifier(pki, pem(late, pki.inter)), identity(passport(pki.signer_key)))
    assert _reason(res) == (FAILED, "chain")


def test_unknown_ca(pki: PKI) -> None:
    other = PKI()
    res = check(verifier(pki, other.chain), identity(passport(other.signer_key)))
    assert _reason(res) == (FAILED, "chain")


def test_missing_intermediate(pki: PKI) -> None:
    res = check(verifier(pki, pem(pki.signer)), identity(passport(pki.signer_key)))
    assert _reason(res) == (FAILED, "chain")


def test_der_leaf_signed_directly_by_anchor() -> None:
    p = PKI()
    from cryptography.hazmat.primitives import serialization

    from tests.unit.shaken_pki import make_cert

    leaf = make_cert(
        "leaf", p.signer_key, "Test STI-CA", p.root_key, ca=False, serial=7, spc="99ZZ"
    )
    v = Verifier(p.anchors, {X5U: leaf.public_bytes(serialization.Encoding.DER)}.get)
    res = v.verify([identity(passport(p.signer_key))], CALLER, CALLEE, NOW)
    assert (res.verstat, res.ocn) == (PASSED, "99ZZ")


def test_no_tnauthlist_is_a_chain_failure(pki: PKI) -> None:
    bare = pki.signer_cert(serial=103, spc=None)
    res = check(verifier(pki, pem(bare, pki.inter)), identity(passport(pki.signer_key)))
    assert _reason(res) == (FAILED, "chain")


def test_revoked_by_crl(pki: PKI) -> None:
    v = verifier(pki, crl=pki.crl(100))
    assert _reason(check(v, identity(passport(pki.signer_key)))) == (FAILED, "revoked")
    # a CRL revoking someone else leaves the call passing
    v2 = verifier(pki, crl=pki.crl(555))
    assert check(v2, identity(passport(pki.signer_key))).verstat == PASSED  # type: ignore[attr-defined]


def test_crl_signed_by_another_ca_is_ignored(pki: PKI) -> None:
    other = PKI()
    # same issuer name, wrong key: its revocations do not count
    v = verifier(pki, crl=other.crl(100))
    assert check(v, identity(passport(pki.signer_key))).verstat == PASSED  # type: ignore[attr-defined]


@pytest.mark.parametrize("age", [61, -61, 3600])
def test_stale_iat(pki: PKI, age: int) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key, iat=NOW - age)))
    assert _reason(res) == (FAILED, "stale")


def test_iat_window_is_configurable(pki: PKI) -> None:
    value = identity(passport(pki.signer_key, iat=NOW - 100))
    assert check(verifier(pki, iat_window_s=120), value).verstat == PASSED  # type: ignore[attr-defined]
    assert _reason(check(verifier(pki), value)) == (FAILED, "stale")


def test_mismatched_orig_tn(pki: PKI) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key)), caller="+12127360999")
    assert _reason(res) == (FAILED, "claims_mismatch")
    assert res.ocn == "1234"  # type: ignore[attr-defined]


def test_dest_tn_without_callee(pki: PKI) -> None:
    value = identity(passport(pki.signer_key, dest=("13125550100", "13125550101")))
    assert _reason(check(verifier(pki), value)) == (FAILED, "claims_mismatch")
    value2 = identity(passport(pki.signer_key, dest=("13125550100", "13125557000")))
    assert check(verifier(pki), value2).verstat == PASSED  # type: ignore[attr-defined]


def test_no_callee_is_a_mismatch(pki: PKI) -> None:
    res = verifier(pki).verify([identity(passport(pki.signer_key))], CALLER, None, NOW)
    assert _reason(res) == (FAILED, "claims_mismatch")


@pytest.mark.parametrize(
    "kw",
    [
        {"header": {"alg": "RS256"}},
        {"header": {"alg": "none"}},
        {"header": {"ppt": "div"}},
        {"header": {"typ": "JWT"}},
    ],
)
def test_unsupported_header(pki: PKI, kw: dict[str, object]) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key, **kw)))  # type: ignore[arg-type]
    assert _reason(res) == (FAILED, "unsupported")


@pytest.mark.parametrize("extra", [b";alg=RS256;ppt=shaken", b";alg=ES256;ppt=div"])
def test_unsupported_params(pki: PKI, extra: bytes) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key), extra=extra))
    assert _reason(res) == (FAILED, "unsupported")


def test_compact_passport_unsupported(pki: PKI) -> None:
    h, _p, s = passport(pki.signer_key).split(b".")
    assert _reason(check(verifier(pki), identity(h + b".." + s))) == (FAILED, "unsupported")


def _token(header: bytes, payload: bytes, sig: bytes = b"A" * 86) -> bytes:
    return b64u(header) + b"." + b64u(payload) + b"." + sig


GOOD_H = json.dumps({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}).encode()
GOOD_P = json.dumps(
    {"attest": "A", "dest": {"tn": ["1"]}, "iat": NOW, "orig": {"tn": "1"}, "origid": "x"}
).encode()


@pytest.mark.parametrize(
    "value",
    [
        b"not a passport",
        b"a.b",
        b"a.b.c.d",
        b"!!!." + b64u(GOOD_P) + b".AAAA",
        b64u(b"not json") + b"." + b64u(GOOD_P) + b"." + b"A" * 86,
        _token(b"[1,2]", GOOD_P),
        _token(GOOD_H, b"{"),
        _token(GOOD_H, GOOD_P, b"AAAA"),  # signature not 64 bytes
        _token(GOOD_H, GOOD_P, b"A" * 85),  # impossible base64 length
        _token(GOOD_H, GOOD_P.replace(b'"A"', b'"D"')),
        _token(GOOD_H, GOOD_P.replace(b'"iat": ' + str(NOW).encode(), b'"iat": "x"')),
        _token(GOOD_H, GOOD_P.replace(b'"iat": ' + str(NOW).encode(), b'"iat": true')),
        _token(GOOD_H, GOOD_P.replace(b'"orig": {"tn": "1"}', b'"orig": "1"')),
        _token(GOOD_H, GOOD_P.replace(b'{"tn": ["1"]}', b"{}")),
        _token(GOOD_H, GOOD_P.replace(b'"origid": "x"', b'"origid": 5')),
        _token(GOOD_H.replace(b'"x5u"', b'"x5x"'), GOOD_P),
        _token(GOOD_H, GOOD_P) + b";info=<https://elsewhere.test/c.pem>",
        _token(GOOD_H, GOOD_P) + b";info=<unterminated",
        b"=" * 10,
        b"",
    ],
)
def test_malformed(pki: PKI, value: bytes) -> None:
    res = check(verifier(pki), value)
    assert _reason(res) == (FAILED, "malformed"), res


def test_oversize_header_is_refused_before_decoding(pki: PKI) -> None:
    value = identity(passport(pki.signer_key)) + b";x=" + b"a" * 5000
    res = check(verifier(pki), value)
    assert _reason(res) == (FAILED, "malformed")
    assert "bytes" in res.detail  # type: ignore[attr-defined]


def test_parse_identity_raises_only_shaken_error() -> None:
    with pytest.raises(ShakenError) as exc:
        parse_identity(b"x.y.z")
    assert exc.value.reason == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_garbage_only_gives_a_reason(data: bytes) -> None:
    v = Verifier(PKI_FOR_FUZZ.anchors, {}.get)
    res = v.verify([data], CALLER, CALLEE, NOW)
    assert res.verstat in (FAILED, NO_VALIDATION) and res.reason in REASONS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_fuzz_b64_json_pieces(h: bytes, p: bytes) -> None:
    v = Verifier(PKI_FOR_FUZZ.anchors, {}.get)
    res = v.verify([b64u(h) + b"." + b64u(p) + b"." + b"A" * 86], CALLER, CALLEE, NOW)
    assert res.reason in REASONS


PKI_FOR_FUZZ = PKI()


# -- TNAuthList -------------------------------------------------------------------


def test_tnauthlist_explicit_and_implicit() -> None:
    assert tnauthlist_spc(tnauthlist_der("1234")) == "1234"
    assert tnauthlist_spc(tnauthlist_der("567A", implicit=True)) == "567A"


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x30\x05\xa0\x03\x16\x05ab",  # inner length past the end
        b"\x31\x06\xa0\x04\x16\x0212",  # SET, not SEQUENCE
        b"\x30\x06\xa0\x04\x0c\x0212",  # UTF8String, not IA5String
        b"\x30\x04\xa1\x02\x05\x00",  # a range, no SPC
        b"\x30\x84\xff\xff\xff\xff",  # absurd length
        b"\x30\x06\xa0\x04\x16\x02\x00\x01",  # not alphanumeric
        b"\x30\x07\xa0\x04\x16\x0212\x00",  # trailing byte inside the sequence
    ],
)
def test_tnauthlist_garbage_is_none(der: bytes) -> None:
    assert tnauthlist_spc(der) is None


@given(st.binary(max_size=40))
def test_tnauthlist_fuzz(der: bytes) -> None:
    out = tnauthlist_spc(der)
    assert out is None or out.isalnum()


def test_implicit_tnauthlist_in_a_certificate() -> None:
    p = PKI()
    p.signer = p.signer_cert(implicit=True)
    res = verifier(p).verify([identity(passport(p.signer_key))], CALLER, CALLEE, NOW)
    assert (res.verstat, res.ocn) == (PASSED, "1234")


# -- configuration errors ------------------------------------------------------------


def test_bad_anchors_or_crl_raise_valueerror(pki: PKI) -> None:
    with pytest.raises(ValueError):
        Verifier(b"garbage", {}.get)
    with pytest.raises(ValueError):
        Verifier(pki.anchors, {}.get, crl=b"garbage")


def test_unreadable_served_certificate(pki: PKI) -> None:
    res = check(verifier(pki, b"not a certificate"), identity(passport(pki.signer_key)))
    assert _reason(res) == (FAILED, "chain")


# -- cache -----------------------------------------------------------------------------


class CountingSource:
    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    def __call__(self, x5u: str) -> bytes | None:
        self.calls += 1
        return self.data


def test_cache_reuses_the_result_within_the_window(pki: PKI) -> None:
    src = CountingSource(pki.chain)
    v = Verifier(pki.anchors, src)
    value = identity(passport(pki.signer_key))
    for t in (NOW, NOW + 10, NOW + 60):
        assert v.verify([value], CALLER, CALLEE, t).verstat == PASSED
    assert src.calls == 1
    # claims are rechecked on a hit: same header, other caller
    assert _reason(v.verify([value], "+12127360999", CALLEE, NOW)) == (FAILED, "claims_mismatch")
    # past the window: stale (and not re-verified into a pass)
    assert _reason(v.verify([value], CALLER, CALLEE, NOW + 61)) == (FAILED, "stale")


def test_cache_is_bounded(pki: PKI) -> None:
    src = CountingSource(pki.chain)
    v = Verifier(pki.anchors, src, cache_size=2)
    values = [identity(passport(pki.signer_key, iat=NOW - i)) for i in range(3)]
    for val in values:
        v.verify([val], CALLER, CALLEE, NOW)
    assert len(v._cache) == 2
    v.verify([values[0]], CALLER, CALLEE, NOW)  # evicted: verified again
    assert src.calls == 4


def test_failures_are_cached_too(pki: PKI) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    src = CountingSource(pki.chain)
    v = Verifier(pki.anchors, src)
    value = identity(passport(other))
    for _ in range(3):
        assert _reason(v.verify([value], CALLER, CALLEE, NOW)) == (FAILED, "bad_signature")
    assert src.calls == 1


def test_result_is_immutable(pki: PKI) -> None:
    res = check(verifier(pki), identity(passport(pki.signer_key)))
    with pytest.raises(AttributeError):
        res.verstat = FAILED  # type: ignore[attr-defined, misc]


def test_signature_not_base64_is_malformed(pki: PKI) -> None:
    h, p, _s = passport(pki.signer_key).split(b".")
    sig = base64.b64encode(b"\xff" * 64)  # standard alphabet, '+' '/' '='
    assert _reason(check(verifier(pki), identity(h + b"." + p + b"." + sig)))[1] == "malformed"


def test_certificate_checked_once_per_x5u_and_again_when_it_changes(pki: PKI) -> None:
    served = {X5U: pki.chain}
    v = Verifier(pki.anchors, served.get, crl=pki.crl(555))
    a = identity(passport(pki.signer_key, iat=NOW))
    b = identity(passport(pki.signer_key, iat=NOW - 1))
    assert v.verify([a], CALLER, CALLEE, NOW).verstat == PASSED
    signer = v._signers[X5U]
    assert v.verify([b], CALLER, CALLEE, NOW).verstat == PASSED
    assert v._signers[X5U] is signer  # the chain was not checked again
    # the adapter now serves a revoked certificate at the same x5u
    v2 = Verifier(pki.anchors, served.get, crl=pki.crl(104))
    assert v2.verify([a], CALLER, CALLEE, NOW).verstat == PASSED
    served[X5U] = pem(pki.signer_cert(serial=104), pki.inter)
    c = identity(passport(pki.signer_key, iat=NOW - 2))
    assert _reason(v2.verify([c], CALLER, CALLEE, NOW)) == (FAILED, "revoked")


def test_chain_validity_is_judged_at_each_call(pki: PKI) -> None:
    short = pki.signer_cert(serial=105, not_after=dt.datetime.fromtimestamp(NOW + 30, dt.UTC))
    v = verifier(pki, pem(short, pki.inter))
    assert v.verify([identity(passport(pki.signer_key))], CALLER, CALLEE, NOW).verstat == PASSED
    late = identity(passport(pki.signer_key, iat=NOW + 40))
    assert _reason(v.verify([late], CALLER, CALLEE, NOW + 40)) == (FAILED, "chain")


def test_stale_header_costs_no_certificate_or_signature_work(pki: PKI) -> None:
    src = CountingSource(pki.chain)
    v = Verifier(pki.anchors, src)
    old = identity(passport(pki.signer_key, iat=NOW - 3600))
    for _ in range(3):
        assert _reason(v.verify([old], CALLER, CALLEE, NOW)) == (FAILED, "stale")
    assert src.calls == 0 and len(v._cache) == 0
