"""`sipscreen notice ...` against the real Redis: the append-only history,
the FCC-notice guard, determinations, corrections, `notice show`, and the
store reading the derived fields into the snapshot (47 CFR 64.1200(k)(4))."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import redis.asyncio as aioredis

from proxy.store.snapshot_store import SnapshotStore
from rules.engine import decide
from rules.facts import CallFacts
from tests.store.conftest import REDIS_URL
from tests.store.test_admin import SEED, cli, run

NID = "k4-pz-20211021"


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def history(operator: aioredis.Redis, prefix: str) -> list[dict[str, object]]:
    return [json.loads(x) for x in await operator.lrange(prefix + f"notice:{NID}:history", 0, -1)]


async def add_seed(prefix: str) -> None:
    assert await run(prefix, "provider", "set", "pz", "--name", "PZ/Illum") == 0
    rc = await run(
        prefix, "notice", "add", "--provider", "pz", "--kind", "k4", "--letter", str(SEED),
        "--by", "alice",
    )  # fmt: skip
    assert rc == 0


async def test_add_prints_the_letters_deadlines_in_et_and_utc(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_seed(prefix)
    out, err = capsys.readouterr()
    assert "issued         2021-10-21 00:00:00 EDT (2021-10-21T04:00:00Z)" in out
    assert "mitigation due 2021-10-24T04:00:00Z" in out
    # "within fourteen (14) days of the date of this letter (November 5, 2021)":
    # to the end of that day, Eastern Time.
    assert "report due     2021-11-05 end of day ET: 2021-11-05 23:59:59 EDT" in out
    assert "(2021-11-06T03:59:59Z)" in out and "warning" not in err
    h = await operator.hgetall(prefix + f"notice:{NID}")
    assert h["report_due"] == "2021-11-06T04:00:00Z"
    (entry,) = await history(operator, prefix)
    assert entry["event"] == "issued" and entry["by"] == "alice"
    # Adding it again is refused (the history is never restarted).
    assert await run(prefix, "notice", "add", "--provider", "pz", "--kind", "k4",
                     "--letter", str(SEED)) == 2  # fmt: skip
    assert "already recorded" in capsys.readouterr().err
    # Without a stated date: counted per 47 CFR 1.4, with a warning.
    assert await run(prefix, "notice", "add", "--provider", "q", "--kind", "k4",
                     "--issued", "2021-10-21") == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert "report due     2021-11-04" in out and "--report-due" in err


async def test_fcc_notified_guard_summary_and_date(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_seed(prefix)
    capsys.readouterr()
    # Dated the day the letter was issued: refused, nothing written.
    rc = await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-10-21",
                   "--summary", "no mitigation")  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "precedes any determination" in err and "2021-10-24T04:00:00Z" in err
    assert len(await history(operator, prefix)) == 1
    assert await operator.hget(prefix + f"notice:{NID}", "fcc_notified") == ""
    # The last day of the window (2021-10-23 ET) is still before the lapse.
    rc = await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-10-23",
                   "--summary", "no mitigation")  # fmt: skip
    assert rc == 2
    # The summary is required (argparse: exit 2).
    with pytest.raises(SystemExit) as exc:
        cli(prefix, "notice", "fcc-notified", NID, "--date", "2021-10-25")
    assert exc.value.code == 2
    capsys.readouterr()
    rc = await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-10-25",
                   "--summary", "no mitigation within 48 hours", "--by", "bob")  # fmt: skip
    assert rc == 0
    assert "fcc_notified=2021-10-26T03:59:59Z" in capsys.readouterr().out  # end of that ET day
    h = await operator.hgetall(prefix + f"notice:{NID}")
    assert h["fcc_notified"] == "2021-10-26T03:59:59Z"
    assert h["fcc_notified_summary"] == "no mitigation within 48 hours"
    last = (await history(operator, prefix))[-1]
    assert last["event"] == "fcc_notified" and last["by"] == "bob"


async def test_history_is_append_only_with_corrections_and_show(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_seed(prefix)
    steps = [
        ("respond", NID, "--mitigated", "2021-10-25T15:00:00Z", "--by", "ops"),  # late
        ("respond", NID, "--mitigated", "2021-10-22", "--by", "ops"),  # backdated, wrong
        ("respond", NID, "--reported", "2021-11-05T20:00:00Z", "--by", "ops"),  # in time
    ]
    for step in steps:
        assert await run(prefix, "notice", *step) == 0
    out = capsys.readouterr().out
    assert "LATE" in out
    h = await operator.hgetall(prefix + f"notice:{NID}")
    assert h["mitigated"] == "2021-10-22T04:00:00Z"  # the earliest counts
    # The second entry was a mistake: voided, never erased.
    assert await run(prefix, "notice", "correct", NID, "--entry", "3",
                     "--summary", "wrong day typed") == 0  # fmt: skip
    h = await operator.hgetall(prefix + f"notice:{NID}")
    assert h["mitigated"] == "2021-10-25T15:00:00Z"
    events = await history(operator, prefix)
    assert [e["event"] for e in events] == [
        "issued", "mitigated", "mitigated", "reported", "correction",
    ]  # fmt: skip
    assert events[2]["at"] == "2021-10-22T04:00:00Z" and events[4]["voids"] == 3
    assert all(e["recorded"] and e["by"] for e in events)
    # Refused: voiding twice, voiding the issue entry, an unknown entry.
    for entry in ("3", "1", "42"):
        assert await run(prefix, "notice", "correct", NID, "--entry", entry,
                         "--summary", "x") == 2  # fmt: skip
    # Refused: a response dated before the notice or in the future (NOW is 2026-11-29).
    assert await run(prefix, "notice", "respond", NID, "--reported", "2021-10-01") == 2
    assert await run(prefix, "notice", "respond", NID, "--reported", "2027-01-01") == 2
    assert len(await history(operator, prefix)) == 5
    capsys.readouterr()
    assert await run(prefix, "notice", "show", NID, "--at", "2021-11-10T12:00:00Z") == 0
    out = capsys.readouterr().out
    assert "report due     end of day ET: 2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)" in out
    assert "#3 mitigated [VOIDED]" in out and "#5 correction voids #3: wrong day typed" in out
    assert "recorded" in out and "by ops" in out
    # Late mitigation is kept but does not cure: the window trigger stands.
    assert "k4 state at 2021-11-10 07:00:00 EST (2021-11-10T12:00:00Z): pending_fcc" in out
    assert "not a cure" in out


async def test_determinations_and_the_store_snapshot(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await add_seed(prefix)
    for step in (
        ("respond", NID, "--mitigated", "2021-10-22T12:00:00Z"),
        ("respond", NID, "--reported", "2021-11-03"),
    ):
        assert await run(prefix, "notice", *step) == 0
    # Complied in time: no trigger, so no FCC notice can be recorded yet.
    assert await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-11-20",
                     "--summary", "x") == 2  # fmt: skip
    assert await run(prefix, "notice", "determine", NID, "--ineffective", "--date",
                     "2021-12-01", "--summary", "new SSA campaign traced") == 0  # fmt: skip
    assert await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-12-02T15:00:00Z",
                     "--summary", "measures ineffective: new campaign") == 0  # fmt: skip

    store = SnapshotStore(REDIS_URL, prefix, emergency=frozenset({"911"}))
    snap = await store.load_full()
    (n,) = snap.notices["pz"]
    assert n.ineffective == ts("2021-12-01T05:00:00Z")  # 00:00 EST
    f = CallFacts(caller="+13015551234", callee="+12025551000", provider="pz")
    assert not decide(snap, f, ts("2021-12-02T14:59:59Z")).blocked
    v = decide(snap, f, ts("2021-12-02T15:00:00Z"))
    assert v.blocked and v.rule.citation == "47 CFR 64.1200(k)(4)" and v.detail == NID

    # The operator stops blocking: an effective determination.
    assert await run(prefix, "notice", "determine", NID, "--effective", "--date",
                     "2021-12-20", "--summary", "campaign cut off, KYC in place") == 0  # fmt: skip
    snap = await store.load_full()
    assert not decide(snap, f, ts("2021-12-21T00:00:00Z")).blocked
    assert decide(snap, f, ts("2021-12-10T00:00:00Z")).blocked  # before it
    capsys.readouterr()
    assert await run(prefix, "notice", "list") == 0
    assert "k4 clear" in capsys.readouterr().out


async def test_notice_written_before_histories(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hash written by an older release (or by hand): no history list.
    await operator.hset(
        prefix + "notice:old",
        mapping={"provider": "pz", "kind": "k4", "issued": "2021-10-21",
                 "mitigated": "2021-10-22T10:00:00Z"},
    )  # fmt: skip
    assert await run(prefix, "notice", "show", "old") == 0
    assert "history: none recorded" in capsys.readouterr().out
    assert await run(prefix, "notice", "respond", "old", "--reported", "2021-11-02") == 0
    events = [json.loads(x) for x in await operator.lrange(prefix + "notice:old:history", 0, -1)]
    assert [e["event"] for e in events] == ["issued", "mitigated", "reported"]
    assert events[1]["by"] == "legacy-hash" and events[1]["at"] == "2021-10-22T10:00:00Z"
    h = await operator.hgetall(prefix + "notice:old")
    assert h["mitigated"] == "2021-10-22T10:00:00Z" and h["reported"] == "2021-11-02T04:00:00Z"
    assert await run(prefix, "notice", "show", "nope") == 2


async def test_running_store_follows_history_appends(
    prefix: str, operator: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # The CLI appends to notice:<id>:history and rewrites the derived HASH
    # fields in one MULTI/EXEC: a running proxy's store picks the fields up
    # live and ignores the history list (not part of the snapshot).
    import asyncio

    from sipscreen_testlib import until

    await add_seed(prefix)
    store = SnapshotStore(REDIS_URL, prefix, emergency=frozenset({"911"}))
    task = asyncio.create_task(store.run())
    try:
        await store.wait_synced(10)
        (n,) = store.snapshot.notices["pz"]
        assert n.fcc_notified is None
        assert await run(prefix, "notice", "fcc-notified", NID, "--date", "2021-10-25",
                         "--summary", "no mitigation within 48 hours") == 0  # fmt: skip
        await until(lambda: store.snapshot.notices["pz"][0].fcc_notified is not None, 5.0)
        assert store.snapshot.notices["pz"][0].fcc_notified == ts("2021-10-26T03:59:59Z")
        f = CallFacts(caller="+13015551234", callee="+12025551000", provider="pz")
        assert decide(store.snapshot, f, ts("2021-10-27T00:00:00Z")).blocked
        assert not [r for r in caplog.records if "history" in r.getMessage()]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_check_at_uses_the_k4_history_and_the_orders_of_that_day(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check --at` judges the k4 notice as its history stood that day (a
    later FCC notification does not hide the one in force), and a Final
    Determination Order removed later still blocks on a day it was in force."""
    await add_seed(prefix)
    await operator.hset(prefix + "provider:pz", "rmd_status", "listed")
    for day in ("2021-10-25", "2021-11-10"):
        rc = await run(prefix, "notice", "fcc-notified", NID, "--date", day,
                       "--summary", "no mitigation within 48 hours")  # fmt: skip
        assert rc == 0
    capsys.readouterr()
    at = ("--at", "2021-11-01T12:00Z")
    rc = await run(prefix, "check", "--caller", "+13015551234", "--provider", "pz", *at)
    out = capsys.readouterr().out
    assert rc == 1 and "BLOCKED by notice_k4" in out, out
    assert await run(prefix, "notice", "show", NID, *at) == 0
    assert "k4 state at 2021-11-01" in (out := capsys.readouterr().out) and ": block" in out, out

    await operator.hset(prefix + "provider:fd", mapping={"name": "FD", "rmd_status": "listed"})
    rc = await run(prefix, "order", "add", "--provider", "fd", "--kind", "fdo",
                   "--order", "DA 24-777", "--released", "2024-05-01")  # fmt: skip
    assert rc == 0
    assert await run(prefix, "order", "remove", "DA-24-777", "--reason", "rescinded") == 0
    capsys.readouterr()
    call = ("check", "--caller", "+13015551234", "--provider", "fd")
    assert await run(prefix, *call, "--at", "2024-06-15T12:00Z") == 1
    assert "BLOCKED by fdo" in capsys.readouterr().out
    assert await run(prefix, *call, "--at", "2024-05-15T12:00Z") == 0  # not yet in force
    assert await run(prefix, *call) == 0  # removed since


