"""Smoke run of the benchmark harness, so benchmarks/ cannot rot.

How this works: run_compare.compare() runs once (module fixture) at 50
calls/s for 3 s with every available system - SIPp UAC -> SIPp UAS
directly, through Kamailio (skipped when not installed) and through
sipscreen (`python -m proxy run`; skipped while it cannot start) - on
ephemeral 127.0.0.1 ports, writing its Markdown report to a temp path, never
to benchmarks/RESULTS.md. The tests check that every call completed, that
blocked callers got the 603 both proxies are configured to answer, and that
the table row and the ratio line were produced. Whole module: ~30 s.
Two quick tests check gen_data (valid NANP E.164 numbers that sipscreen's own
rules.numbers accepts, the same set for Kamailio, Redis and SIPp) and the
percentile helper.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gen_data  # noqa: E402
import harness  # noqa: E402
import run_compare  # noqa: E402

from rules.numbers import nanp_invalid_reason, normalise  # noqa: E402

RATE, DURATION = 50, 3.0


def test_gen_data_same_valid_e164_for_both_proxies(tmp_path: Path) -> None:
    """Every number is valid NANP in E.164 (so no DNO block), the Kamailio table,
    the Redis SADD stream and the SIPp CSV agree, ~5% of callers are blocked."""
    counts = gen_data.generate(str(tmp_path), blocked=3000, calls=4000, prefix="pfx:")
    blocked = (tmp_path / "blocklist.txt").read_text().split()
    assert len(blocked) == len(set(blocked)) == counts["blocked"] == 3000
    dbtext = (tmp_path / "dbtext" / "blocklist").read_text().splitlines()[1:]
    assert [row.split(":")[1] for row in dbtext] == blocked
    resp = (tmp_path / "redis_blocklist.resp").read_bytes().decode()
    assert resp.count("pfx:block:caller") == 1 + 3  # DEL + 3 SADD batches of 1000
    assert all(f"\r\n{n}\r\n" in resp for n in blocked[:50])
    rows = (tmp_path / "callers.csv").read_text().splitlines()
    assert rows[0] == "SEQUENTIAL" and len(rows) == 4001
    bset = set(blocked)
    hits = 0
    for row in rows[1:]:
        caller, callee, _ = row.split(";")
        for n in (caller, callee):
            assert normalise(n) == n and nanp_invalid_reason(n) is None, n
        hits += caller in bset
    assert hits == counts["blocked_calls"] and 0.03 < hits / 4000 < 0.07


def test_percentile_nearest_rank() -> None:
    vals = [float(v) for v in range(1, 101)]
    assert harness.percentile(vals, 50) == 50.0
    assert harness.percentile(vals, 99) == 99.0
    assert harness.percentile([0.0, 0.0, 4.0], 50) == 0.0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed (apt-get install -y sip-tester)")
    tmp = tmp_path_factory.mktemp("bench-smoke")
    systems = ["direct"]
    if harness.which_kamailio() is not None:
        systems.append("kamailio")
    if harness.sipscreen_available() is None:
        systems.append("sipscreen")
    args = run_compare.parse_args(
        [
            "--rates", str(RATE), "--duration", str(DURATION), "--workers", "1",
            "--blocked", "2000", "--csv-lines", "2000", "--systems", ",".join(systems),
            "--ports", "auto", "--out", str(tmp / "RESULTS.md"),
            "--workdir", str(tmp / "work"), "--no-install",
        ]
    )  # fmt: skip
    results, skipped, report = run_compare.compare(args)
    return {
        "results": {r.system: r for r in results},
        "report": report,
        "out": tmp / "RESULTS.md",
        "skipped": skipped,
    }


def _check_calls(smoke: dict[str, object], system: str, screened: bool) -> None:
    results = smoke["results"]
    assert isinstance(results, dict)
    r = results[system]
    assert isinstance(r, harness.StepResult)
    assert r.attempted == int(RATE * DURATION)
    assert r.successful == r.attempted, f"{system}: {r}"
    assert r.failed == 0 and r.incomplete == 0
    assert r.clean
    assert r.p50_ms is not None and r.p99_ms is not None and r.p50_ms <= r.p99_ms
    if screened:
        # ~5% blocked callers: 603 Decline from the proxy, the rest put through
        assert r.probe == 603
        assert 0 < r.declined < r.attempted
        assert r.declined + r.answered_200 == r.attempted
        assert r.cpu_s is not None and r.cpu_s > 0
    else:
        assert r.declined == 0 and r.answered_200 == r.attempted
    report = smoke["report"]
    assert isinstance(report, str)
    assert f"| {system} | {RATE} |" in report
    out = smoke["out"]
    assert isinstance(out, Path) and out.read_text() == report


@pytest.mark.sipp
@pytest.mark.slow
def test_direct_sipp_ceiling(smoke: dict[str, object]) -> None:
    _check_calls(smoke, "direct", screened=False)
    assert "max clean CPS ratio" in str(smoke["report"])


@pytest.mark.sipp
@pytest.mark.slow
def test_kamailio(smoke: dict[str, object]) -> None:
    if harness.which_kamailio() is None:
        pytest.skip("kamailio not installed (apt-get install -y kamailio)")
    _check_calls(smoke, "kamailio", screened=True)


@pytest.mark.sipp
@pytest.mark.slow
def test_sipscreen(smoke: dict[str, object]) -> None:
    why = harness.sipscreen_available()
    if why is not None:
        pytest.skip(f"sipscreen cannot start yet: {why}")
    _check_calls(smoke, "sipscreen", screened=True)


@pytest.mark.sipp
@pytest.mark.slow
def test_tls_side_by_side(tmp_path: Path, side_by_side_peers: None) -> None:
    """run_compare --transport tls, briefly: full calls over TLS to both proxies
    (benchmarks/tls_uac.py), the same cipher suite, the TLS section and ratio line
    appended to an existing report without touching the UDP section."""
    import glob

    pytest.importorskip("cryptography")
    if not glob.glob("/usr/lib/*/kamailio/modules/tls.so"):
        pytest.skip("Kamailio's tls module not installed (apt-get install kamailio-tls-modules)")
    out = tmp_path / "RESULTS.md"
    out.write_text(f"intro\n{run_compare.BEGIN}\nudp table\n{run_compare.END}\n")
    args = run_compare.parse_args(
        [
            "--transport", "tls", "--rates", str(RATE), "--duration", str(DURATION),
            "--blocked", "2000", "--csv-lines", "2000", "--systems", "sipscreen,kamailio",
            "--ports", "auto", "--out", str(out), "--workdir", str(tmp_path / "work"),
            "--no-install",
        ]
    )  # fmt: skip
    results, skipped, report = run_compare.compare(args)
    assert not skipped
    by = {r.system: r for r in results}
    for name in ("sipscreen", "kamailio"):
        r = by[name]
        assert r.successful == r.attempted and r.failed == 0, f"{name}: {r}"
        assert 0 < r.declined < r.attempted and r.declined + r.answered_200 == r.attempted
        assert "ECDHE-ECDSA-AES128-GCM-SHA256" in r.note
    text = out.read_text()
    assert text.startswith(f"intro\n{run_compare.BEGIN}\nudp table\n{run_compare.END}\n")
    assert run_compare.TLS_BEGIN in text and "sipscreen/kamailio TLS max clean CPS ratio:" in text
