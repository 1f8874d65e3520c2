"""rules.engine: every rule, their order (emergency; provider gates: unmapped
provider, RMD, FDO; allowlist; DNO; operator lists; notices), expiries,
monitor-only, allowlist overrides and notice/order timing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.engine import Check, decide, decide_update, explain, shaken_mark
from rules.facts import CallFacts
from rules.orders import fdo_blocks_from
from rules.shaken import AttestationPolicy
from rules.snapshot import Notice, NumberSet, Order, Provider, Snapshot
from rules.verdict import (
    ALLOW_DEFAULT,
    ALLOW_EMERGENCY,
    ALLOW_EMERGENCY_CALLER,
    ALLOW_LISTED,
    ALLOW_UNMAPPED_SOURCE,
    BLOCK_CALLER,
    BLOCK_DNO_INBOUND_ONLY,
    BLOCK_UNMAPPED_SOURCE,
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


FCC_AFTER = MITIGATION_DUE + HOUR  # the FCC notified an hour after the window lapsed


def k4(**kw: float | None) -> Notice:
    fields: dict[str, float | None] = {"fcc_notified": FCC_AFTER}
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


def _fdo(provider: str, released: date, oid: str = "DA-24-123") -> Order:
    from rules.orders import order_from_record

    o = order_from_record(
        {
            "provider": provider,
            "kind": "fdo",
            "order": "DA 24-123",
            "released": released.isoformat(),
        },
        oid,
    )
    assert o is not None
    return o


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
    s.set_provider(Provider("bad", "Bad Actor", rmd_status="listed"))
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
            assert v.rule.citation == "47 CFR 64.1200(k)(5)-(6)"


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
    snap.apply("allow:caller", "add", ["+12025552001", "+19005551234", GOOD])
    assert decide(snap, facts(GOOD), 0.0) is ALLOW_LISTED
    # A pass over a rule that would have blocked names that rule (counted).
    v = decide(snap, facts("+12025552001", provider="bad"), 0.0)
    assert not v.blocked and v.rule is Rule.ALLOWLIST and v.would_block is Rule.CALLER_BLOCK
    assert "allowlist" in v.reason and "caller_block" in v.reason
    v = decide(snap, facts("+19005551234"), 0.0)
    assert v.rule is Rule.ALLOWLIST and v.would_block is Rule.PREFIX_BLOCK and v.detail == "+1900"
    snap.set_allow_expiry("+12025552001", 1000.0)
    assert decide(snap, facts("+12025552001"), 999.9).rule is Rule.ALLOWLIST
    # An expired entry no longer allows: the blocklist applies again.
    assert decide(snap, facts("+12025552001"), 1000.0) is BLOCK_CALLER
    snap.set_allow_expiry("+12025552001", None)
    assert decide(snap, facts("+12025552001"), 5000.0).rule is Rule.ALLOWLIST


def test_allowlist_passes_dno_and_notices_counted(snap: Snapshot) -> None:
    # 47 CFR 64.1200(o) is mandatory, but the allowlist stays ahead of DNO: the
    # operator defines its reasonable list; every such pass names the rule.
    snap.apply("allow:caller", "add", ["+12025550150", "+18007721213", "+13465551234"])
    v = decide(snap, facts("+12025550150"), 0.0)
    assert v.rule is Rule.ALLOWLIST and v.would_block is Rule.DNO_INVALID and not v.blocked
    assert decide(snap, facts("+18007721213"), 0.0).would_block is Rule.DNO_INBOUND_ONLY
    snap.set_notice(Notice("n2-1", "pz", "n2", ISSUED, 0.0, 0.0, campaigns=("+1346",)))
    v = decide(snap, facts("+13465551234", provider="pz"), ISSUED + 1)
    assert v.rule is Rule.ALLOWLIST and v.would_block is Rule.NOTICE_N2


@pytest.mark.parametrize("provider", ["gone", "never"])
def test_allowlist_never_lifts_the_rmd_gate(snap: Snapshot, provider: str) -> None:
    # The old order let an allowlisted caller through a provider not in the RMD.
    snap.apply("allow:caller", "add", [GOOD])
    v = decide(snap, facts(GOOD, provider=provider), 0.0)
    assert v.blocked and v.rule is Rule.RMD_GATE


def test_allowlist_never_lifts_an_fdo_or_unmapped_block(snap: Snapshot) -> None:
    snap.apply("allow:caller", "add", [GOOD])
    snap.set_order(_fdo("up", released=date(2024, 5, 1)))
    v = decide(snap, facts(GOOD, provider="up"), fdo_blocks_from(date(2024, 5, 1)))
    assert v.blocked and v.rule is Rule.FDO
    snap.unmapped_provider_policy = "block"
    assert decide(snap, facts(GOOD, provider=None), 0.0) is BLOCK_UNMAPPED_SOURCE


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
    # the decision record's detail names the removal order (the evidence's
    # "notice or order id"); the provider is in the record's own column
    assert o.detail == "DA 25-694" and a.detail == "abs"
    checks = {c.rule: c for c in explain(s, facts(provider="abs"), 0.0)}
    assert checks[Rule.RMD_GATE].matched and "absent" in checks[Rule.RMD_GATE].why


def test_rmd_gate_listed_passes(snap: Snapshot) -> None:
    assert decide(snap, facts(provider="up"), 0.0) is ALLOW_DEFAULT


def test_unjudged_provider_monitor_policy_counts(snap: Snapshot) -> None:
    # Default policy: monitor. Never a silent pass: would_block unmapped_provider.
    assert snap.unmapped_provider_policy == "monitor"
    assert decide(snap, facts(provider=None), 0.0) is ALLOW_UNMAPPED_SOURCE
    v = decide(snap, facts(provider="stranger"), 0.0)
    assert not v.blocked and v.would_block is Rule.UNMAPPED_PROVIDER
    assert "no provider record" in v.reason and v.detail == "stranger"
    snap.set_provider(Provider("unk", rmd_status="unknown"))
    v = decide(snap, facts(provider="unk"), 0.0)
    assert not v.blocked and v.would_block is Rule.UNMAPPED_PROVIDER
    assert "rmd_status unknown" in v.reason
    # A later rule that blocks still blocks.
    assert decide(snap, facts("+12025552001", provider=None), 0.0) is BLOCK_CALLER
    # A more specific would-block outranks the unjudged one (k4 before its deadline).
    snap.set_notice(
        Notice("k", "unk", "k4", ISSUED, MITIGATION_DUE, REPORT_DUE, fcc_notified=REPORT_DUE)
    )
    v = decide(snap, facts(provider="unk"), ISSUED + HOUR)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4
    assert decide(snap, facts(provider="unk"), REPORT_DUE).rule is Rule.NOTICE_K4
    # And so does an allowlist pass; a plain allowlisted call stays counted unjudged.
    snap.apply("allow:caller", "add", ["+12025552001", GOOD])
    v = decide(snap, facts("+12025552001", provider=None), 0.0)
    assert v.rule is Rule.ALLOWLIST and v.would_block is Rule.CALLER_BLOCK
    assert decide(snap, facts(GOOD, provider=None), 0.0) is ALLOW_UNMAPPED_SOURCE


def test_unjudged_provider_block_policy(snap: Snapshot) -> None:
    snap.unmapped_provider_policy = "block"
    v = decide(snap, facts(provider=None), 0.0)
    assert v is BLOCK_UNMAPPED_SOURCE and v.blocked
    assert v.rule.citation == "47 CFR 64.6305(g)" and "64.6305(g)" in v.reason
    assert v.rule.answer_class == "deterministic"
    v = decide(snap, facts(provider="stranger"), 0.0)
    assert v.blocked and v.rule is Rule.UNMAPPED_PROVIDER and v.detail == "stranger"
    snap.set_provider(Provider("unk", rmd_status="unknown"))
    assert decide(snap, facts(provider="unk"), 0.0).rule is Rule.UNMAPPED_PROVIDER
    # monitor_only on the provider record: would-block only.
    snap.set_provider(Provider("unk", rmd_status="unknown", monitor_only=True))
    v = decide(snap, facts(provider="unk"), 0.0)
    assert not v.blocked and v.would_block is Rule.UNMAPPED_PROVIDER
    # Emergency still first.
    assert decide(snap, facts(callee="911", provider=None), 0.0) is ALLOW_EMERGENCY


def test_rmd_monitor_only_allows_with_would_block(snap: Snapshot) -> None:
    v = decide(snap, facts(provider="watch"), 0.0)
    assert not v.blocked and v.would_block is Rule.RMD_GATE
    assert "monitor only" in v.reason


def test_provider_gates_come_before_caller_rules(snap: Snapshot) -> None:
    assert decide(snap, facts("+12025552001", provider="gone"), 0.0).rule is Rule.RMD_GATE
    # DNO before the operator's lists.
    assert decide(snap, facts("+12025550150", provider="bad"), 0.0).rule is Rule.DNO_INVALID
    snap.apply("block:caller", "add", ["+18007721213"])
    assert decide(snap, facts("+18007721213"), 0.0) is BLOCK_DNO_INBOUND_ONLY
    # The RMD gate before the provider blocklist.
    snap.apply("block:provider", "add", ["gone"])
    assert decide(snap, facts(provider="gone"), 0.0).rule is Rule.RMD_GATE
    # A monitor-only gate does not stop a later block.
    assert decide(snap, facts("+12025550150", provider="watch"), 0.0).rule is Rule.DNO_INVALID


def test_no_caller_skips_caller_rules(snap: Snapshot) -> None:
    assert decide(snap, facts(None), 0.0) is ALLOW_DEFAULT
    assert decide(snap, facts(None, provider="gone"), 0.0).rule is Rule.RMD_GATE


# -- k4 notice timing ----------------------------------------------------------


def test_k4_blocks_after_the_window_once_the_fcc_is_notified(snap: Snapshot) -> None:
    # 47 CFR 64.1200(k)(4) trigger (a): no mitigation within 48 hours.
    snap.set_notice(k4())
    before = decide(snap, facts(provider="pz"), MITIGATION_DUE - 1)
    assert not before.blocked and before.would_block is Rule.NOTICE_K4
    assert "48-hour window" in before.reason and "FCC" in before.reason
    at = decide(snap, facts(provider="pz"), FCC_AFTER)
    assert at.blocked and at.rule is Rule.NOTICE_K4 and at.detail == "EB-TCD-21-00032740"
    assert "47 CFR 64.1200(k)(4)" in at.reason and at.rule.answer_class == "analytics"
    # Other providers are untouched.
    assert decide(snap, facts(provider="up"), FCC_AFTER) is ALLOW_DEFAULT


def test_k4_needs_fcc_notification_after_the_trigger(snap: Snapshot) -> None:
    snap.set_notice(k4(fcc_notified=None))
    v = decide(snap, facts(provider="pz"), REPORT_DUE + DAY)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4
    assert "missing: the FCC notification" in v.reason
    # A notice to the FCC dated before the trigger reports no determination.
    snap.set_notice(k4(fcc_notified=ISSUED + DAY))
    v = decide(snap, facts(provider="pz"), REPORT_DUE + DAY)
    assert not v.blocked and "predates" in v.reason
    # Notification recorded later: blocks from that moment on.
    snap.set_notice(k4(fcc_notified=REPORT_DUE + 2 * DAY))
    assert not decide(snap, facts(provider="pz"), REPORT_DUE + DAY).blocked
    assert decide(snap, facts(provider="pz"), REPORT_DUE + 2 * DAY).blocked


def test_k4_late_mitigation_does_not_cure(snap: Snapshot) -> None:
    # Mitigated in time and reported in time: never blocks.
    snap.set_notice(k4(mitigated=ISSUED + HOUR, reported=REPORT_DUE - DAY))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY) is ALLOW_DEFAULT
    # Mitigated after the window: the failure "within 48 hours" stands.
    snap.set_notice(k4(mitigated=MITIGATION_DUE + HOUR, reported=REPORT_DUE - DAY))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY).blocked
    checks = [
        c
        for c in explain(snap, facts(provider="pz"), REPORT_DUE + 4 * DAY)
        if c.rule is Rule.NOTICE_K4
    ]
    assert len(checks) == 1 and checks[0].matched and "not a cure" in checks[0].why


def test_k4_missing_report_is_the_second_trigger(snap: Snapshot) -> None:
    # Mitigated in time, no report by the letter's date: deemed ineffective
    # measures (the letter, item 5); blocks once the FCC is notified after it.
    snap.set_notice(k4(mitigated=ISSUED + HOUR, fcc_notified=REPORT_DUE + HOUR))
    assert not decide(snap, facts(provider="pz"), REPORT_DUE - 1).blocked
    v = decide(snap, facts(provider="pz"), REPORT_DUE + HOUR)
    assert v.blocked and "no report" in v.reason


def test_k4_monitor_only_and_mitigation(snap: Snapshot) -> None:
    snap.set_notice(k4(mitigated=ISSUED + HOUR, reported=ISSUED + 2 * HOUR))
    assert decide(snap, facts(provider="pz"), REPORT_DUE + DAY) is ALLOW_DEFAULT


def test_k4_monitor_only(snap: Snapshot) -> None:
    snap.set_provider(Provider("pz", "PZ/Illum", rmd_status="listed", monitor_only=True))
    snap.set_notice(k4())
    v = decide(snap, facts(provider="pz"), REPORT_DUE + DAY)
    assert not v.blocked and v.would_block is Rule.NOTICE_K4
    assert v.reason.startswith("monitor only, allowed:")


def test_monitor_only_covers_every_provider_rule(snap: Snapshot) -> None:
    snap.set_notice(
        Notice("k", "watch", "k4", ISSUED, MITIGATION_DUE, REPORT_DUE, fcc_notified=FCC_AFTER)
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


# -- emergency ---------------------------------------------------------------


@pytest.mark.parametrize(
    "callee", ["urn:service:sos", "urn:service:sos.fire", "urn:service:sos.police"]
)
def test_emergency_urn_service_sos(snap: Snapshot, callee: str) -> None:
    # RFC 5031: urn:service:sos and its sub-services are emergency calls.
    snap.unmapped_provider_policy = "block"
    for provider in ("gone", None, "bad"):
        assert decide(snap, facts("+12025552001", callee, provider), 0.0) is ALLOW_EMERGENCY


@pytest.mark.parametrize(
    "callee", ["urn:service:sosx", "urn:service:counseling", "urn:service:so", "+1911"]
)
def test_not_emergency_urns(snap: Snapshot, callee: str) -> None:
    assert decide(snap, facts(callee=callee, provider="gone"), 0.0).rule is Rule.RMD_GATE


def test_emergency_caller_passes_every_gate(snap: Snapshot) -> None:
    psap = "+13015550100"
    snap.unmapped_provider_policy = "block"
    snap.apply("block:caller", "add", [psap])
    snap.set_order(_fdo("up", released=date(2024, 5, 1)))
    for provider in ("gone", "bad", None, "up"):
        assert decide(snap, facts(psap, provider=provider), 0.0).blocked
    snap.apply("emergency:caller", "add", [psap])
    for provider in ("gone", "bad", None, "up"):
        v = decide(snap, facts(psap, provider=provider), REPORT_DUE)
        assert v is ALLOW_EMERGENCY_CALLER and not v.blocked and v.rule is Rule.EMERGENCY
        assert "emergency caller" in v.reason and "64.1200(k)(6)" in v.reason
    # From config (kept apart from the Redis set).
    other = "+13015550101"
    snap.emergency_caller_config = frozenset({13015550101})
    assert decide(snap, facts(other, provider="gone"), 0.0) is ALLOW_EMERGENCY_CALLER


# -- Final Determination Orders (47 CFR 64.1200(n)(3)) -------------------------


def test_fdo_blocks_from_the_30th_day_after_release(snap: Snapshot) -> None:
    released = date(2024, 5, 1)
    snap.set_order(_fdo("up", released))
    start = fdo_blocks_from(released)
    # 2024-05-31 00:00 EDT = 04:00 UTC: day 30 after the release blocks.
    assert start == datetime(2024, 5, 31, 4, 0, tzinfo=UTC).timestamp()
    before = decide(snap, facts(provider="up"), start - 1)
    assert not before.blocked and before.would_block is Rule.FDO
    assert "2024-05-31T04:00:00Z" in before.reason and before.detail == "DA-24-123"
    at = decide(snap, facts(provider="up"), start)
    assert at.blocked and at.rule is Rule.FDO and at.detail == "DA-24-123"
    assert "47 CFR 64.1200(n)(3)" in at.reason and "DA 24-123" in at.reason
    assert at.rule.citation == "47 CFR 64.1200(n)(3)" and at.rule.answer_class == "deterministic"
    # Before it, other rules still block; other providers are untouched.
    assert decide(snap, facts("+12025552001", provider="up"), start - 1) is BLOCK_CALLER
    assert decide(snap, facts(provider="pz"), start) is ALLOW_DEFAULT
    # A monitor-only provider: would_block.
    snap.set_provider(Provider("up", "Upstream Inc", rmd_status="listed", monitor_only=True))
    v = decide(snap, facts(provider="up"), start)
    assert not v.blocked and v.would_block is Rule.FDO
    snap.remove_order("DA-24-123")
    snap.set_provider(Provider("up", "Upstream Inc", rmd_status="listed"))
    assert decide(snap, facts(provider="up"), start) is ALLOW_DEFAULT


def test_fdo_winter_release_uses_eastern_standard_time(snap: Snapshot) -> None:
    released = date(2024, 12, 2)
    assert fdo_blocks_from(released) == datetime(2025, 1, 1, 5, 0, tzinfo=UTC).timestamp()


def test_fdo_rmd_pending_does_not_hide_fdo_block(snap: Snapshot) -> None:
    snap.set_order(_fdo("watch", date(2024, 5, 1)))
    v = decide(snap, facts(provider="watch"), 0.0)  # monitor-only, removed; FDO pending
    assert not v.blocked and v.would_block is Rule.RMD_GATE


def test_monitor_only_rmd_still_counted(snap: Snapshot) -> None:
    snap.apply("allow:caller", "add", [GOOD])
    v = decide(snap, facts(GOOD, provider="watch"), 0.0)
    assert not v.blocked and v.would_block is Rule.RMD_GATE


# -- explain -----------------------------------------------------------------


def test_explain_lists_every_rule_in_order(snap: Snapshot) -> None:
    checks = explain(snap, facts("+12025552001", provider="gone"), 0.0)
    assert all(isinstance(c, Check) for c in checks)
    assert [c.rule for c in checks] == list(Rule)
    matched = {c.rule for c in checks if c.matched}
    assert matched == {Rule.CALLER_BLOCK, Rule.RMD_GATE}
    assert all(c.why for c in checks)
    # the default row names the rule that decided, not that rule's reason
    assert checks[-1].why == f"not reached: rule {Rule.RMD_GATE.label} decides the call"
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
CALLEES = st.sampled_from(
    [None, CALLEE, "911", "933", "+12025550911", "urn:service:sos.fire", "urn:service:x"]
)
PROVIDERS = st.sampled_from([None, "up", "pz", "gone", "never", "bad", "stranger", "unk", "fdo"])
SHAKEN_STATES = [
    (None, "", None),  # [shaken] off
    ("TN-Validation-Passed", "", "A"),
    ("TN-Validation-Passed", "", "C"),
    ("TN-Validation-Failed", "bad_signature", None),
    ("No-TN-Validation", "unsigned", None),
    ("No-TN-Validation", "cert_pending", None),
]
FDO_RELEASED = date(2021, 10, 1)  # blocks from 2021-10-31, between ISSUED and REPORT_DUE


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
    notified=st.sampled_from([None, ISSUED, FCC_AFTER, REPORT_DUE + DAY]),
    policy=st.sampled_from(["block", "monitor"]),
    psap=st.booleans(),
    shaken=st.sampled_from(SHAKEN_STATES),
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
    policy: str,
    psap: bool,
    shaken: tuple[str | None, str, str | None],
) -> None:
    s = Snapshot.empty()
    s.unmapped_provider_policy = policy
    s.shaken_policy = {
        "": AttestationPolicy(unsigned="block", c_attested="block"),
        "up": AttestationPolicy(failed="block"),
    }
    s.set_provider(Provider("unk", rmd_status="unknown"))
    s.set_provider(Provider("fdo", rmd_status="listed"))
    s.set_order(_fdo("fdo", FDO_RELEASED))
    if psap:
        s.apply("emergency:caller", "add", ["+12025552001", "+12025550150"])
    s.block_caller = NumberSet.from_iterable(["+12025552001"])
    s.apply("block:prefix", "add", ["+1900", "+1809555"])
    s.apply("dno:caller", "add", ["+18007721213"])
    s.apply("block:provider", "add", ["bad"])
    for pid, status in (
        ("up", "listed"),
        ("pz", "listed"),
        ("gone", "removed"),
        ("never", "not_listed"),
        ("bad", "listed"),
    ):
        s.set_provider(Provider(pid, rmd_status=status))
    s.set_notice(k4(fcc_notified=notified))
    s.set_notice(Notice("n2", "pz", "n2", ISSUED, 0.0, 0.0, campaigns=("+1346",)))
    if allow and caller is not None:
        s.apply("allow:caller", "add", [caller])
        s.set_allow_expiry(caller, expiry) if expiry is not None else None
    if nanpa:
        s.set_nanpa({"202", "301", "346", "800", "809", "900", "416"}, {"202555", "301555"})
    f = CallFacts(caller, callee, provider)
    f.verstat, f.shaken_reason, f.attest = shaken
    verdict = decide(s, f, when)
    checks = explain(s, f, when)
    assert [c.rule for c in checks][:9] == list(Rule)[:9]
    first = _first_decider(checks)
    if verdict.would_block is None or verdict.rule is Rule.ALLOWLIST:
        assert verdict.rule is first
    else:
        # A would-block (monitor gate, pending notice/order) allows: no rule
        # decided, unless the caller is allowlisted (the gate's would-block
        # is then still what is counted).
        assert verdict.rule is Rule.DEFAULT and first in (Rule.DEFAULT, Rule.ALLOWLIST)
    if verdict.blocked:
        assert verdict.rule.answer_class in ("deterministic", "analytics")
    if callee in ("911", "933", "urn:service:sos.fire"):
        assert verdict is ALLOW_EMERGENCY
    elif psap and caller in ("+12025552001", "+12025550150"):
        assert verdict is ALLOW_EMERGENCY_CALLER
    if provider in ("gone", "never") and verdict.rule is not Rule.EMERGENCY:
        assert verdict.blocked and verdict.rule is Rule.RMD_GATE  # no allowlist lifts it


def test_verdict_rule_attributes() -> None:
    labels = [r.label for r in Rule]
    assert len(set(labels)) == len(labels)
    assert all(label == label.lower() and " " not in label for label in labels)
    assert Rule.RMD_GATE.label == "rmd_gate"
    assert Rule.EMERGENCY.citation == "47 CFR 64.1200(k)(5)-(6)"
    assert Rule.FDO.label == "fdo" and Rule.FDO.citation == "47 CFR 64.1200(n)(3)"
    assert Rule.UNMAPPED_PROVIDER.citation == "47 CFR 64.6305(g)"
    assert list(Rule)[:5] == [
        Rule.EMERGENCY,
        Rule.UNMAPPED_PROVIDER,
        Rule.RMD_GATE,
        Rule.FDO,
        Rule.ALLOWLIST,
    ]
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


# The seams the first property left out: RMD "absent", monitor-only providers
# under every gate (RMD, FDO, k4), an FDO against a removed provider, and the
# k4 notice's responses and determinations (both triggers, cures, late ones).
K4_VARIANTS = st.sampled_from(
    [
        {},
        {"mitigated": ISSUED + HOUR},
        {"mitigated": MITIGATION_DUE + HOUR},
        {"mitigated": ISSUED + HOUR, "reported": REPORT_DUE - DAY},
        {"mitigated": ISSUED + HOUR, "ineffective": REPORT_DUE + DAY},
        {"effective": REPORT_DUE + 2 * DAY},
        {"reported": REPORT_DUE + HOUR},
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    caller=CALLERS,
    callee=st.sampled_from([CALLEE, "911", "urn:service:sos", None]),
    provider=st.sampled_from(
        [None, "absent", "watch", "watchfdo", "watchk4", "pz", "gonefdo", "unk", "watchunk"]
    ),
    allow=st.booleans(),
    when=st.sampled_from(
        [ISSUED - 1, MITIGATION_DUE, REPORT_DUE - 1, REPORT_DUE, REPORT_DUE + 9 * DAY]
    ),
    notified=st.sampled_from([None, ISSUED, FCC_AFTER, REPORT_DUE + 3 * DAY]),
    k4_fields=K4_VARIANTS,
    policy=st.sampled_from(["block", "monitor"]),
    blocked_provider=st.booleans(),
    ocn=st.sampled_from([None, None, "PZ01", "WK04", "WF01", "GF01", "AB01", "ZZZZ"]),
)  # fmt: skip
def test_explain_agrees_with_decide_absent_monitor_fdo_k4(
    caller: str | None,
    callee: str | None,
    provider: str | None,
    allow: bool,
    when: float,
    notified: float | None,
    k4_fields: dict[str, float],
    policy: str,
    blocked_provider: bool,
    ocn: str | None,
) -> None:
    s = Snapshot.empty()
    s.unmapped_provider_policy = policy
    s.set_provider(Provider("absent", rmd_status="absent", rmd_since="2021-10-01", ocn="AB01"))
    s.set_provider(Provider("watch", rmd_status="removed", monitor_only=True))
    s.set_provider(Provider("watchfdo", rmd_status="listed", monitor_only=True, ocns="WF01"))
    s.set_provider(Provider("watchk4", rmd_status="listed", monitor_only=True, rmd_ocn="WK04"))
    s.set_provider(Provider("watchunk", rmd_status="unknown", monitor_only=True))
    s.set_provider(Provider("pz", rmd_status="listed", ocn="PZ01"))
    s.set_provider(Provider("gonefdo", rmd_status="removed", rmd_order="DA 25-694", ocn="GF01"))
    s.set_order(_fdo("watchfdo", FDO_RELEASED, "O1"))
    s.set_order(_fdo("gonefdo", FDO_RELEASED, "O2"))
    s.set_order(_fdo("pz", date(2021, 10, 20), "O3"))  # blocks from 2021-11-19
    s.block_caller = NumberSet.from_iterable(["+12025552001"])
    s.apply("dno:caller", "add", ["+18007721213"])
    if blocked_provider:
        s.apply("block:provider", "add", ["watchk4", "watchfdo", "pz"])
    for pid in ("pz", "watchk4"):
        fields: dict[str, float | None] = {"fcc_notified": notified, **k4_fields}
        s.set_notice(
            Notice(
                f"K4-{pid}", pid, "k4", issued=ISSUED, mitigation_due=MITIGATION_DUE,
                report_due=REPORT_DUE, mitigated=fields.get("mitigated"),
                reported=fields.get("reported"), fcc_notified=fields.get("fcc_notified"),
                ineffective=fields.get("ineffective"), effective=fields.get("effective"),
            )
        )  # fmt: skip
    if allow and caller is not None:
        s.apply("allow:caller", "add", [caller])
    f = CallFacts(caller, callee, provider)
    if ocn is not None:  # a verified signer (rules/shaken.py sets it only then)
        f.verstat, f.attest, f.ocn = "TN-Validation-Passed", "A", ocn
    verdict = decide(s, f, when)
    checks = explain(s, f, when)
    rules = [c.rule for c in checks]
    assert [r for i, r in enumerate(rules) if i == 0 or rules[i - 1] is not r][:9] == list(Rule)[:9]
    first = _first_decider(checks)
    if verdict.would_block is None or verdict.rule is Rule.ALLOWLIST:
        assert verdict.rule is first, (verdict, [(c.rule, c.matched) for c in checks])
    else:
        assert verdict.rule is Rule.DEFAULT and first in (Rule.DEFAULT, Rule.ALLOWLIST), (
            verdict,
            [(c.rule, c.matched, c.why) for c in checks],
        )
    if verdict.by_signature:
        assert ocn is not None and "matched by signature" in verdict.reason
        assert s.ocn_provider[ocn] != provider
    if callee in ("911", "urn:service:sos"):
        assert verdict is ALLOW_EMERGENCY
    elif provider in ("absent", "gonefdo"):
        assert verdict.blocked and verdict.rule is Rule.RMD_GATE
    elif (
        provider in ("watch", "watchfdo", "watchk4", "watchunk")
        and verdict.blocked
        and not verdict.by_signature  # the signer's own rules are its own
    ):
        # a monitor-only provider is never blocked by a provider rule (2, 6)
        assert verdict.rule not in (
            Rule.RMD_GATE, Rule.FDO, Rule.NOTICE_K4, Rule.UNMAPPED_PROVIDER
        )  # fmt: skip


# -- STIR/SHAKEN attestation policy (operator policy) ---------------------------


def _signed(
    verstat: str | None, reason: str = "", attest: str | None = None, **kw: str
) -> CallFacts:
    f = facts(**kw)  # type: ignore[arg-type]
    f.verstat, f.shaken_reason, f.attest = verstat, reason, attest
    return f


@pytest.fixture
def shaken_snap() -> Snapshot:
    s = Snapshot.empty()
    for pid in ("up", "strict"):
        s.set_provider(Provider(pid, rmd_status="listed"))
    s.shaken_policy = {
        "": AttestationPolicy(),  # pass and count
        "strict": AttestationPolicy(unsigned="block", c_attested="block", failed="block"),
    }
    return s


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (("No-TN-Validation", "unsigned", None), "unsigned"),
        (("TN-Validation-Passed", "", "C"), "c_attested"),
        (("TN-Validation-Failed", "stale", None), "failed:stale"),
    ],
)
def test_shaken_policy_blocks_per_provider(
    shaken_snap: Snapshot, state: tuple[str, str, str | None], detail: str
) -> None:
    v = decide(shaken_snap, _signed(*state, provider="strict"), 0.0)
    assert v.blocked and v.rule is Rule.SHAKEN_POLICY and v.detail == detail
    assert v.rule.citation == "operator policy" and v.rule.answer_class == "deterministic"
    assert "strict" in v.reason and "block" in v.reason
    # the default policy (pass and count) for another provider
    assert decide(shaken_snap, _signed(*state, provider="up"), 0.0) is ALLOW_DEFAULT


@pytest.mark.parametrize(
    "state",
    [
        (None, "", None),  # [shaken] off: never judged
        ("TN-Validation-Passed", "", "A"),
        ("TN-Validation-Passed", "", "B"),
        ("No-TN-Validation", "cert_pending", None),  # not the signer's fault
    ],
)
def test_shaken_policy_passes(shaken_snap: Snapshot, state: tuple[str, str, str | None]) -> None:
    assert decide(shaken_snap, _signed(*state, provider="strict"), 0.0) is ALLOW_DEFAULT


def test_shaken_policy_default_applies_to_unlisted_and_unmapped(shaken_snap: Snapshot) -> None:
    shaken_snap.shaken_policy = {"": AttestationPolicy(unsigned="block")}
    v = decide(shaken_snap, _signed("No-TN-Validation", "unsigned", provider="up"), 0.0)
    assert v.rule is Rule.SHAKEN_POLICY
    v = decide(shaken_snap, _signed("No-TN-Validation", "unsigned", provider=None), 0.0)
    assert v.rule is Rule.SHAKEN_POLICY and "unmapped source" in v.reason


def test_shaken_policy_order(shaken_snap: Snapshot) -> None:
    """After the provider gates and the operator lists; the allowlist exempts from it."""
    shaken_snap.set_provider(Provider("gone", rmd_status="removed"))
    shaken_snap.shaken_policy = {"": AttestationPolicy(unsigned="block")}
    unsigned = ("No-TN-Validation", "unsigned", None)
    assert decide(shaken_snap, _signed(*unsigned, provider="gone"), 0.0).rule is Rule.RMD_GATE
    shaken_snap.apply("block:caller", "add", [GOOD])
    assert decide(shaken_snap, _signed(*unsigned), 0.0).rule is Rule.CALLER_BLOCK
    shaken_snap.apply("block:caller", "remove", [GOOD])
    shaken_snap.apply("allow:caller", "add", [GOOD])
    v = decide(shaken_snap, _signed(*unsigned), 0.0)
    assert not v.blocked and v.rule is Rule.ALLOWLIST and v.would_block is Rule.SHAKEN_POLICY
    checks = {c.rule: c for c in explain(shaken_snap, _signed(*unsigned), 0.0)}
    assert checks[Rule.SHAKEN_POLICY].matched


# -- providers tied to OCNs: rules by signature (issue 11) ------------------------


@pytest.fixture
def ocn_snap() -> Snapshot:
    s = Snapshot.empty()
    s.set_provider(Provider("clean", rmd_status="listed", ocn="CL01"))
    s.set_provider(Provider("pz", rmd_status="listed", ocn="PZ01", ocns="PZ02, pz03"))
    s.set_provider(Provider("ordered", rmd_status="listed", rmd_ocn="OR01"))
    s.set_provider(Provider("listed", rmd_status="listed", ocn="BL01"))
    s.set_notice(k4(fcc_notified=FCC_AFTER))  # k4 against pz
    s.set_order(_fdo("ordered", FDO_RELEASED, "O9"))
    s.apply("block:provider", "add", ["listed"])
    return s


def _by(ocn: str | None, provider: str = "clean", caller: str = GOOD) -> CallFacts:
    f = CallFacts(caller, CALLEE, provider)
    if ocn is not None:
        f.verstat, f.attest, f.ocn = "TN-Validation-Passed", "A", ocn
    return f


def test_ocn_index_follows_provider_edits(ocn_snap: Snapshot) -> None:
    s = ocn_snap
    assert s.ocn_provider["PZ03"] == "pz" and s.ocn_provider["OR01"] == "ordered"
    s.set_provider(Provider("aaa", rmd_status="listed", ocns="PZ02"))
    assert s.ocn_provider["PZ02"] == "aaa"  # two claims: the lowest id, deterministic
    s.remove_provider("aaa")
    assert s.ocn_provider["PZ02"] == "pz"
    s.set_provider(Provider("pz", rmd_status="listed", ocn="PZ01"))
    assert "PZ02" not in s.ocn_provider and "PZ03" not in s.ocn_provider


def test_k4_applies_to_the_calls_a_provider_signed_through_a_clean_trunk(
    ocn_snap: Snapshot,
) -> None:
    when = REPORT_DUE + 9 * DAY
    v = decide(ocn_snap, _by("PZ02"), when)
    assert v.blocked and v.rule is Rule.NOTICE_K4 and v.by_signature
    assert "matched by signature" in v.reason and "OCN PZ02" in v.reason
    assert "received through provider 'clean'" in v.reason
    # the same notice by trunk: not "by signature"
    v2 = decide(ocn_snap, _by(None, provider="pz"), when)
    assert v2.blocked and v2.rule is Rule.NOTICE_K4 and not v2.by_signature
    # unsigned, or signed by the trunk's own OCN, or an OCN no provider claims: allowed
    for f in (_by(None), _by("CL01"), _by("ZZ99")):
        assert decide(ocn_snap, f, when) is ALLOW_DEFAULT
    # the allowlist exempts from step 6, by signature as by trunk
    ocn_snap.apply("allow:caller", "add", [GOOD])
    v3 = decide(ocn_snap, _by("PZ02"), when)
    assert not v3.blocked and v3.rule is Rule.ALLOWLIST and v3.would_block is Rule.NOTICE_K4


def test_fdo_and_provider_block_by_signature(ocn_snap: Snapshot) -> None:
    when = REPORT_DUE + 9 * DAY
    v = decide(ocn_snap, _by("OR01"), when)
    assert v.blocked and v.rule is Rule.FDO and v.by_signature and v.detail == "O9"
    assert v.rule.citation == "47 CFR 64.1200(n)(3)"
    ocn_snap.apply("allow:caller", "add", [GOOD])
    assert decide(ocn_snap, _by("OR01"), when).rule is Rule.FDO  # no allowlist lifts it
    v = decide(ocn_snap, _by("BL01", caller="+13015551299"), when)
    assert v.blocked and v.rule is Rule.PROVIDER_BLOCK and v.by_signature
    checks = explain(ocn_snap, _by("BL01", caller="+13015551299"), when)
    assert [c.rule for c in checks if c.matched][0] is Rule.PROVIDER_BLOCK
    assert any("matched by signature" in c.why for c in checks if c.matched)


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (("No-TN-Validation", "unsigned", None), "mark:unsigned"),
        (("TN-Validation-Passed", "", "C"), "mark:c_attested"),
        (("TN-Validation-Failed", "bad_signature", None), "mark:failed:bad_signature"),
    ],
)
def test_shaken_mark_never_blocks(
    shaken_snap: Snapshot, state: tuple[str, str, str | None], detail: str
) -> None:
    shaken_snap.shaken_policy = {
        "": AttestationPolicy(),
        "strict": AttestationPolicy(unsigned="mark", c_attested="mark", failed="mark"),
    }
    f = _signed(*state, provider="strict")
    v = decide(shaken_snap, f, 0.0)
    assert v is ALLOW_DEFAULT  # a mark is not a decision: the call passes
    mark = shaken_mark(shaken_snap, f, v)
    assert mark is not None and not mark.blocked and mark.rule is Rule.SHAKEN_POLICY
    assert mark.detail == detail and "= mark" in mark.reason and "strict" in mark.reason
    checks = {c.rule: c for c in explain(shaken_snap, f, 0.0)}
    assert "marks it" in checks[Rule.SHAKEN_POLICY].why
    # the default policy (pass) of another provider: no mark
    other = _signed(*state, provider="up")
    assert shaken_mark(shaken_snap, other, decide(shaken_snap, other, 0.0)) is None


def test_shaken_mark_exemptions_and_later_blocks(shaken_snap: Snapshot) -> None:
    shaken_snap.shaken_policy = {"": AttestationPolicy(unsigned="mark")}
    unsigned = ("No-TN-Validation", "unsigned", None)
    for state in ((None, "", None), ("TN-Validation-Passed", "", "A")):
        f = _signed(*state)  # type: ignore[arg-type]
        assert shaken_mark(shaken_snap, f, ALLOW_DEFAULT) is None
    # an emergency call and an allowlisted caller are never marked
    assert shaken_mark(shaken_snap, _signed(*unsigned), ALLOW_EMERGENCY) is None
    shaken_snap.apply("allow:caller", "add", [GOOD])
    f = _signed(*unsigned)
    assert decide(shaken_snap, f, 0.0) is ALLOW_LISTED
    assert shaken_mark(shaken_snap, f, ALLOW_LISTED) is None
    # a mark does not stop the rules after it: a block still blocks
    shaken_snap.apply("allow:caller", "remove", [GOOD])
    shaken_snap.apply("block:caller", "add", [GOOD])
    assert decide(shaken_snap, f, 0.0).rule is Rule.CALLER_BLOCK


# -- 5b: the call's other identities against the number lists -----------------


def _two_ids(caller: str | None, *others: str, callee: str = CALLEE) -> CallFacts:
    return CallFacts(caller=caller, callee=callee, provider="up", other_callers=others)


@pytest.mark.parametrize(
    ("other", "rule", "list_reason"),
    [
        ("+12025552001", Rule.CALLER_BLOCK, BLOCK_CALLER.reason),
        ("+18007721213", Rule.DNO_INBOUND_ONLY, BLOCK_DNO_INBOUND_ONLY.reason),
        ("+19005551234", Rule.PREFIX_BLOCK, "blocked prefix +1900"),
    ],
)
def test_a_listed_number_in_another_identity_header_blocks(
    snap: Snapshot, other: str, rule: Rule, list_reason: str
) -> None:
    """A clean P-Asserted-Identity does not carry a From (or second PAI) that is on
    the inbound-only DNO list or an operator blocklist past the screen: the block
    has that list's rule and citation, and the reason names both numbers."""
    v = decide(snap, _two_ids(GOOD, "+13015559876", other), 0.0)
    assert v.blocked and v.rule is rule and v.detail == f"identity:{other}"
    assert list_reason in v.reason and other in v.reason and GOOD in v.reason
    checks = explain(snap, _two_ids(GOOD, "+13015559876", other), 0.0)
    assert [c.matched for c in checks if other in c.why] == [True]
    assert [c.matched for c in checks if "+13015559876" in c.why] == [False]


