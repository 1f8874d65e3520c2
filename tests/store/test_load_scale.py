"""The bulk load path of proxy/store/readers.py: raw SSCAN batches, the batch-level
validation of canonical members, and the NumberSet table laid out directly
checked against rules.snapshot's own constructor
and against a real Redis under a unique prefix."""

from __future__ import annotations

import logging
import random
import re
from array import array

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

import proxy.store.readers as readers_mod
from proxy.store.keys import _canonical_joined
from proxy.store.snapshot_store import SnapshotStore
from rules.snapshot import NumberSet
from tests.store.conftest import REDIS_URL

CANONICAL = re.compile(rb"\+[1-9][0-9]{0,14}")

member = st.one_of(
    st.from_regex(CANONICAL, fullmatch=True),
    st.binary(max_size=20),
    st.text(alphabet="+0123456789\n ", max_size=20).map(str.encode),
    st.integers(min_value=0, max_value=10**20).map(lambda n: b"+%d" % n),
)


@given(st.lists(member, max_size=30))
@settings(max_examples=400, deadline=None)
def test_batch_check_matches_member_by_member(batch: list[bytes]) -> None:
    # E.164: "+" then 1-15 digits, no leading 0 (ITU-T E.164 §6.1).
    want = all(CANONICAL.fullmatch(m) for m in batch)
    got = _canonical_joined(batch)
    assert (got is not None) == want
    if got is not None:
        assert got.split(b"\n") == batch or batch == []


def _values(n: int, seed: int) -> list[int]:
    rnd = random.Random(seed)
    vals = [rnd.randrange(10_000_000_000, 19_999_999_999) for _ in range(n)]
    # Runs of consecutive numbers (a carrier's block) and duplicates, as
    # SSCAN may return a member twice.
    vals += list(range(12_025_550_000, 12_025_560_000))
    vals += vals[:5_000]
    rnd.shuffle(vals)
    return vals


@pytest.mark.parametrize("n", [0, 1_000, NumberSet.SET_MAX + 20_000])
def test_bulk_number_set_equals_from_iterable(n: int) -> None:
    vals = _values(n, n) if n else []
    got = NumberSet.from_ints(array("q", vals))
    ref = NumberSet.from_iterable(vals)
    assert len(got) == len(ref) == len(set(vals))
    assert sorted(got) == sorted(ref)
    rnd = random.Random(1)
    for _ in range(20_000):
        probe = rnd.randrange(10_000_000_000, 19_999_999_999)
        assert (probe in got) == (probe in ref)
        assert (f"+{probe}" in got) == (probe in ref)
    # The pure-Python table is sized before duplicates are known (a few % more).
    assert got.nbytes() <= ref.nbytes() * 1.05 + 64


def test_bulk_number_set_takes_edits_and_compacts() -> None:
    vals = _values(NumberSet.SET_MAX + 1_000, 5)
    ns = NumberSet.from_ints(array("q", vals))
    gone, new = vals[0], 19_999_999_999
    ns.discard(f"+{gone}")
    ns.add(f"+{new}")
    assert gone not in ns and new in ns
    size = len(ns)
    ns.compact()
    assert len(ns) == size and gone not in ns and new in ns and vals[1] in ns


def test_mostly_duplicates_fall_back_to_the_set_form() -> None:
    vals = [12_025_550_123, 12_025_550_124] * (NumberSet.SET_MAX // 2 + 10)
    ns = NumberSet.from_ints(array("q", vals))
    assert len(ns) == 2 and ns.pending == 0
    assert 12_025_550_123 in ns and 12_025_550_125 not in ns


async def _seed(r: aioredis.Redis, key: str, members: list[str]) -> None:
    async with r.pipeline(transaction=False) as p:
        for i in range(0, len(members), 10_000):
            p.sadd(key, *members[i : i + 10_000])
        await p.execute()


async def test_large_load_with_bad_members(
    prefix: str,
    operator: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readers_mod, "PROGRESS_EVERY", 100_000)
    good = sorted({f"+{v}" for v in _values(NumberSet.SET_MAX + 30_000, 9)})
    bad = [f"junk-{i}" for i in range(30)] + ["+0123", "+1234567890123456", "+", ""]
    # An operator's `SADD ... 2025550199` without the +1: normalised, kept.
    loose = ["2025550199", "+1 (303) 555-0100"]
    await _seed(operator, prefix + "block:caller", good + bad + loose)
    await operator.sadd(prefix + "dno:caller", "+18005550100", "bad-dno")
    store = SnapshotStore(REDIS_URL, prefix, emergency=frozenset({"911"}))
    with caplog.at_level(logging.INFO, logger="sipscreen.store"):
        snap = await store.load_full()
    want = set(good) | {"+12025550199", "+13035550100"}
    assert len(snap.block_caller) == len(want)
    assert set(snap.block_caller) == want
    assert set(snap.dno_caller) == {"+18005550100"}
    warned = [r for r in caplog.records if "skipping invalid value" in r.getMessage()]
    # 20 for block:caller (the cap) and 1 for dno:caller, then one summary.
    assert len(warned) == readers_mod.WARN_PER_KEY + 1
    messages = [r.getMessage() for r in caplog.records]
    summary = [m for m in messages if "invalid members skipped" in m]
    assert summary == [
        f"{prefix}block:caller: {len(bad)} invalid members skipped (not a phone number); "
        f"the first {readers_mod.WARN_PER_KEY} were logged"
    ]
    progress = [m for m in messages if "entries read" in m]
    assert len(progress) == len(want | set(bad)) // 100_000
    assert progress[0].startswith(f"loading {prefix}block:caller: ")


async def test_scan_connection_is_reusable(prefix: str, operator: aioredis.Redis) -> None:
    # The store's own client (run() passes it to every reload) keeps working
    # after loads, and after a scan that fails half way (key of the wrong type).
    await _seed(operator, prefix + "block:caller", [f"+1202555{i:04d}" for i in range(5_000)])
    store = SnapshotStore(REDIS_URL, prefix, emergency=frozenset({"911"}))
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for _ in range(3):
            snap = await store._load_with(client)
            assert len(snap.block_caller) == 5_000
        await operator.set(prefix + "x", "a string")
        with pytest.raises(aioredis.ResponseError):
            await store._scan_raw(client, prefix + "x", lambda batch: None)
        assert await client.ping()
        assert await client.scard(prefix + "block:caller") == 5_000
    finally:
        await client.aclose()
