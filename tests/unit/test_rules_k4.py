"""rules/k4.py: both triggers of 47 CFR 64.1200(k)(4), the FCC-notice guard,
the history helpers and the end-of-day (US Eastern) deadline boundary."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import k4
from rules.engine import decide
from rules.facts import CallFacts
from rules.notices import (
    derive_fields,
    fmt_day_end,
    new_event,
    new_notice,
    notice_from_record,
    notice_to_record,
    voided,
    when_et,
)
from rules.snapshot import Notice, Snapshot
from rules.verdict import Rule

HOUR = 3600.0
DAY = 24 * HOUR
# The seed letter: dated 2021-10-21, report due "November 5, 2021".
SEED = new_notice("k4-pz", "pz", "k4", date(2021, 10, 21), report_due_stated=date(2021, 11, 5))


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_seed_letter_deadlines_to_the_day() -> None:
    # 48 hours from the end of the letter's (Eastern) day; the report runs to
    # the end of November 5, Eastern (EDT: DST ended 2021-11-07).
    assert SEED.mitigation_due == ts("2021-10-24T04:00:00Z")
    assert SEED.report_due == ts("2021-11-06T04:00:00Z")
    assert fmt_day_end(SEED.report_due) == "2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)"


def test_report_boundary_end_of_day_eastern() -> None:
    # Mitigated in time: only the report trigger is left. The old code made
    # the report late from 2021-11-05T04:00:00Z, the *start* of the stated day.
    n = replace(SEED, mitigated=ts("2021-10-22T15:00:00Z"))
    assert k4.k4_state(n, ts("2021-11-05T12:00:00Z")).state == k4.PENDING
    assert k4.k4_state(n, ts("2021-11-06T03:59:59Z")).state == k4.PENDING
    assert k4.k4_state(n, ts("2021-11-06T04:00:00Z")).state == k4.PENDING_FCC
    # The brief's EST instants (04:59:58Z, 05:00:00Z) are both after the end
    # of November 5 in EDT: late either way.
    assert k4.k4_state(n, ts("2021-11-06T04:59:58Z")).state == k4.PENDING_FCC
    # With the FCC notified right after the end of the day: blocks from then.
    n = replace(n, fcc_notified=ts("2021-11-06T04:00:00Z"))
    snap = Snapshot.empty()
    snap.set_notice(n)
    f = CallFacts(caller="+13015551234", callee="+12025551000", provider="pz")
    before = decide(snap, f, ts("2021-11-06T03:59:58Z"))
    assert not before.blocked and before.would_block is Rule.NOTICE_K4
    assert "2021-11-06T04:00:00Z" in before.reason  # from when it would block
    assert decide(snap, f, ts("2021-11-06T04:00:00Z")).blocked


def test_report_boundary_in_standard_time() -> None:
    # A date in EST: "December 6, 2021" ends 2021-12-07T04:59:59Z.
    n = new_notice("x", "pz", "k4", date(2021, 11, 22), report_due_stated=date(2021, 12, 6))
    n = replace(n, mitigated=n.issued + HOUR)
    assert k4.k4_state(n, ts("2021-12-07T04:59:58Z")).state == k4.PENDING
    assert k4.k4_state(n, ts("2021-12-07T05:00:00Z")).state == k4.PENDING_FCC


def test_trigger_a_window_lapsed() -> None:
    assert k4.k4_state(SEED, SEED.mitigation_due - 1).state == k4.PENDING
    st = k4.k4_state(SEED, SEED.mitigation_due)
    assert st.state == k4.PENDING_FCC and st.basis == (("window", SEED.mitigation_due),)
    # Mitigated inside the window: no trigger (a); the report is still due.
    early = replace(SEED, mitigated=SEED.mitigation_due - HOUR)
    assert k4.k4_state(early, SEED.mitigation_due + DAY).state == k4.PENDING
    # Mitigated late: trigger (a) stands (not a cure).
    late = replace(SEED, mitigated=SEED.mitigation_due + HOUR, fcc_notified=SEED.mitigation_due)
    assert k4.k4_state(late, SEED.mitigation_due + DAY).state == k4.BLOCK
    blocks, why = k4.k4_check(late, "pz", "", False, SEED.mitigation_due + DAY)
    assert blocks and "after the 48-hour window" in why and "not a cure" in why


def test_trigger_b_ineffective_determination() -> None:
    # Mitigated and reported in time, then the operator determines the
    # measures ineffective: trigger (b), blocks once the FCC is notified after.
    ok = replace(SEED, mitigated=SEED.issued + HOUR, reported=SEED.issued + DAY)
    assert k4.k4_state(ok, SEED.report_due + DAY).state == k4.CLEAR
    assert k4.k4_verdict(ok, "pz", "", False, SEED.report_due + DAY) is None
    det = SEED.report_due + 10 * DAY
    bad = replace(ok, ineffective=det)
    assert k4.k4_state(bad, det - 1).state == k4.CLEAR
    st = k4.k4_state(bad, det)
    assert st.state == k4.PENDING_FCC and st.basis == (("ineffective", det),)
    assert k4.fcc_notice_error(bad, det - 1) is not None
    assert k4.fcc_notice_error(bad, det + HOUR) is None
    v = k4.k4_verdict(replace(bad, fcc_notified=det + HOUR), "pz", "PZ", False, det + HOUR)
    assert v is not None and v.blocked and v.detail == "k4-pz"
    assert "fail to implement effective measures" in v.reason
    # The operator clears it: an effective determination after the trigger.
    cleared = replace(bad, fcc_notified=det + HOUR, effective=det + DAY)
    assert k4.k4_state(cleared, det + 2 * DAY).state == k4.CLEAR
    assert k4.k4_state(cleared, det + 2 * HOUR).state == k4.BLOCK  # before it was made


def test_fcc_notice_guard_refuses_the_letter_day() -> None:
    # Dated the day the letter was issued: before any trigger.
    err = k4.fcc_notice_error(SEED, when_et("2021-10-21", "end"))
    assert err is not None and "precedes any determination" in err
    assert "2021-10-24T04:00:00Z" in err  # says when the window ends
    # The window ends at the end of 2021-10-23 ET: that day is still too early.
    assert k4.fcc_notice_error(SEED, when_et("2021-10-23", "end")) is not None
    assert k4.fcc_notice_error(SEED, when_et("2021-10-24", "end")) is None
    n2 = Notice("n", "pz", "n2", 0.0, 0.0, 0.0)
    assert "k4" in (k4.fcc_notice_error(n2, 10.0) or "")


def test_when_et_reads_bare_dates_in_eastern_time() -> None:
    assert when_et("2021-11-05") == ts("2021-11-05T04:00:00Z")
    assert when_et("2021-11-05", "end") == ts("2021-11-06T03:59:59Z")
    assert when_et("November 5, 2021", "end") == ts("2021-11-06T03:59:59Z")
    assert when_et("2021-12-06", "end") == ts("2021-12-07T04:59:59Z")
    assert when_et("2021-11-06T04:59:58Z", "end") == ts("2021-11-06T04:59:58Z")
    with pytest.raises(ValueError):
        when_et("tomorrow")


def test_history_is_append_only_and_derives_fields() -> None:
    t0 = SEED.issued
    ev = [
        new_event(1, "issued", t0, t0, "ops"),
        new_event(2, "mitigated", t0 + 50 * HOUR, t0 + 51 * HOUR, "ops"),
        new_event(3, "mitigated", t0 + 10 * HOUR, t0 + 52 * HOUR, "ops", summary="backdated"),
        new_event(4, "fcc_notified", t0 + 60 * HOUR, t0 + 60 * HOUR, "ana", summary="no mitig."),
    ]
    f = derive_fields(ev)
    assert f["mitigated"] == "2021-10-21T14:00:00Z"  # the earliest counts
    assert f["fcc_notified"] and f["fcc_notified_summary"] == "no mitig."
    # A correction voids #3: the entry stays, the fields move back.
    ev.append(
        new_event(5, "correction", t0 + DAY * 5, t0 + DAY * 5, "lead", summary="typo", voids=3)
    )
    assert voided(ev) == {3}
    f = derive_fields(ev)
    assert f["mitigated"] == "2021-10-23T06:00:00Z"
    assert len(ev) == 5 and ev[2]["summary"] == "backdated"
    # The derived fields feed the snapshot notice.
    n = notice_from_record({**notice_to_record(SEED), **f}, "k4-pz")
    assert n.mitigated == ts("2021-10-23T06:00:00Z") and n.fcc_notified is not None
    for bad in (
        lambda: new_event(6, "fcc_notified", t0, t0, "x"),  # no summary
        lambda: new_event(6, "determination", t0, t0, "x", summary="s", value="maybe"),
        lambda: new_event(6, "correction", t0, t0, "x", summary="s"),
        lambda: new_event(6, "erased", t0, t0, "x"),
    ):
        with pytest.raises(ValueError):
            bad()


TIMES = st.sampled_from([None, 0.0, 1.0, 2 * DAY, 2 * DAY + 1, 15 * DAY, 15 * DAY - 1, 20 * DAY])


@settings(max_examples=300, deadline=None)
@given(
    m=TIMES, r=TIMES, i=TIMES, e=TIMES, f=TIMES,
    now=st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2 * DAY, 2 * DAY + 0.5, 15 * DAY, 30 * DAY]),
)  # fmt: skip
def test_cached_schedule_agrees_with_the_state(
    m: float | None, r: float | None, i: float | None, e: float | None, f: float | None, now: float
) -> None:
    n = Notice("k", "pz", "k4", 0.0, 2 * DAY, 15 * DAY, mitigated=m, reported=r,
               fcc_notified=f, ineffective=i, effective=e)  # fmt: skip
    state = k4.k4_state(n, now).state
    v = k4.k4_verdict(n, "pz", "", False, now)
    if state == k4.CLEAR:
        assert v is None
    else:
        assert v is not None and v.detail == "k" and (v.blocked == (state == k4.BLOCK))
        assert v.blocked or v.would_block is Rule.NOTICE_K4
    assert k4.k4_check(n, "pz", "", False, now)[0] == (state == k4.BLOCK)


def test_a_second_ineffective_determination_keeps_the_block() -> None:
    """Mitigated and reported in time, then measures determined ineffective
    (trigger b) and the FCC notified: the block is in force. A second
    ineffective determination later (more evidence) is not a new trigger
    that needs a new FCC notice: the trigger happened at the first one, so
    the block stays. Only an effective determination between them would
    make the later one a new trigger."""
    t0 = SEED.issued
    ev = [
        new_event(1, "issued", t0, t0, "ops"),
        new_event(2, "mitigated", t0 + HOUR, t0 + HOUR, "ops"),
        new_event(3, "reported", t0 + 3 * DAY, t0 + 3 * DAY, "ops"),
        new_event(4, "determination", t0 + 20 * DAY, t0 + 20 * DAY, "lead",
                  summary="still carrying SSA imposter traffic", value="ineffective"),
        new_event(5, "fcc_notified", t0 + 21 * DAY, t0 + 21 * DAY, "lead", summary="basis"),
        new_event(6, "determination", t0 + 30 * DAY, t0 + 30 * DAY, "lead",
                  summary="new traceback, same customers", value="ineffective"),
    ]  # fmt: skip
    n = notice_from_record({**notice_to_record(SEED), **derive_fields(ev)}, "k4-pz")
    assert k4.k4_state(n, t0 + 25 * DAY).state == k4.BLOCK
    assert k4.k4_state(n, t0 + 31 * DAY).state == k4.BLOCK
    # after an effective determination, a new ineffective one is a new trigger
    ev += [
        new_event(7, "determination", t0 + 40 * DAY, t0 + 40 * DAY, "lead",
                  summary="measures now effective", value="effective"),
        new_event(8, "determination", t0 + 50 * DAY, t0 + 50 * DAY, "lead",
                  summary="relapsed", value="ineffective"),
        new_event(9, "determination", t0 + 55 * DAY, t0 + 55 * DAY, "lead",
                  summary="relapsed, confirmed", value="ineffective"),
    ]  # fmt: skip
    n = notice_from_record({**notice_to_record(SEED), **derive_fields(ev)}, "k4-pz")
    assert k4.k4_state(n, t0 + 45 * DAY).state == k4.CLEAR
    st = k4.k4_state(n, t0 + 56 * DAY)
    assert st.state == k4.PENDING_FCC and st.basis == (("ineffective", t0 + 50 * DAY),)