def test_other_identities_are_checked_against_the_lists_only(snap: Snapshot) -> None:
    """An invalid or unallocated From behind a real PAI (a PBX extension, 555-01XX)
    is common on legitimate calls: the DNO validity rules judge the caller ID
    alone. Emergency calls are never blocked."""
    assert decide(snap, _two_ids(GOOD, "+12025550150", "+1555"), 0.0) is ALLOW_DEFAULT
    snap.apply("allow:caller", "add", [GOOD])
    assert decide(snap, _two_ids(GOOD, "+12025552001", callee="911"), 0.0) is ALLOW_EMERGENCY
    # the caller ID's own block comes first
    v = decide(snap, _two_ids("+19005551234", "+12025552001"), 0.0)
    assert v.rule is Rule.PREFIX_BLOCK and v.detail == "+1900"


# -- an in-dialog UPDATE's identities (decide_update) ---------------------------


@pytest.mark.parametrize(
    ("ids", "rule", "number"),
    [
        (("+12025552001",), Rule.CALLER_BLOCK, "+12025552001"),  # the caller ID
        ((GOOD, "+18007721213"), Rule.DNO_INBOUND_ONLY, "+18007721213"),  # another identity
        ((GOOD, "+13015559876", "+19005551234"), Rule.PREFIX_BLOCK, "+19005551234"),
    ],
)
def test_an_update_naming_a_listed_number_is_refused(
    snap: Snapshot, ids: tuple[str, ...], rule: Rule, number: str
) -> None:
    """Each identity an UPDATE presents is checked against the number lists: a
    match refuses it with that list's rule (its citation and answer class), the
    reason and detail naming the number and the UPDATE."""
    v = decide_update(snap, _two_ids(*ids), 0.0)
    assert v.blocked and v.rule is rule and v.detail == f"update:{number}"
    assert number in v.reason and "UPDATE" in v.reason and "RFC 3311" in v.reason


