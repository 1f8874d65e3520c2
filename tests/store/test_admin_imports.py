"""The data imports against the real Redis: the RMD as it is published (the
export's field names and the listing's labels, messy rows), versioned
snapshots keyed by as-of, dry run, the removal guard, rollback, absent vs
removed, `check --at`, and the same guard and undo for NANPA; every import
all-or-nothing unless --skip-bad-rows."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.store.test_admin import cli

ROOT = Path(__file__).resolve().parents[2]
RMD = ROOT / "tests" / "data" / "rmd"
AUG, SEP, LABELS = (
    RMD / "rmd_2025_08_01.csv",
    RMD / "rmd_2025_09_01.csv",
    RMD / "rmd_listing_labels.csv",
)
NANPA = ROOT / "tests" / "data" / "nanpa"
NPA_FILE, CO_FILE = NANPA / "npa_report_sample.csv", NANPA / "allutlzd_sample.txt"
DNO_FILE = ROOT / "tests" / "data" / "dno" / "inbound_only.txt"
SEED = ROOT / "tests" / "data" / "seed" / "fcc-cease-and-desist-2021-10-21.txt"
PZ_FRN, PZ_NUM = "0030498513", "RMD0009001"


async def run(prefix: str, *argv: str) -> int:
    # Handlers own their event loop (asyncio.run): run them in a thread.
    return await asyncio.to_thread(cli, prefix, *argv)


async def keys(r: aioredis.Redis, prefix: str) -> dict[str, str]:
    """Every key of the prefix with a digest of its value (to prove nothing changed)."""
    out: dict[str, str] = {}
    async for k in r.scan_iter(match=prefix + "*", count=1000):
        out[k] = repr(await r.dump(k))
    return out


async def absent_and_removed(prefix: str) -> None:
    """Provider pz, absent from the September export, and ord, removed from the
    RMD by order DA 25-694 on 2025-09-10 (both exports imported)."""
    assert await run(prefix, "provider", "set", "pz", "--name", "PZ/Illum", "--frn", PZ_FRN) == 0
    assert await run(prefix, "provider", "set", "ord", "--rmd-number", "RMD0001405") == 0
    assert await run(prefix, "rmd", "import", str(AUG), "--skip-bad-rows") == 0
    assert await run(prefix, "rmd", "import", str(SEP), "--skip-bad-rows") == 0
    rc = await run(
        prefix, "rmd", "remove", "--order", "DA 25-694", "--rmd-number", "RMD0001405",
        "--date", "2025-09-10",
    )  # fmt: skip
    assert rc == 0


async def test_rmd_export_field_names_and_labels(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real export's header was refused before ("column 'RMD Number':
    required column missing"); it imports now, messy rows and all."""
    assert await run(prefix, "provider", "set", "pz", "--name", "PZ/Illum", "--frn", PZ_FRN) == 0
    # Five bad rows: all or nothing by default.
    assert await run(prefix, "rmd", "import", str(AUG)) == 2
    out, err = capsys.readouterr()
    assert f"{AUG}:52: column 'frn': not a 10-digit FCC Registration Number" in err
    assert f"{AUG}:340: column 'last_updated':" in err
    assert "5 bad rows; nothing imported" in err
    assert await operator.exists(prefix + "rmd:current") == 0
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "unknown"

    assert await run(prefix, "rmd", "import", str(AUG), "--skip-bad-rows") == 0
    out, _ = capsys.readouterr()
    assert "300 filers as of 2025-08-01 (newest last_updated)" in out
    version = await operator.get(prefix + "rmd:current")
    assert version.startswith("2025-08-01.")
    assert await operator.zscore(prefix + "rmd:versions", version) == 20250801
    assert await operator.hlen(prefix + f"rmd:snap:{version}") == 300
    meta = await operator.hgetall(prefix + f"rmd:meta:{version}")
    assert meta["as_of"] == "2025-08-01" and meta["bad_rows_skipped"] == "5"
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "listed"
    filer = json.loads(await operator.hget(prefix + f"rmd:snap:{version}", PZ_NUM))
    assert filer["business_name"] == "PZ/Illum Telecommunication LLC"
    assert filer["filing_url"].startswith("https://fccprod.servicenowservices.com/")

    # The listing page's display labels, into a fresh snapshot chain.
    other = prefix + "labels:"
    assert await run(other, "rmd", "import", str(LABELS)) == 0
    out, _ = capsys.readouterr()
    assert "6 filers as of 2025-08-14" in out and "6 added" in out


