"""Per-provider STIR/SHAKEN counts (proxy/shakenstats.py), the RMD claim on the
provider hash, `provider set --signing-ocns`, `report shaken` and the STIR/SHAKEN
section of `report provider`, against the real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from proxy.metrics import Metrics
from proxy.shakenstats import OUTCOMES, ShakenStats, claim_vs_seen, seen_key
from tests.store.conftest import REDIS_URL
from tests.store.test_admin import HEADER, ROW_A, ROW_B, run

U, P, F, A, B, C = range(6)


async def test_counts_from_two_workers_add_up_in_redis(
    prefix: str, operator: aioredis.Redis
) -> None:
    m = Metrics()
    w1 = ShakenStats(REDIS_URL, prefix, m.shaken_provider_calls)
    w2 = ShakenStats(REDIS_URL, prefix)
    for _ in range(3):
        w1.count("acme", U)
    w1.count("acme", A)
    w2.count("acme", U)
    w2.count("(other)", F)
    assert await w1.flush() == 4 and await w2.flush() == 2
    assert await w1.flush() == 0  # nothing pending
    h = await operator.hgetall(seen_key(prefix, "acme"))
    assert (h["unsigned"], h["A"]) == ("4", "1") and h["since"]
    assert await operator.hget(seen_key(prefix, "(other)"), "failed") == "1"
    got = m.shaken_provider_calls.labels("acme", "unsigned")._value.get()
    assert got == 3
    await w1.close()
    await w2.close()


def test_claim_vs_seen_flags_complete_but_mostly_unsigned() -> None:
    complete = "Complete STIR/SHAKEN Implementation"
    c = claim_vs_seen(complete, {"unsigned": "15", "A": "4", "failed": "1"})
    assert c["calls"] == 20 and c["signed"] == 5 and c["signed_share"] == 0.25
    assert c["failed_share"] == 0.2 and c["flag"]
    assert not claim_vs_seen(complete, {"unsigned": "5", "A": "3"})["flag"]  # too few
    assert not claim_vs_seen(complete, {"unsigned": "9", "A": "11"})["flag"]  # mostly signed
    partial = "Partial STIR/SHAKEN Implementation - Performing Robocall Mitigation"
    assert not claim_vs_seen(partial, {"unsigned": "100"})["flag"]
    assert claim_vs_seen("", {})["signed_share"] is None
    assert set(OUTCOMES) <= set(claim_vs_seen("", {}))


async def test_rmd_claim_on_the_provider_and_report_shaken(
    prefix: str, operator: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = tmp_path / "rmd.csv"
    v1.write_text(HEADER + ROW_A + ROW_B)
    assert await run(prefix, "rmd", "import", str(v1)) == 0
    assert await run(prefix, "provider", "set", "acme", "--rmd-number", "RMD0000001") == 0
    assert await run(prefix, "provider", "set", "bad", "--frn", "0087654321") == 0
    h = await operator.hgetall(prefix + "provider:acme")
    assert h["implementation"] == "Complete STIR/SHAKEN Implementation"
    assert h["rmd_ocn"] == "AB12"
    assert await run(prefix, "provider", "set", "acme", "--signing-ocns", "ab13, AB14") == 0
    assert await operator.hget(prefix + "provider:acme", "ocns") == "AB13,AB14"
    capsys.readouterr()
    assert await run(prefix, "provider", "set", "acme", "--signing-ocns", "TOOLONG") != 0
    assert "--signing-ocns: not a 4-character OCN: 'TOOLONG'" in capsys.readouterr()[1]
    w = ShakenStats(REDIS_URL, prefix)
    for _ in range(25):
        w.count("acme", U)
    for _ in range(5):
        w.count("acme", A)
    for _ in range(10):
        w.count("bad", B)
    await w.close()
    assert await run(prefix, "report", "shaken") == 0
    out, _ = capsys.readouterr()
    acme = next(line for line in out.splitlines() if line.startswith("| acme |"))
    assert "| Complete STIR/SHAKEN Implementation | 30 | 17% | 5 | 0 | 0 |" in acme
    assert "**claims complete STIR/SHAKEN, sends mostly unsigned calls**" in acme
    assert "Flagged: acme." in out
    bad = next(line for line in out.splitlines() if line.startswith("| bad |"))
    assert "| N/A | 10 | 100% | 0 | 10 | 0 |" in bad
    assert await run(prefix, "report", "shaken", "--format", "json") == 0
    doc = json.loads(capsys.readouterr()[0])
    assert [x["provider"] for x in doc["providers"]] == ["acme", "bad"]
    assert await run(prefix, "report", "provider", "acme") == 0
    out, _ = capsys.readouterr()
    assert "## STIR/SHAKEN: RMD claim and traffic seen" in out
    assert "claims complete STIR/SHAKEN" in out


async def test_check_explains_a_match_by_signature(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(prefix, "provider", "set", "clean", "--rmd-number", "RMD0000001") == 0
    assert await run(prefix, "provider", "set", "pz", "--signing-ocns", "PZ01") == 0
    await operator.hset(prefix + "provider:clean", "rmd_status", "listed")
    await operator.hset(prefix + "provider:pz", "rmd_status", "listed")
    await operator.sadd(prefix + "block:provider", "pz")
    capsys.readouterr()
    args = ("check", "--caller", "+13015551234", "--callee", "+12025551000")
    assert await run(prefix, *args, "--provider", "clean") == 0
    capsys.readouterr()
    rc = await run(prefix, *args, "--provider", "clean", "--signed-ocn", "pz01")
    out = capsys.readouterr()[0]
    assert rc != 0 and "provider_block" in out and "matched by signature" in out