def test_an_update_is_judged_by_the_lists_alone(snap: Snapshot) -> None:
    """Only the number lists: an UPDATE repeating what a call was admitted with
    (a session refresh) is never refused by a rule the INVITE's other identities
    never faced: an invalid or unallocated From (a PBX extension), no number, a
    provider removed from the RMD or on the provider blocklist. The exemptions
    of a call hold: an emergency caller passes; an allowlisted number
    (unexpired) is exempt itself, not another number the UPDATE shows; an
    expired allowlist entry exempts nothing."""
    for ids in ((GOOD,), (GOOD, "+12025550150", "+1555"), (None,), ("+10005551234",)):
        assert decide_update(snap, _two_ids(*ids), 0.0) is ALLOW_DEFAULT
    for provider in ("gone", "bad", None):
        f = CallFacts(caller=GOOD, callee=None, provider=provider)
        assert decide_update(snap, f, 0.0) is ALLOW_DEFAULT
    assert decide_update(snap, _two_ids(None, "+12025552001"), 0.0).blocked
    listed = _two_ids("+12025552001", "+13015559876")
    snap.apply("allow:caller", "add", ["+12025552001"])
    assert decide_update(snap, listed, 0.0) is ALLOW_LISTED
    # the allowlisted caller ID does not carry a listed other identity
    v = decide_update(snap, _two_ids("+12025552001", "+19005551234"), 0.0)
    assert v.rule is Rule.PREFIX_BLOCK and v.detail == "update:+19005551234"
    snap.allow_expiry["+12025552001"] = 100.0
    assert decide_update(snap, listed, 99.0) is ALLOW_LISTED
    assert decide_update(snap, listed, 100.0).rule is Rule.CALLER_BLOCK
    snap.apply("emergency:caller", "add", ["+12025552001"])
    assert decide_update(snap, listed, 100.0) is ALLOW_EMERGENCY_CALLER