async def test_provider_report_names_final_determination_orders(
    prefix: str, operator: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report provider` for a provider under a Final Determination Order gives
    the order as the basis (47 CFR 64.1200(n)(3)), not "no regulatory basis";
    a removed order is listed with its reason and is no basis."""
    await operator.hset(prefix + "provider:fd", mapping={"name": "FD", "rmd_status": "listed"})
    rc = await run(prefix, "order", "add", "--provider", "fd", "--kind", "fdo",
                   "--order", "DA 24-777", "--released", "2024-05-01")  # fmt: skip
    assert rc == 0
    rc = await run(prefix, "order", "add", "--provider", "fd", "--kind", "fdo",
                   "--order", "DA 23-100", "--released", "2023-01-03")  # fmt: skip
    assert rc == 0
    assert await run(prefix, "order", "remove", "DA-23-100", "--reason", "vacated") == 0
    capsys.readouterr()
    assert await run(prefix, "report", "provider", "fd", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert {o["id"]: o["status"] for o in doc["orders"]} == {
        "DA-23-100": "removed",
        "DA-24-777": "active",
    }
    (basis,) = doc["basis"]
    assert "DA 24-777" in basis and "47 CFR 64.1200(n)(3)" in basis
    assert "2024-05-31T04:00:00Z" in basis
    assert await run(prefix, "report", "provider", "fd") == 0
    md = capsys.readouterr().out
    assert "## Final Determination Orders" in md and "removed" in md and "vacated" in md
