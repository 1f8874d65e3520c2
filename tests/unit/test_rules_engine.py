"""rules.engine: every rule, their order, expiries, monitor-only and notice timing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.engine import Check, decide, explain
from rules.facts import CallFacts
from rules.snapshot import Notice, NumberSet, Provider, Snapshot
from rules.verdict import (
    ALLOW_DEFAULT,
    ALLOW_EMERGENCY,
    ALLOW_LISTED,
    BLOCK_CALLER,
    BLOCK_DNO_INBOUND_ONLY,
    Rule,
)

HOUR = 3600.0
DAY = 24 * HOUR
# The seed letter: issued 2021-10-21, report due 2021-11-05 ("within fourteen
# (14) days ... (November 5, 2021)"), 48 hours to mitigate.
ISSUED = datetime(2021, 10, 21, 16, 0, tzinfo=UTC).timestamp()
MITIGATION_DUE = ISSUED + 48 * HOUR
REPORT_DUE = datetime(2021, 11, 5, 16, 0, tzinfo=UTC).timestamp()

GOOD = "+13015551234"  # a structurally valid NANP caller on no list
CALLEE = "+12025551000"


def facts(
    caller: str | None = GOOD, callee: str | None = CALLEE, provider: str | None = "up"
) -> CallFacts:
    return CallFacts(caller=caller, callee=callee, provider=provider)


def k4(**kw: float | None) -> Notice:
    fields: dict[str, float | None] = {"fcc_notified": ISSUED + DAY}
    fields.update(kw)
    return Notice(
        "EB-TCD-21-00032740",
        "pz",
        "k4",
        issued=ISSUED,
        mitigation_due=MITIGATION_DUE,
        report_due=REPORT_DUE,
        mitigated=fields.get("mitigated"),
        reported=fields.get("reported"),
        fcc_notified=fields.get("fcc_notified"),
    )


@pytest.fixture
def snap() -> Snapshot:
    s = Snapshot.empty()
    s.apply("block:caller", "add", ["+12025552001"])
    s.apply("block:prefix", "add", ["+1900", "+1809555"])
    s.apply("dno:caller", "add", ["+18007721213"])  # an agency's inbound-only line
    s.set_provider(Provider("up", "Upstream Inc", rmd_status="listed"))
    s.set_provider(Provider("pz", "PZ/Illum", rmd_status="listed"))
    s.set_provider(Provider("gone", "Gone LLC", rmd_status="removed"))
    s.set_provider(Provider("never", "Never Filed", rmd_status="not_listed"))
    s.set_provider(Provider("watch", "Watched", rmd_status="removed", monitor_only=True))
    s.apply("block:provider", "add", ["bad"])
    return s


def test_default_allows_without_allocating(snap: Snapshot) -> None:
    v = decide(snap, facts(), ISSUED)
    assert v is ALLOW_DEFAULT
    assert not v.blocked and v.rule is Rule.DEFAULT and v.would_block is None


@pytest.mark.parametrize("callee", ["911", "933", "+12025550911"])
def test_emergency_first_even_for_blocked_caller_and_provider(snap: Snapshot, callee: str) -> None:
    snap.emergency = frozenset({"911", "933", "+12025550911"})  # a PSAP's ten-digit line
    for provider in ("bad", "gone", "pz"):
        snap.set_notice(k4())
        for caller in ("+12025552001", "+19005551234", "+12025550150", None):
            v = decide(snap, facts(caller, callee, provider), REPORT_DUE + DAY)
            assert v is ALLOW_EMERGENCY
            assert v.rule.citation == "47 CFR 64.1200(k)"


def test_default_emergency_numbers_apply_even_if_snapshot_drops_them(snap: Snapshot) -> None:
    snap.emergency = frozenset({"+12025550911"})
    assert decide(snap, facts("+12025552001", "911", "bad"), 0.0) is ALLOW_EMERGENCY


def test_caller_blocklist(snap: Snapshot) -> None:
    v = decide(snap, facts("+12025552001"), 0.0)
    assert v is BLOCK_CALLER and v.blocked and v.rule.answer_class == "deterministic"


def test_private_caller_still_screened(snap: Snapshot) -> None:
    f = CallFacts("+12025552001", CALLEE, "up", caller_private=True)
    assert decide(snap, f, 0.0) is BLOCK_CALLER


def test_prefix_longest_match(snap: Snapshot) -> None:
    v = decide(snap, facts("+18095551234"), 0.0)
    assert v.blocked and v.rule is Rule.PREFIX_BLOCK and v.detail == "+1809555"
    assert "+1809555" in v.reason
    assert decide(snap, facts("+18095561234"), 0.0) is ALLOW_DEFAULT
    assert decide(snap, facts("+19005551234"), 0.0).detail == "+1900"


def test_allowlist_beats_blocklists_and_expires(snap: Snapshot) -> None:
    snap.apply("allow:caller", "add", ["+12025552001", "+19005551234"])
    assert decide(snap, facts("+12025552001", provider="bad"), 0.0) is ALLOW_LISTED
    assert decide(snap, facts("+19005551234"), 0.0) is ALLOW_LISTED
    snap.set_allow_expiry("+12025552001", 1000.0)
    assert decide(snap, facts("+12025552001"), 999.9) is ALLOW_LISTED
    # An expired entry no longer allows: the blocklist applies again.
    assert decide(snap, facts("+12025552001"), 1000.0) is BLOCK_CALLER
    snap.set_allow_expiry("+12025552001", None)
    assert decide(snap, facts("+12025552001"), 5000.0) is ALLOW_LISTED


@pytest.mark.parametrize(
    ("caller", "detail"),
    [
        ("+10025551234", "area code starts with 0 or 1"),
        ("+19115551234", "N11 area code"),
        ("+12020551234", "exchange starts with 0 or 1"),
        ("+12024111234", "N11 exchange"),
        ("+12025550150", "555-01XX fiction range"),
        ("+1202555012", "wrong length for NANP"),
    ],
)
def test_dno_invalid(snap: Snapshot, caller: str, detail: str) -> None:
    v = decide(snap, facts(caller), 0.0)
    assert v.blocked and v.rule is Rule.DNO_INVALID and v.detail == detail
    assert "47 CFR 64.1200(o)" in v.reason


def test_dno_unallocated_only_with_nanpa_data(snap: Snapshot) -> None:
    assert decide(snap, facts("+13015551234"), 0.0) is ALLOW_DEFAULT  # data not loaded
    snap.set_nanpa({"202", "416"}, {"202555", "202556"})
    v = decide(snap, facts("+13015551234"), 0.0)
    assert v.blocked and v.rule is Rule.DNO_UNALLOCATED and v.detail == "301"
    v = decide(snap, facts("+12025571234"), 0.0)
    assert v.blocked and v.rule is Rule.DNO_UNALLOCATED and v.detail == "202557"
    assert decide(snap, facts("+12025561234"), 0.0) is ALLOW_DEFAULT
    # NPA-NXX data does not cover 416 (Canada): only the NPA rule applies there.
    assert decide(snap, facts("+14165551234"), 0.0) is ALLOW_DEFAULT
    # Non-NANP callers are not judged by NANP data.
    assert decide(snap, facts("+442071234567"), 0.0) is ALLOW_DEFAULT


def test_dno_inbound_only(snap: Snapshot) -> None:
    assert decide(snap, facts("+18007721213"), 0.0) is BLOCK_DNO_INBOUND_ONLY


def test_provider_blocklist(snap: Snapshot) -> None:
    v = decide(snap, facts(provider="bad"), 0.0)
    assert v.blocked and v.rule is Rule.PROVIDER_BLOCK and v.detail == "bad"


@pytest.mark.parametrize(("provider", "state"), [("gone", "removed"), ("never", "never filed")])
def test_rmd_gate(snap: Snapshot, provider: str, state: str) -> None:
    v = decide(snap, facts(provider=provider), 0.0)
    assert v.blocked and v.rule is Rule.RMD_GATE and v.detail == provider
    assert state in v.reason
    assert "47 CFR 64.6305(g)" in v.reason and "64.6305(d)-(f)" in v.reason
    assert "64.6305(c)" not in v.reason
    assert v.rule.answer_class == "deterministic"


def test_rmd_gate_absent_and_removed_say_which() -> None:
    """Absent from the export and removed by an order both fail 47 CFR
    64.6305(g); the reason names which, with the order id and the date."""
    s = Snapshot.empty()
    s.set_provider(Provider("abs", "Absent Co", rmd_status="absent", rmd_since="2025-09-01"))
    s.set_provider(
        Provider(
            "ord", "Ordered Co", rmd_status="removed", rmd_order="DA 25-694", rmd_since="2025-08-05"
        )
    )
    a = decide(s, facts(provider="abs"), 0.0)
    assert a.blocked and a.rule is Rule.RMD_GATE
    assert "absent from the Robocall Mitigation Database export" in a.reason
    assert "2025-09-01" in a.reason and "no removal order" in a.reason
    o = decide(s, facts(provider="ord"), 0.0)
    assert o.blocked and o.rule is Rule.RMD_GATE
    assert "removed from the Robocall Mitigation Database by order DA 25-694" in o.reason
    assert "2025-08-05" in o.reason
    checks = {c.rule: c for c in explain(s, facts(provider="abs"), 0.0)}
    assert checks[Rule.RMD_GATE].matched and "absent" in checks[Rule.RMD_GATE].why


def test_rmd_gate_listed_and_unknown_pass(snap: Snapshot) -> None:
    assert decide(snap, facts(provider="up"), 0.0) is ALLOW_DEFAULT
    assert decide(snap, facts(provider="stranger"), 0.0) is ALLOW_DEFAULT
    snap.set_provider(Provider("unk", rmd_status="unknown"))
    assert decide(snap, facts(provider="unk"), 0.0) is ALLOW_DEFAULT
    assert decide(snap, facts(provider=None), 0.0) is ALLOW_DEFAULT


def test_rmd_monitor_only_allows_with_would_block(snap: Snapshot) -> None:
    v = decide(snap, facts(provider="watch"), 0.0)
    assert not v.blocked and v.would_block is Rule.RMD_GATE
    assert "monitor only" in v.reason


def test_caller_rules_come_before_provider_rules(snap: Snapshot) -> None:
    assert decide(snap, facts("+12025552001", provider="gone"), 0.0) is BLOCK_CALLER
    assert decide(snap, facts("+12025550150", provider="bad"), 0.0).rule is Rule.DNO_INVALID
    # Provider blocklist before the RMD gate.
    snap.apply("block:provider", "add", ["gone"])
    assert decide(snap, facts(provider="gone"), 0.0).rule is Rule.PROVIDER_BLOCK


def test_no_caller_skips_caller_rules(snap: Snapshot) -> None:
    assert decide(snap, facts(None), 0.0) is ALLOW_DEFAULT
    assert decide(snap, facts(None, provider="gone"), 0.0).rule is Rule.RMD_GATE


# -- k4 notice timing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "deadline"), [("mitigation", MITIGATION_DUE), ("report", REPORT_DUE)]
)
def test_k4_blocks_only_after_deadline(snap: Snapshot, which: str, deadline: float) -> None:
    snap.k4_deadline = which
    snap.set_notice(k4())
    before = decide(snap, facts(provider="pz"), deadline - 1)
    assert not before.blocked and before.would_block is Rule.NOTICE_K4
    assert "deadline" in before.reason and "passes" in before.reason
    at = decide(snap, facts(provider="pz"), deadline)
    assert at.blocked and at.rule is Rule.NOTICE_K4 and at.detail == "EB-TCD-21-00032740"
    assert "47 CFR 64.1200(k)(4)" in at.reason and at.rule.answer_class == "analytics"
    # Other providers are untouched.
    assert decide(snap, facts(provider="up"), deadline) is ALLOW_DEFAULT


def test_k4_needs_fcc_notification(snap: Snapshot) -> None:
    snap.set_notice(k4(fcc_notified=None))
    v = decide(snap, facts(provider="pz"), REPORT_DUE + DAY)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4
    assert "FCC has been notified" in v.reason
    before = decide(snap, facts(provider="pz"), REPORT_DUE - DAY)
    assert "passes" in before.reason and "FCC" in before.reason
    # Notification recorded later: blocks from that moment on.
    snap.set_notice(k4(fcc_notified=REPORT_DUE + 2 * DAY))
    assert not decide(snap, facts(provider="pz"), REPORT_DUE + DAY).blocked
    assert decide(snap, facts(provider="pz"), REPORT_DUE + 2 * DAY).blocked


def test_k4_response_stops_block(snap: Snapshot) -> None:
    # Reported in time: never blocks.
    snap.set_notice(k4(reported=REPORT_DUE - DAY))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY) is ALLOW_DEFAULT
    # Reported late: blocks between the deadline and the response, not after.
    snap.set_notice(k4(reported=REPORT_DUE + 3 * DAY))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY).blocked
    assert decide(snap, facts(provider="pz"), REPORT_DUE + 3 * DAY) is ALLOW_DEFAULT
    checks = [
        c
        for c in explain(snap, facts(provider="pz"), REPORT_DUE + 4 * DAY)
        if c.rule is Rule.NOTICE_K4
    ]
    assert len(checks) == 1 and not checks[0].matched and "late" in checks[0].why


def test_k4_mitigation_response_counts_for_mitigation_deadline(snap: Snapshot) -> None:
    snap.k4_deadline = "mitigation"
    snap.set_notice(k4(mitigated=ISSUED + HOUR))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY) is ALLOW_DEFAULT
    snap.k4_deadline = "report"  # the 14-day report is still missing
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY).blocked


def test_k4_monitor_only(snap: Snapshot) -> None:
    snap.set_provider(Provider("pz", "PZ/Illum", rmd_status="listed", monitor_only=True))
    snap.set_notice(k4())
    v = decide(snap, facts(provider="pz"), REPORT_DUE + DAY)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4


def test_monitor_only_covers_every_provider_rule(snap: Snapshot) -> None:
    snap.set_notice(
        Notice("k", "watch", "k4", ISSUED, MITIGATION_DUE, REPORT_DUE, fcc_notified=ISSUED)
    )
    snap.set_provider(Provider("watch", rmd_status="removed", monitor_only=True))
    v = decide(snap, facts(provider="watch"), REPORT_DUE)
    assert not v.blocked and v.would_block is Rule.RMD_GATE  # the first rule that matched
    snap.set_provider(Provider("watch", rmd_status="removed", monitor_only=False))
    assert decide(snap, facts(provider="watch"), REPORT_DUE).rule is Rule.RMD_GATE
    snap.set_provider(Provider("watch", rmd_status="listed", monitor_only=False))
    assert decide(snap, facts(provider="watch"), REPORT_DUE).rule is Rule.NOTICE_K4


def test_blocking_rule_beats_earlier_would_block(snap: Snapshot) -> None:
    # The k4 deadline has not passed (would block), but an n2 campaign matches.
    snap.set_notice(k4())
    snap.set_notice(Notice("n2-1", "pz", "n2", ISSUED, 0.0, 0.0, campaigns=("+1346",)))
    v = decide(snap, facts("+13465551234", provider="pz"), ISSUED + HOUR)
    assert v.blocked and v.rule is Rule.NOTICE_N2
    v = decide(snap, facts(GOOD, provider="pz"), ISSUED + HOUR)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4


# -- n2 notices ----------------------------------------------------------------


def test_n2_campaign_match(snap: Snapshot) -> None:
    snap.set_notice(
        Notice("n2-1", "pz", "n2", ISSUED, 0.0, 0.0, campaigns=("+1346", "+12025553333"))
    )
    v = decide(snap, facts("+13465551234", provider="pz"), ISSUED + 1)
    assert v.blocked and v.rule is Rule.NOTICE_N2 and v.detail == "n2-1:+1346"
    assert "47 CFR 64.1200(n)(2)" in v.reason
    assert decide(snap, facts("+12025553333", provider="pz"), ISSUED + 1).blocked
    # Same caller from another provider, or another caller: allowed.
    assert decide(snap, facts("+13465551234", provider="up"), ISSUED + 1) is ALLOW_DEFAULT
    assert decide(snap, facts("+12025553334", provider="pz"), ISSUED + 1) is ALLOW_DEFAULT
    # Not before the notice was issued, and not without a caller.
    assert decide(snap, facts("+13465551234", provider="pz"), ISSUED - 1) is ALLOW_DEFAULT
    assert decide(snap, facts(None, provider="pz"), ISSUED + 1) is ALLOW_DEFAULT


# -- explain -----------------------------------------------------------------


def test_explain_lists_every_rule_in_order(snap: Snapshot) -> None:
    checks = explain(snap, facts("+12025552001", provider="gone"), 0.0)
    assert all(isinstance(c, Check) for c in checks)
    assert [c.rule for c in checks] == list(Rule)
    matched = {c.rule for c in checks if c.matched}
    assert matched == {Rule.CALLER_BLOCK, Rule.RMD_GATE}
    assert all(c.why for c in checks)
    # the default row names the rule that decided, not that rule's reason
    assert checks[-1].why == f"not reached: rule {Rule.CALLER_BLOCK.label} decides the call"
    plain = explain(snap, facts(GOOD), 0.0)
    assert plain[-1].matched and plain[-1].rule is Rule.DEFAULT


def _first_decider(checks: list[Check]) -> Rule:
    for c in checks:
        if c.matched and c.rule is not Rule.DEFAULT:
            return c.rule
    return Rule.DEFAULT


CALLERS = st.sampled_from(
    [None, GOOD, "+12025552001", "+18095551234", "+19005551234", "+12025550150",
     "+18007721213", "+13465551234", "+442071234567", "+12025571234", "+14165551234"]
)  # fmt: skip
CALLEES = st.sampled_from([None, CALLEE, "911", "933", "+12025550911"])
PROVIDERS = st.sampled_from([None, "up", "pz", "gone", "never", "bad", "stranger"])


@settings(max_examples=300, deadline=None)
@given(
    caller=CALLERS,
    callee=CALLEES,
    provider=PROVIDERS,
    allow=st.booleans(),
    expiry=st.sampled_from([None, 0.0, 10 * DAY + ISSUED]),
    nanpa=st.booleans(),
    when=st.sampled_from(
        [ISSUED - 1, MITIGATION_DUE, REPORT_DUE - 1, REPORT_DUE, REPORT_DUE + 9 * DAY]
    ),
    notified=st.sampled_from([None, ISSUED, REPORT_DUE + DAY]),
    which=st.sampled_from(["mitigation", "report"]),
)  # fmt: skip
def test_explain_agrees_with_decide(
    caller: str | None,
    callee: str | None,
    provider: str | None,
    allow: bool,
    expiry: float | None,
    nanpa: bool,
    when: float,
    notified: float | None,
    which: str,
) -> None:
    s = Snapshot.empty()
    s.block_caller = NumberSet.from_iterable(["+12025552001"])
    s.apply("block:prefix", "add", ["+1900", "+1809555"])
    s.apply("dno:caller", "add", ["+18007721213"])
    s.apply("block:provider", "add", ["bad"])
    for pid, status in (
        ("up", "listed"),
        ("pz", "listed"),
        ("gone", "removed"),
        ("never", "not_listed"),
    ):
        s.set_provider(Provider(pid, rmd_status=status))
    s.set_notice(k4(fcc_notified=notified))
    s.set_notice(Notice("n2", "pz", "n2", ISSUED, 0.0, 0.0, campaigns=("+1346",)))
    s.k4_deadline = which
    if allow and caller is not None:
        s.apply("allow:caller", "add", [caller])
        s.set_allow_expiry(caller, expiry) if expiry is not None else None
    if nanpa:
        s.set_nanpa({"202", "301", "346", "800", "809", "900", "416"}, {"202555", "301555"})
    f = CallFacts(caller, callee, provider)
    verdict = decide(s, f, when)
    checks = explain(s, f, when)
    assert [c.rule for c in checks][:9] == list(Rule)[:9]
    first = _first_decider(checks)
    if verdict.would_block is None:
        assert verdict.rule is first
    if verdict.blocked:
        assert verdict.rule.answer_class in ("deterministic", "analytics")
    if callee in ("911", "933"):
        assert verdict is ALLOW_EMERGENCY


def test_verdict_rule_attributes() -> None:
    labels = [r.label for r in Rule]
    assert len(set(labels)) == len(labels)
    assert all(label == label.lower() and " " not in label for label in labels)
    assert Rule.RMD_GATE.label == "rmd_gate"
    assert Rule.EMERGENCY.citation == "47 CFR 64.1200(k)"
    assert Rule.RMD_GATE.citation == "47 CFR 64.6305(g)"
    assert Rule.NOTICE_K4.citation == "47 CFR 64.1200(k)(4)"
    assert Rule.NOTICE_N2.citation == "47 CFR 64.1200(n)(2)"
    for r in (Rule.DNO_INVALID, Rule.DNO_UNALLOCATED, Rule.DNO_INBOUND_ONLY):
        assert r.citation == "47 CFR 64.1200(o)" and r.answer_class == "deterministic"
    for r in (
        Rule.ALLOWLIST,
        Rule.CALLER_BLOCK,
        Rule.PREFIX_BLOCK,
        Rule.PROVIDER_BLOCK,
        Rule.DEFAULT,
    ):
        assert r.citation == "operator policy"
    assert {r for r in Rule if r.answer_class == "none"} == {
        Rule.EMERGENCY,
        Rule.ALLOWLIST,
        Rule.DEFAULT,
    }
    assert {r for r in Rule if r.answer_class == "analytics"} == {Rule.NOTICE_K4, Rule.NOTICE_N2}