def test_an_allowlisted_caller_id_does_not_carry_a_listed_other_identity(snap: Snapshot) -> None:
    """The allowlist vouches for the number it lists. A call whose allowlisted
    P-Asserted-Identity came with a blocked From, or a blocked number in the
    display name, put that number on the callee's phone: the allowlist passed
    over it as over a rule about the caller. Now a listed other identity
    blocks with its list's rule, the reason saying whose entry exempts whom,
    unless that number is allowlisted too (or the call is an emergency
    call). A rule about the caller ID itself is still passed over, counted."""
    snap.apply("allow:caller", "add", [GOOD])
    for other, rule in (
        ("+12025552001", Rule.CALLER_BLOCK),
        ("+18007721213", Rule.DNO_INBOUND_ONLY),
    ):
        v = decide(snap, _two_ids(GOOD, "+13015559876", other), 0.0)
        assert v.blocked and v.rule is rule and v.detail == f"identity:{other}"
        assert f"{GOOD}'s allowlist entry exempts {GOOD}, not {other}" in v.reason
        checks = explain(snap, _two_ids(GOOD, other), 0.0)
        allow = next(c for c in checks if c.rule is Rule.ALLOWLIST)
        assert allow.matched and f"not {other}, which the call also shows" in allow.why
    snap.apply("allow:caller", "add", ["+12025552001"])  # vouched for too: passes, counted
    v = decide(snap, _two_ids(GOOD, "+12025552001"), 0.0)
    assert not v.blocked and v.rule is Rule.ALLOWLIST and v.would_block is Rule.CALLER_BLOCK
    snap.allow_expiry["+12025552001"] = 100.0  # ... until its entry expires
    assert decide(snap, _two_ids(GOOD, "+12025552001"), 100.0).rule is Rule.CALLER_BLOCK
    snap.apply("block:caller", "add", [GOOD])  # the caller ID's own block: passed over
    v = decide(snap, _two_ids(GOOD, "+13015559876"), 0.0)
    assert not v.blocked and v.would_block is Rule.CALLER_BLOCK
