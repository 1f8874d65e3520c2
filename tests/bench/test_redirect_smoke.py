"""Smoke run of benchmarks/run_redirect.py, so it cannot rot: 50 INVITE/s for
3 s against sipscreen in redirect mode and Kamailio answering the same
302/603 (kamailio-redirect.cfg), on ephemeral ports, the report to a temp
path. Every INVITE answered (302 for the allowed, 603 for the ~5% blocked)
and ACKed, and the ratio line produced. ~25 s."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402
import run_redirect  # noqa: E402


def test_redirect_benchmark_smoke(tmp_path: Path) -> None:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (apt-get install -y sip-tester)")
    if harness.which_kamailio() is None or harness.sipscreen_available() is not None:
        pytest.skip("needs Kamailio and a runnable sipscreen")
    out = tmp_path / "RESULTS.md"
    a = run_redirect.parse_args(
        ["--rates", "50", "--duration", "3", "--ports", "auto", "--blocked", "1000",
         "--csv-lines", "2000", "--out", str(out), "--no-install",
         "--systems", "sipscreen-redirect,kamailio-redirect"]
    )  # fmt: skip
    results, skipped, _counts, moved = run_redirect.run_redirect_ladder(a)
    assert not skipped
    for r in results:
        assert r.clean, (r.system, r.successful, r.failed, r.note)
        assert r.successful == r.attempted == 150
        assert r.declined + moved[(r.system, 50)] == 150 and r.declined > 0
    line = run_redirect.redirect_ratio_line(results)
    assert line == "sipscreen redirect/kamailio max clean INVITE/s ratio: 1.00"
