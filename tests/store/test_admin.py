"""The data subcommands (proxy/commands/) against the real Redis."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from proxy import commands
from proxy.records import RecordWriter
from tests.store.conftest import REDIS_URL

NOW = 1795947872.0  # 2026-11-29
SEED = Path(__file__).resolve().parents[1] / "data" / "seed" / "fcc-cease-and-desist-2021-10-21.txt"

HEADER = "Business Name,FRN,RMD Number,Implementation,OCN\n"
ROW_A = "Acme Voice LLC,0012345678,RMD0000001,Complete STIR/SHAKEN Implementation,AB12\n"
ROW_B = "Bad Actor Inc,0087654321,RMD0000002,N/A,BA99\n"


def cli(prefix: str, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="sipscreen")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_subcommands(sub)
    args = parser.parse_args(list(argv))
    return int(args.handler(args, REDIS_URL, prefix, lambda: NOW))


async def run(prefix: str, *argv: str) -> int:
    # Handlers own their event loop (asyncio.run): run them in a thread.
    import asyncio

    return await asyncio.to_thread(cli, prefix, *argv)


async def test_rmd_import_diff_remove_and_provider_status(
    prefix: str, operator: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = tmp_path / "rmd1.csv"
    v1.write_text(HEADER + ROW_A + ROW_B + "Broken,12,RMDXYZ,N/A,\n")
    assert (
        await run(prefix, "provider", "set", "badco", "--name", "Bad", "--frn", "0087654321") == 0
    )
    # All or nothing: the bad row is reported and nothing is imported ...
    assert await run(prefix, "rmd", "import", str(v1)) == 2
    out, err = capsys.readouterr()
    assert f"{v1}:4: column 'FRN':" in err or f"{v1}:4: column 'RMD Number':" in err
    assert "nothing imported" in err and not await operator.exists(prefix + "rmd:current")
    # ... unless the operator asks for the good rows.
    assert await run(prefix, "rmd", "import", str(v1), "--skip-bad-rows") == 0
    out, err = capsys.readouterr()
    assert f"{v1}:4:" in err
    assert "2 added" in out
    assert await operator.hget(prefix + "provider:badco", "rmd_status") == "listed"
    first = await operator.get(prefix + "rmd:current")

    # The next export lacks Bad Actor: absent (no order), its provider follows.
    # Half the filers gone: the removal guard wants --accept-removals.
    v2 = tmp_path / "rmd2.csv"
    v2.write_text(HEADER + ROW_A)
    assert await run(prefix, "rmd", "import", str(v2)) == 2
    assert "would drop 1 of 2 filers" in capsys.readouterr().err
    assert await run(prefix, "rmd", "import", str(v2), "--accept-removals") == 0
    out, _ = capsys.readouterr()
    assert "1 gone" in out and "provider:badco: listed -> absent" in out
    assert await operator.get(prefix + "rmd:current") != first
    filer = await operator.hgetall(prefix + "rmd:filer:RMD0000002")
    assert filer["status"] == "absent" and filer["absent_since"] == "2026-11-29"
    assert "removal_order" not in filer
    assert await operator.hget(prefix + "provider:badco", "rmd_status") == "absent"

    # A file with no valid row fails and leaves the previous snapshot in force.
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "X,1,RMD1,N/A,\n")
    current = await operator.get(prefix + "rmd:current")
    assert await run(prefix, "rmd", "import", str(bad), "--skip-bad-rows") == 2
    _, err = capsys.readouterr()
    assert f"{bad}:2:" in err and "previous RMD snapshot kept" in err
    assert await operator.get(prefix + "rmd:current") == current

    # Removal order for a listed filer.
    assert await run(prefix, "provider", "set", "acme", "--rmd-number", "RMD0000001") == 0
    assert await operator.hget(prefix + "provider:acme", "rmd_status") == "listed"
    assert await run(prefix, "rmd", "remove", "--order", "DA 25-694", "--frn", "0012345678") == 0
    assert await operator.hget(prefix + "provider:acme", "rmd_status") == "removed"
    assert await operator.hget(prefix + "provider:acme", "rmd_order") == "DA 25-694"
    assert await run(prefix, "rmd", "status", "RMD0000001") == 0
    out, _ = capsys.readouterr()
    assert "removed" in out and "DA 25-694" in out


async def test_notice_from_letter_deadlines_and_report(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(prefix, "provider", "set", "pz", "--name", "PZ/Illum") == 0
    rc = await run(
        prefix, "notice", "add", "--provider", "pz", "--kind", "k4", "--letter", str(SEED)
    )
    assert rc == 0
    out, _ = capsys.readouterr()
    # The seed letter (2021-10-21) states its report date: November 5, 2021.
    assert "report due     2021-11-05" in out
    nid = "k4-pz-20211021"
    h = await operator.hgetall(prefix + f"notice:{nid}")
    assert h["provider"] == "pz" and h["letter"] == SEED.name
    assert await run(prefix, "traceback", "import", str(SEED), "--notice", nid) == 0
    out, _ = capsys.readouterr()
    assert "78 traced calls" in out
    # Through the writer, as the proxy does (the provider index included).
    w = RecordWriter(operator, prefix, 0, 3600)
    w.append(
        {
            "ts": "2021-11-10T12:00:00.000Z",  # decided on a replay clock
            "provider": "pz",
            "rule": "notice_k4",
            "action": "blocked",
            "caller": "+12025550123",
        }
    )
    assert await w.flush() == 1
    assert await run(prefix, "report", "provider", "pz", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["notices"][0]["id"] == nid
    assert doc["traceback"][nid]["rows"] == 78
    assert doc["traceback"][nid]["customers"] == 14  # "No Response" is not a customer
    assert doc["blocked_by_day_rule"][0]["rule"] == "notice_k4"
    assert "2021-11-10" in json.dumps(doc["blocked_by_day_rule"][0])  # the decision's day
    assert any("64.1200(k)(4)" in b for b in doc["basis"])
    assert await run(prefix, "notice", "respond", nid, "--reported", "2021-11-01") == 0
    # A bare date is read in US Eastern Time: 00:00 EDT on 2021-11-01.
    assert await operator.hget(prefix + f"notice:{nid}", "reported") == "2021-11-01T04:00:00Z"
    capsys.readouterr()
    assert await run(prefix, "report", "provider", "pz") == 0
    md = capsys.readouterr().out
    assert md.startswith("# Provider report: PZ/Illum") and "## Basis" in md


async def test_block_allow_check_and_bad_input(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(prefix, "block", "caller", "202-555-0234", "--why", "spam") == 0
    assert await operator.smembers(prefix + "block:caller") == {"+12025550234"}
    assert await operator.hget(prefix + "meta:block:caller:+12025550234", "why") == "spam"
    assert await run(prefix, "block", "prefix", "+1303555") == 0
    assert await run(prefix, "allow", "caller", "+14155550100", "--until", "2027-01-01") == 0
    # A bare --until date runs to the end of that US Eastern day (EST: 05:00Z).
    assert await operator.zscore(prefix + "allow:caller:expiry", "+14155550100") == 1798865999
    capsys.readouterr()
    # (+1202555-0123 would be blocked first by DNO: 555-01XX is the fiction range.)
    # check exits 1 for a blocked call, 0 for an allowed one.
    assert await run(prefix, "check", "--caller", "+12025550234", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"]["blocked"] is True and doc["verdict"]["rule"] == "caller_block"
    assert await run(prefix, "check", "--caller", "+13035550200") == 1
    assert "BLOCKED by prefix_block" in capsys.readouterr().out
    assert await run(prefix, "block", "caller", "not-a-number") == 2
    assert "not-a-number" in capsys.readouterr().err
    assert await run(prefix, "unblock", "caller", "+12025550234") == 0
    assert await operator.smembers(prefix + "block:caller") == set()