async def test_rmd_dry_run_guard_rollback_and_as_of(
    prefix: str, operator: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run(prefix, "provider", "set", "pz", "--name", "PZ/Illum", "--frn", PZ_FRN) == 0
    assert await run(prefix, "rmd", "import", str(AUG), "--skip-bad-rows") == 0
    aug = await operator.get(prefix + "rmd:current")
    capsys.readouterr()

    # Dry run: the diff and the provider change, nothing written.
    before = await keys(operator, prefix)
    assert await run(prefix, "rmd", "import", str(SEP), "--skip-bad-rows", "--dry-run") == 0
    out, _ = capsys.readouterr()
    assert out.startswith("dry run: nothing written")
    assert "5 added, 15 gone (absent)" in out and "provider:pz: listed -> absent" in out
    assert await keys(operator, prefix) == before

    # A truncated download: 200 of the 290 September rows.
    lines = SEP.read_text(encoding="utf-8").splitlines(keepends=True)
    cut = tmp_path / "truncated.csv"
    cut.write_text("".join(lines[:201]), encoding="utf-8")
    assert await run(prefix, "rmd", "import", str(cut), "--skip-bad-rows") == 2
    _, err = capsys.readouterr()
    assert f"{cut}: would drop" in err and "more than the 5.0% allowed" in err
    assert "--accept-removals" in err
    assert await keys(operator, prefix) == before
    # The dry run says the same and exits as the import would.
    assert await run(prefix, "rmd", "import", str(cut), "--skip-bad-rows", "--dry-run") == 2
    assert "would be refused" in capsys.readouterr().out
    # A stricter share (the flag; the config key is tested through the CLI).
    rc = await run(
        prefix, "rmd", "import", str(SEP), "--skip-bad-rows", "--max-removed-share", "1%"
    )
    assert rc == 2 and "more than the 1.0% allowed" in capsys.readouterr().err

    # September: 15 of 300 gone = 5.0%, within the default share.
    assert await run(prefix, "rmd", "import", str(SEP), "--skip-bad-rows") == 0
    sep = await operator.get(prefix + "rmd:current")
    assert sep.startswith("2025-09-01.") and sep != aug
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "absent"
    assert await operator.hget(prefix + "provider:pz", "rmd_since") == "2025-09-01"
    assert (await operator.hgetall(prefix + f"rmd:filer:{PZ_NUM}"))["status"] == "absent"
    assert await operator.hget(prefix + "rmd:filer:RMD0001801", "status") == "listed"

    # An older export than the one in force is refused.
    capsys.readouterr()
    assert await run(prefix, "rmd", "import", str(AUG), "--skip-bad-rows") == 2
    assert "older than the RMD snapshot in force" in capsys.readouterr().err

    # Rollback: August again, PZ listed again, September's new filer gone.
    assert await run(prefix, "rmd", "rollback") == 0
    out, _ = capsys.readouterr()
    assert f"{sep} rolled back; {aug} is in force again" in out
    assert "provider:pz: absent -> listed" in out
    assert await operator.get(prefix + "rmd:current") == aug
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "listed"
    assert await operator.hget(prefix + f"rmd:filer:{PZ_NUM}", "status") == "listed"
    assert not await operator.exists(prefix + "rmd:filer:RMD0001801")
    assert not await operator.exists(prefix + f"rmd:snap:{sep}")
    assert await operator.zscore(prefix + "rmd:versions", sep) is None
    # August has nothing before it.
    assert await run(prefix, "rmd", "rollback") == 2
    assert "no earlier RMD snapshot" in capsys.readouterr().err

    # --as-of overrides the file's newest last_updated.
    argv = ("rmd", "import", str(SEP), "--skip-bad-rows", "--as-of", "2025-09-05")
    assert await run(prefix, *argv) == 0
    assert (await operator.get(prefix + "rmd:current")).startswith("2025-09-05.")
    assert await run(prefix, "rmd", "status") == 0
    out, _ = capsys.readouterr()
    assert f"  {aug}  as of 2025-08-01  300 filers" in out
    assert "* 2025-09-05." in out


async def test_absent_and_removed_are_different_states(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await absent_and_removed(prefix)
    capsys.readouterr()
    assert await run(prefix, "rmd", "status", PZ_NUM) == 0
    out, _ = capsys.readouterr()
    assert "absent: missing from the RMD export since the export of 2025-09-01" in out
    assert "no removal order recorded" in out
    assert await run(prefix, "rmd", "status", "RMD0001405") == 0
    out, _ = capsys.readouterr()
    assert "removed by order DA 25-694 on 2025-09-10" in out

    assert await run(prefix, "report", "provider", "pz", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rmd_status"] == "absent" and doc["rmd_number"] == PZ_NUM
    assert any("absent from the Robocall Mitigation Database export" in b for b in doc["basis"])
    assert await run(prefix, "report", "provider", "ord") == 0
    md = capsys.readouterr().out
    assert "- rmd_status: removed" in md and "- rmd_order: DA 25-694" in md
    assert "removed from the Robocall Mitigation Database by order DA 25-694" in md

    # Both block at the RMD gate, and the reason says which.
    # `check` exits 0 or, on the engine branch, 1 for a blocked call.
    assert await run(prefix, "check", "--caller", "+13105551234", "--provider", "pz") in (0, 1)
    out = capsys.readouterr().out
    assert "BLOCKED by rmd_gate (47 CFR 64.6305(g))" in out and "absent" in out
    assert await run(prefix, "check", "--caller", "+13105551234", "--provider", "ord") in (0, 1)
    out = capsys.readouterr().out
    assert "BLOCKED by rmd_gate" in out and "by order DA 25-694" in out

    # A later export cannot lift an order; a rollback keeps it too.
    assert await run(prefix, "rmd", "rollback") == 0
    assert await operator.hget(prefix + "provider:ord", "rmd_status") == "removed"
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "listed"


async def test_check_at_uses_the_rmd_as_of_that_day(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --at` answered with today's RMD status before."""
    await absent_and_removed(prefix)
    capsys.readouterr()

    async def verdict(provider: str, at: str) -> dict[str, object]:
        argv = ["check", "--caller", "+13105551234", "--provider", provider, "--json"]
        assert await run(prefix, *argv, "--at", at) in (0, 1)  # 1: blocked (engine branch)
        doc = json.loads(capsys.readouterr().out)
        gate = next(c for c in doc["checks"] if c["rule"] == "rmd_gate")
        return {"blocked": doc["verdict"]["blocked"], "gate": gate, "v": doc["snapshot_version"]}

    v = await verdict("pz", "2025-08-15")  # August's export: listed
    assert v["blocked"] is False and "2025-08-01." in str(v["v"])
    v = await verdict("pz", "2025-09-02")  # September's: absent
    assert v["blocked"] is True and "absent" in str(v["gate"]) and "2025-09-01." in str(v["v"])
    v = await verdict("pz", "2025-07-01")  # before any snapshot: unknown, not judged
    assert v["blocked"] is False and "unknown" in str(v["gate"])
    v = await verdict("ord", "2025-09-09")  # the day before the order
    assert v["blocked"] is False
    v = await verdict("ord", "2025-09-10T18:00:00Z")
    assert v["blocked"] is True and "DA 25-694" in str(v["gate"])
    # Without --at: today's status, from the provider hash.
    assert await run(prefix, "check", "--caller", "+13105551234", "--provider", "pz") in (0, 1)
    assert "BLOCKED by rmd_gate" in capsys.readouterr().out
    # check changed nothing in Redis.
    assert await operator.hget(prefix + "provider:pz", "rmd_status") == "absent"


async def test_nanpa_guard_dry_run_and_rollback(
    prefix: str, operator: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A partial NANPA file switched the unallocated rule on for what it
    held (blocking every other area code) with no undo; now it is refused."""
    # All or nothing: the sample has three malformed rows.
    assert await run(prefix, "nanpa", "import", "--npa", str(NPA_FILE)) == 2
    _, err = capsys.readouterr()
    assert f"{NPA_FILE}:20: column 'NPA_ID': not an area code" in err
    assert not await operator.exists(prefix + "nanpa:npa")
    assert await run(prefix, "nanpa", "import", "--npa", str(NPA_FILE), "--skip-bad-rows") == 0
    full = await operator.smembers(prefix + "nanpa:npa")
    assert len(full) == 25
    capsys.readouterr()

    partial = tmp_path / "npa_partial.csv"
    partial.write_text("NPA_ID,assigned,in_service\n201,Yes,Y\n202,Yes,Y\n", encoding="utf-8")
    before = await keys(operator, prefix)
    assert await run(prefix, "nanpa", "import", "--npa", str(partial)) == 2
    _, err = capsys.readouterr()
    assert "would drop 23 of 25 area codes" in err and "--accept-removals" in err
    assert await run(prefix, "nanpa", "import", "--npa", str(partial), "--dry-run") == 2
    out, _ = capsys.readouterr()
    assert out.startswith("dry run: nothing written") and "23 dropped" in out
    assert await keys(operator, prefix) == before

    assert await run(prefix, "nanpa", "import", "--npa", str(partial), "--accept-removals") == 0
    assert await operator.smembers(prefix + "nanpa:npa") == {"201", "202"}
    assert await run(prefix, "nanpa", "rollback", "--npa") == 0
    assert "previous set restored (25 area codes)" in capsys.readouterr().out
    assert await operator.smembers(prefix + "nanpa:npa") == full
    # Rolling back again swaps back: the rollback can be undone.
    assert await run(prefix, "nanpa", "rollback", "--npa") == 0
    assert await operator.smembers(prefix + "nanpa:npa") == {"201", "202"}
    # CO codes: nothing recorded to roll back to.
    assert await run(prefix, "nanpa", "rollback", "--co") == 2
    assert "nothing to roll back" in capsys.readouterr().err
    assert await run(prefix, "nanpa", "import", "--co", str(CO_FILE), "--skip-bad-rows") == 0
    assert await operator.scard(prefix + "nanpa:nxx") == 25


async def test_dno_and_traceback_all_or_nothing(
    prefix: str, operator: aioredis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dno and traceback imports applied the good rows with exit 0 before."""
    assert await run(prefix, "dno", "import", str(DNO_FILE)) == 2
    _, err = capsys.readouterr()
    assert f"{DNO_FILE}:17: column 'number': not a telephone number" in err
    assert "nothing imported" in err
    assert not await operator.exists(prefix + "dno:caller")
    assert await run(prefix, "dno", "import", str(DNO_FILE), "--skip-bad-rows") == 0
    assert await operator.scard(prefix + "dno:caller") > 0

    bad = tmp_path / "letter.txt"
    text = SEED.read_text(encoding="utf-8")
    # Break one traced call's time: the whole table is refused.
    row = next(line for line in text.splitlines() if "SSA Imposter" in line)
    broken = text.replace(row, row.replace("2021", "20x1", 1), 1)
    assert broken != text
    bad.write_text(broken, encoding="utf-8")
    assert await run(prefix, "traceback", "import", str(bad), "--provider", "pz") == 2
    _, err = capsys.readouterr()
    assert f"{bad}:" in err and "nothing imported" in err
    assert not await operator.exists(prefix + "traceback:pz")
    assert (
        await run(prefix, "traceback", "import", str(bad), "--provider", "pz", "--skip-bad-rows")
        == 0
    )
    assert await operator.llen(prefix + "traceback:pz") == 77


def test_config_share_through_the_cli(tmp_path: Path, prefix: str) -> None:
    """`[imports] max_removed_share` from the config file, via `python3 -m proxy`."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[redis]\nurl = "redis://127.0.0.1:6379/0"\nkey_prefix = "{prefix}"\nembedded = false\n'
        "[imports]\nmax_removed_share = 0.01\n",
        encoding="utf-8",
    )

    def sipscreen(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy", "--config", str(cfg), *argv],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    res = sipscreen("rmd", "import", str(AUG), "--skip-bad-rows")
    assert res.returncode == 0, res.stderr
    res = sipscreen("rmd", "import", str(SEP), "--skip-bad-rows")
    assert res.returncode == 2 and "more than the 1.0% allowed" in res.stderr
    res = sipscreen("rmd", "import", str(SEP), "--skip-bad-rows", "--max-removed-share", "0.1")
    assert res.returncode == 0, res.stderr


async def test_running_store_follows_imports_and_rollbacks(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proxy's snapshot follows an RMD import and rollback (provider
    status, order id) and a NANPA import and rollback, with no reload."""
    from sipscreen_testlib import until

    from tests.store.test_store import make_store

    store = make_store(prefix)
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        assert await run(prefix, "provider", "set", "pz", "--frn", PZ_FRN) == 0
        assert await run(prefix, "rmd", "import", str(AUG), "--skip-bad-rows") == 0
        await until(lambda: store.snapshot.providers["pz"].rmd_status == "listed", 2.0)
        assert await run(prefix, "rmd", "import", str(SEP), "--skip-bad-rows") == 0
        await until(lambda: store.snapshot.providers["pz"].rmd_status == "absent", 2.0)
        assert store.snapshot.providers["pz"].rmd_since == "2025-09-01"
        rc = await run(prefix, "rmd", "remove", "--order", "DA 25-694", "--frn", PZ_FRN)
        assert rc == 0
        await until(lambda: store.snapshot.providers["pz"].rmd_order == "DA 25-694", 2.0)
        assert store.snapshot.providers["pz"].rmd_status == "removed"

        assert await run(prefix, "nanpa", "import", "--npa", str(NPA_FILE), "--skip-bad-rows") == 0
        await until(lambda: len(store.snapshot.nanpa_npa or ()) == 25, 2.0)
        partial = tmp_path / "npa_partial.csv"
        partial.write_text("NPA_ID,assigned\n201,Yes\n202,Yes\n", encoding="utf-8")
        argv = ("nanpa", "import", "--npa", str(partial), "--accept-removals")
        assert await run(prefix, *argv) == 0
        await until(lambda: store.snapshot.nanpa_npa == {"201", "202"}, 2.0)
        assert await run(prefix, "nanpa", "rollback", "--npa") == 0
        await until(lambda: len(store.snapshot.nanpa_npa or ()) == 25, 2.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    capsys.readouterr()


async def test_an_import_computed_on_a_stale_snapshot_is_not_applied(
    prefix: str, operator: aioredis.Redis
) -> None:
    """Two imports at once: the one computed from a snapshot no longer in
    force writes nothing (WATCH on rmd:current)."""
    from proxy.commands.common import AdminError
    from proxy.commands.rmd_filers import still_current

    await operator.set(prefix + "rmd:current", "2025-09-01.2")
    async with operator.pipeline(transaction=True) as tx:
        with pytest.raises(AdminError, match="changed meanwhile"):
            await still_current(tx, prefix, "2025-08-01.1")
    async with operator.pipeline(transaction=True) as tx:
        await still_current(tx, prefix, "2025-09-01.2")
        tx.set(prefix + "rmd:current", "2025-09-05.3")
        await operator.set(prefix + "rmd:current", "2025-09-04.9")  # someone else, meanwhile
        with pytest.raises(aioredis.WatchError):
            await tx.execute()
    assert await operator.get(prefix + "rmd:current") == "2025-09-04.9"
