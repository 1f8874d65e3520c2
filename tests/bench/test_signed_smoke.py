"""Smoke run of ``run_compare.py --signed`` (benchmarks/signed.py), so it cannot rot.

How this works: the signed ladder runs briefly (one step, 50 calls/s for 3 s,
ephemeral 127.0.0.1 ports, report to a temp path, never benchmarks/RESULTS.md)
against sipscreen (``[shaken]`` on) and Kamailio (``secsipid_check_identity``),
every INVITE with its own valid Identity: every call must complete and be
counted as verified by the proxy that carried it. Then once more with a trust
anchor neither proxy's chain leads to: every call still completes (both relay
whatever the result) but none is verified, so every call is counted failed and
no step is clean. ~40 s.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import run_compare  # noqa: E402
import signed  # noqa: E402

RATE, DURATION = 50, 3.0


def _args(tmp: Path, out: Path) -> argparse.Namespace:
    return run_compare.parse_args(
        [
            "--signed", "--rates", str(RATE), "--duration", str(DURATION),
            "--blocked", "2000", "--csv-lines", "2000", "--systems", "sipscreen,kamailio",
            "--ports", "auto", "--out", str(out), "--workdir", str(tmp / "work"),
            "--no-install",
        ]
    )  # fmt: skip


@pytest.fixture
def peers(side_by_side_peers: None) -> None:
    if not glob.glob("/usr/lib/*/kamailio/modules/secsipid.so"):
        pytest.skip("secsipid not installed (apt-get install kamailio-secsipid-modules)")


def test_signed_side_by_side_every_call_verified(tmp_path: Path, peers: None) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text(f"intro\n{run_compare.BEGIN}\nudp table\n{run_compare.END}\n")
    results, skipped, report = run_compare.compare_signed(_args(tmp_path, out))
    assert not skipped
    by = {r.system: r for r in results}
    assert set(by) == {"sipscreen", "kamailio"}
    n = int(RATE * DURATION)
    for name, r in by.items():
        assert r.successful == r.attempted == n and r.failed == 0 and r.clean, f"{name}: {r}"
        assert f"verified {n}/{n}" in r.note, r.note
        assert 0 < r.declined < n  # the blocklist still answers 603 to signed calls
    text = out.read_text()
    assert text.startswith(f"intro\n{run_compare.BEGIN}\nudp table\n{run_compare.END}\n")
    assert run_compare.SIGNED_BEGIN in text
    assert "sipscreen/kamailio signed max clean CPS ratio: 1.00" in text
    assert "freshness window 3600 s on both sides" in report


def test_signed_unverified_calls_are_failures(
    tmp_path: Path, peers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.shaken_pki import PKI

    sign = signed.SignedData.sign

    def sign_then_other_anchor(self: signed.SignedData) -> None:
        sign(self)
        self.anchors.write_bytes(PKI().anchors)  # a root the signer does not chain to

    monkeypatch.setattr(signed.SignedData, "sign", sign_then_other_anchor)
    results, _, _ = run_compare.compare_signed(_args(tmp_path, tmp_path / "R.md"))
    n = int(RATE * DURATION)
    assert {r.system for r in results} == {"sipscreen", "kamailio"}
    for r in results:
        assert r.successful == 0 and r.failed == n and not r.clean, r
        assert f"verified 0/{n}, {n} not verified" in r.note, r.note
