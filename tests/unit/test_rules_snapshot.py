"""rules.snapshot: NumberSet, PrefixSet and Snapshot edits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rules.snapshot import (
    Notice,
    NumberSet,
    PrefixSet,
    Provider,
    Snapshot,
    parse_campaigns,
)


class TinyNumberSet(NumberSet):
    """Switches to the hash table above 4 entries, to test the table code."""

    SET_MAX = 4


NUMBERS = st.integers(min_value=1_000_000, max_value=999_999_999_999_999).map(lambda n: f"+{n}")
# A narrow range so edits hit existing members and runs of neighbours often.
DENSE = st.integers(min_value=12025550000, max_value=12025550063).map(lambda n: f"+{n}")


@pytest.mark.parametrize("cls", [NumberSet, TinyNumberSet])
def test_numberset_basics(cls: type[NumberSet]) -> None:
    members = [f"+1202555{i:04d}" for i in range(1000, 1100)]
    s = cls.from_iterable(members)
    assert len(s) == 100
    assert all(m in s for m in members)
    assert int(members[0][1:]) in s  # int keys are accepted
    assert "+12025550999" not in s
    assert "12025551000" not in s  # not E.164: never a member
    assert "+012025551000" not in s
    assert None not in s
    assert sorted(s) == sorted(members)
    s.discard("+12025551000")
    assert "+12025551000" not in s and len(s) == 99
    s.add("+12025551000")  # add after remove
    assert "+12025551000" in s and len(s) == 100
    s.add("+442071234567")
    assert "+442071234567" in s and len(s) == 101
    s.discard("+442071234567")
    s.discard("+442071234567")  # twice is harmless
    s.discard("garbage")
    assert "+442071234567" not in s and len(s) == 100
    s.compact()
    assert s.pending == 0 and len(s) == 100 and sorted(s) == sorted(members)


def test_table_mode_used_above_set_max() -> None:
    s = TinyNumberSet.from_iterable([f"+1202555{i:04d}" for i in range(2000, 2100)])
    assert s.nbytes() >= 8 * 2 * 100  # the table: ~16 bytes an entry
    s.add("+13015551234")
    s.discard("+12025552000")
    assert s.pending == 2
    s.compact()
    assert s.pending == 0 and "+13015551234" in s and "+12025552000" not in s


@pytest.mark.parametrize(
    "bad", ["12025550123", "+", "+12a", "", "+0123456789", "+1234567890123456"]
)
def test_numberset_refuses_non_e164(bad: str) -> None:
    with pytest.raises(ValueError):
        NumberSet.from_iterable([bad])
    with pytest.raises(ValueError):
        NumberSet().add(bad)


@given(st.sets(NUMBERS, max_size=60), st.lists(NUMBERS, max_size=30))
def test_from_iterable_matches_set(members: set[str], probes: list[str]) -> None:
    for cls in (NumberSet, TinyNumberSet):
        s = cls.from_iterable(members)
        assert len(s) == len(members)
        assert set(s) == members
        for p in probes + sorted(members):
            assert (p in s) == (p in members)


class NumberSetMachine(RuleBasedStateMachine):
    """NumberSet against a plain set through adds, removes and compactions."""

    def __init__(self) -> None:
        super().__init__()
        self.model: set[str] = set()
        self.real: NumberSet = TinyNumberSet()

    @rule(members=st.sets(DENSE, max_size=20))
    def rebuild(self, members: set[str]) -> None:
        self.model = set(members)
        self.real = TinyNumberSet.from_iterable(members)

    @rule(n=DENSE)
    def add(self, n: str) -> None:
        self.model.add(n)
        self.real.add(n)

    @rule(n=DENSE)
    def discard(self, n: str) -> None:
        self.model.discard(n)
        self.real.discard(n)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def discard_member(self, data: st.DataObject) -> None:
        n = data.draw(st.sampled_from(sorted(self.model)))
        self.model.discard(n)
        self.real.discard(n)

    @rule()
    def compact(self) -> None:
        self.real.compact()
        assert self.real.pending == 0

    @rule(n=DENSE)
    def contains(self, n: str) -> None:
        assert (n in self.real) == (n in self.model)

    @invariant()
    def same(self) -> None:
        assert len(self.real) == len(self.model)
        assert set(self.real) == self.model


TestNumberSetMachine = NumberSetMachine.TestCase
TestNumberSetMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_prefixset_longest_match() -> None:
    p = PrefixSet(["+1", "+1202", "+1202555", "+44"])
    assert p.lengths == (8, 5, 3, 2)
    assert p.longest_match("+12025550123") == "+1202555"
    assert p.longest_match("+12029990123") == "+1202"
    assert p.longest_match("+13015551234") == "+1"
    assert p.longest_match("+442071234567") == "+44"
    assert p.longest_match("+33123456789") is None
    assert p.longest_match("+1") == "+1"
    assert "+1202" in p and "+120" not in p and len(p) == 4
    p.discard("+1202555")
    assert p.lengths == (5, 3, 2)
    assert p.longest_match("+12025550123") == "+1202"
    p.discard("+1202555")  # twice is harmless
    p.add("+1202")  # duplicate add keeps counts right
    p.discard("+1202")
    assert p.lengths == (3, 2) and len(p) == 2
    assert sorted(p) == ["+1", "+44"]
    with pytest.raises(ValueError):
        p.add("")


@given(
    st.sets(st.text(alphabet="+0123", min_size=1, max_size=5), max_size=20),
    st.text(alphabet="+0123", max_size=8),
)
def test_prefixset_matches_brute_force(prefixes: set[str], number: str) -> None:
    p = PrefixSet(prefixes)
    matches = [x for x in prefixes if number.startswith(x)]
    want = max(matches, key=len) if matches else None
    assert p.longest_match(number) == want


def test_snapshot_empty_and_entries() -> None:
    s = Snapshot.empty()
    assert s.entries() == 0
    assert s.emergency == frozenset({"911", "933"})
    assert s.nanpa_npa is None and s.nanpa_nxx is None
    assert not hasattr(s, "k4_deadline")  # obsolete: rules/k4.py applies both triggers


def test_snapshot_apply_sets() -> None:
    s = Snapshot.empty()
    refused = s.apply("block:caller", "add", ["+12025551234", "2025551235", "garbage", "911"])
    assert refused == ["garbage", "911"]
    assert "+12025551234" in s.block_caller and "+12025551235" in s.block_caller
    assert s.apply("block:caller", "remove", ["(202) 555-1234"]) == []
    assert "+12025551234" not in s.block_caller

    s.apply("allow:caller", "add", ["+13015551234"])
    s.set_allow_expiry("+13015551234", 1000.0)
    assert s.allow_expiry == {"+13015551234": 1000.0}
    s.apply("allow:caller", "remove", ["+13015551234"])
    assert s.allow_expiry == {}  # removing the member drops its expiry

    s.apply("dno:caller", "add", ["+18005551234"])
    assert "+18005551234" in s.dno_caller

    assert s.apply("block:prefix", "add", ["+1900", "1800", "+1x"]) == ["1800", "+1x"]
    assert s.block_prefix.longest_match("+19005551234") == "+1900"
    s.apply("block:prefix", "remove", ["+1900"])
    assert len(s.block_prefix) == 0

    s.apply("block:provider", "add", ["pz"])
    assert s.block_provider == {"pz"}
    s.apply("block:provider", "remove", ["pz"])
    assert s.block_provider == set()

    assert s.apply("nanpa:npa", "add", ["202", "2020"]) == ["2020"]
    assert s.nanpa_npa == {"202"}
    assert s.apply("nanpa:nxx", "add", ["202555", "202556", "41655"]) == ["41655"]
    assert s.nanpa_nxx == {"202555", "202556"} and s.nanpa_nxx_npa == {"202"}
    s.apply("nanpa:nxx", "remove", ["202555"])
    assert s.nanpa_nxx_npa == {"202"}
    s.apply("nanpa:nxx", "remove", ["202556"])
    assert s.nanpa_nxx_npa == set()
    assert s.entries() == 3  # one blocked caller left, one DNO number, one NPA

    with pytest.raises(ValueError):
        s.apply("block:nothing", "add", ["x"])
    with pytest.raises(ValueError):
        s.apply("block:caller", "flip", ["+12025551234"])


def test_snapshot_nanpa_derived() -> None:
    s = Snapshot(nanpa_nxx={"202555", "301555"})
    assert s.nanpa_nxx_npa == {"202", "301"}
    s.set_nanpa({"202"}, {"416555"})
    assert s.nanpa_npa == {"202"} and s.nanpa_nxx_npa == {"416"}
    s.set_nanpa(None, None)
    assert s.nanpa_npa is None and s.nanpa_nxx_npa == set()


def test_snapshot_providers_and_notices() -> None:
    s = Snapshot.empty()
    s.set_provider(Provider("pz", "PZ/Illum", rmd_status="removed"))
    with pytest.raises(ValueError):
        s.set_provider(Provider("x", rmd_status="gone"))
    n1 = Notice("n1", "pz", "k4", issued=0.0, mitigation_due=172800.0, report_due=1209600.0)
    s.set_notice(n1)
    s.set_notice(Notice("n2", "pz", "n2", 0.0, 0.0, 0.0, campaigns=("+1202555",)))
    assert [n.id for n in s.notices["pz"]] == ["n1", "n2"]
    # Replacing by id, even when the provider changes.
    s.set_notice(Notice("n1", "other", "k4", 0.0, 1.0, 2.0))
    assert [n.id for n in s.notices["pz"]] == ["n2"]
    assert s.notice("n1") is not None and s.notice("n1").provider == "other"  # type: ignore[union-attr]
    s.remove_notice("n2")
    assert "pz" not in s.notices and s.notice("n2") is None
    with pytest.raises(ValueError):
        s.set_notice(Notice("bad", "pz", "k9", 0.0, 0.0, 0.0))
    s.remove_provider("pz")
    assert s.providers == {}
    assert s.entries() == 1


def test_parse_campaigns() -> None:
    assert parse_campaigns("+1202555, 2025551234 ,+18005551234,") == (
        "+1202555",
        "+12025551234",
        "+18005551234",
    )
    assert parse_campaigns("") == ()
    with pytest.raises(ValueError):
        parse_campaigns("202555")
    with pytest.raises(ValueError):
        parse_campaigns("+1202,abc")
