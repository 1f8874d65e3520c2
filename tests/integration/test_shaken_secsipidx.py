"""Interop of rules/shaken.py with secsipidx (Debian package ``secsipidx``), both ways.

secsipidx signs with the test signer's key (generated in the test) and
rules.shaken verifies; rules.shaken's test signer signs and ``secsipidx
-check`` verifies, the certificate handed over as a local file (``-p``) and
the chain checked against the test root (``-ca-file``/``-ca-inter``,
``-cert-verify 15``). No network: nothing is fetched, nothing listens.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rules.shaken import FAILED, PASSED, Verifier
from tests.unit.shaken_pki import PKI, X5U, identity, key_pem, passport, pem

SECSIPIDX = shutil.which("secsipidx")
pytestmark = pytest.mark.skipif(
    SECSIPIDX is None, reason="secsipidx not installed (apt-get install secsipidx)"
)
ORIGID = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture
def files(pki: PKI, tmp_path: Path) -> dict[str, Path]:
    out = {
        "key": tmp_path / "signer.key",
        "cert": tmp_path / "signer.pem",
        "root": tmp_path / "root.pem",
        "inter": tmp_path / "inter.pem",
    }
    out["key"].write_bytes(key_pem(pki.signer_key))
    out["cert"].write_bytes(pem(pki.signer))
    out["root"].write_bytes(pki.anchors)
    out["inter"].write_bytes(pem(pki.inter))
    return out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert SECSIPIDX is not None
    return subprocess.run(
        [SECSIPIDX, *args], capture_output=True, text=True, timeout=30, check=False
    )


def _iat(value: bytes) -> int:
    p64 = value.split(b";")[0].split(b".")[1]
    return int(json.loads(base64.urlsafe_b64decode(p64 + b"=" * (-len(p64) % 4)))["iat"])


def test_secsipidx_signed_header_verifies_here(pki: PKI, files: dict[str, Path]) -> None:
    proc = _run(
        "-sign-full",
        "-k", str(files["key"]),
        "-attest", "A",
        "-orig-tn", "12127360123",
        "-dest-tn", "13125557000",
        "-orig-id", ORIGID,
        "-x5u", X5U,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    value = proc.stdout.strip().encode()
    assert b";info=<" + X5U.encode() + b">" in value
    v = Verifier(pki.anchors, {X5U: pki.chain}.get)
    now = _iat(value)
    res = v.verify([value], "+12127360123", "+13125557000", now)
    assert (res.verstat, res.attest, res.ocn) == (PASSED, "A", "1234"), res
    # one byte of the signature changed: refused
    token, _, rest = value.partition(b";")
    bad = token[:-2] + (b"A" if token[-2:-1] != b"A" else b"B") + token[-1:] + b";" + rest
    assert v.verify([bad], "+12127360123", "+13125557000", now).reason == "bad_signature"


def _check(
    files: dict[str, Path], value: bytes, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    ident = tmp_path / "identity.txt"
    ident.write_bytes(value)
    return _run(
        "-check",
        "-fidentity", str(ident),
        "-p", str(files["cert"]),
        "-ca-file", str(files["root"]),
        "-ca-inter", str(files["inter"]),
        "-cert-verify", "15",
        "-expire", "60",
    )  # fmt: skip


def test_our_header_verifies_in_secsipidx(pki: PKI, files: dict[str, Path], tmp_path: Path) -> None:
    # secsipidx reads the clock itself: sign with the current time.
    value = identity(passport(pki.signer_key, iat=int(time.time())))
    proc = _check(files, value, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
    # and secsipidx refuses what our verifier refuses: another key
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = identity(passport(ec.generate_private_key(ec.SECP256R1()), iat=int(time.time())))
    proc = _check(files, forged, tmp_path)
    assert proc.returncode != 0 and "not-ok" in proc.stdout
    ours = Verifier(pki.anchors, {X5U: pki.chain}.get)
    assert ours.verify([forged], "+12127360123", "+13125557000", time.time()).verstat == FAILED


def test_secsipidx_refuses_a_chain_to_another_root(
    pki: PKI, files: dict[str, Path], tmp_path: Path
) -> None:
    files["root"].write_bytes(PKI().anchors)
    value = identity(passport(pki.signer_key, iat=int(time.time())))
    proc = _check(files, value, tmp_path)
    assert proc.returncode != 0 and "unknown authority" in proc.stdout + proc.stderr
