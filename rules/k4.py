"""47 CFR 64.1200(k)(4): when a notified bad-actor provider may be blocked.

How this works. The rule (as adopted in FCC 20-96, 85 FR 56530, and quoted
by the seed letter's footnote 7): a provider may block calls from an
originating or intermediate provider that, when notified by the Commission,
(a) "fails to effectively mitigate" the identified illegal traffic within 48
hours, **or** (b) "fails to implement effective measures" to prevent new and
renewing customers from using its network to originate illegal calls; before
blocking, the blocking provider notifies the Commission "with a brief summary
of the basis for its determination".

:func:`k4_state` turns a :class:`~rules.snapshot.Notice` (its deadlines and
the fields derived from its history) and ``now`` into one of four states:

* ``block``: a trigger has happened and the FCC was notified at or after it;
* ``pending_fcc``: a trigger has happened, the FCC notice is missing (or the
  one recorded predates the trigger it would have to report);
* ``pending``: no trigger yet, one is still possible (the 48-hour window or
  the report date has not passed and nothing was recorded in time);
* ``clear``: mitigated and reported in time, or the operator determined the
  provider's measures effective after the last trigger.

The triggers, each with the instant it happened:

* ``window`` (a): the 48-hour window ended (``mitigation_due``) with no
  mitigation recorded *within* it. A mitigation recorded after the window
  does not cure it: the rule's condition is the failure "within 48 hours",
  and the letter says "Failure to act within the deadlines authorizes U.S.-
  based voice service providers to block ALL call traffic ... permanently".
* ``report`` (b): the report date passed (``report_due``, the end of the
  stated day, Eastern Time) with no report recorded before it. The letter
  (item 5): "Failure to provide this information within 14 days shall be
  equivalent to having failed to put effective measures in place." A late
  report does not cure it either.
* ``ineffective`` (b): the operator recorded its own determination that the
  provider's measures are not effective (``notice determine --ineffective``).

Blocking is permitted, not required: to stop, the operator records a
determination that the measures are effective (``notice determine
--effective``); it clears every trigger that happened at or before it (a
later trigger, e.g. a new ineffective determination, needs a new FCC
notice). Pure: no I/O, no clock (``now`` is passed in). The state only
changes at the notice's own instants, so :func:`k4_verdict` computes the
verdicts once per notice content (a cached breakpoint schedule) and a call
costs one bisect.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from rules.notices import epoch_to_iso, fmt_day_end, fmt_et_utc
from rules.snapshot import Notice
from rules.verdict import Rule, Verdict

__all__ = [
    "BLOCK",
    "CLEAR",
    "PENDING",
    "PENDING_FCC",
    "K4State",
    "fcc_notice_error",
    "k4_check",
    "k4_state",
    "k4_verdict",
    "triggers_at",
]

BLOCK = "block"
PENDING_FCC = "pending_fcc"
PENDING = "pending"
CLEAR = "clear"

WINDOW = "window"  # (a) 48-hour mitigation window lapsed
REPORT = "report"  # (b) report date passed, deemed no effective measures
INEFFECTIVE = "ineffective"  # (b) operator's determination


@dataclass(frozen=True, slots=True)
class K4State:
    state: str
    basis: tuple[tuple[str, float], ...] = ()  # triggers in force, earliest first
    upcoming: tuple[tuple[str, float], ...] = ()  # triggers still possible, earliest first
    fcc_notified: float | None = None  # the FCC notice recorded (valid or not)


def _possible(n: Notice, now: float) -> list[tuple[str, float]]:
    """Every trigger with its instant, whether or not it has happened yet."""
    out: list[tuple[str, float]] = []
    # (a) a mitigation counts if it took effect inside the window and by now.
    m = n.mitigated
    if not (m is not None and m < n.mitigation_due and m <= now):
        out.append((WINDOW, n.mitigation_due))
    # (b) the letter's report date: a report counts if made before it and by now.
    r = n.reported
    if not (r is not None and r < n.report_due and r <= now):
        out.append((REPORT, n.report_due))
    if n.ineffective is not None:
        out.append((INEFFECTIVE, n.ineffective))
    return out


def triggers_at(n: Notice, now: float) -> tuple[tuple[str, float], ...]:
    """The triggers in force at ``now``: happened by ``now`` and after the
    operator's last effective-measures determination (if any, by ``now``)."""
    cleared = n.effective if n.effective is not None and n.effective <= now else None
    return tuple(
        sorted(
            ((k, t) for k, t in _possible(n, now) if t <= now and (cleared is None or t > cleared)),
            key=lambda kt: kt[1],
        )
    )


def k4_state(n: Notice, now: float) -> K4State:
    basis = triggers_at(n, now)
    if basis:
        f = n.fcc_notified
        # 47 CFR 64.1200(k)(4): the Commission is notified of the determination
        # before blocking: a notice dated before the trigger reports nothing.
        if f is not None and basis[0][1] <= f <= now:
            return K4State(BLOCK, basis, (), f)
        return K4State(PENDING_FCC, basis, (), f)
    upcoming = tuple(
        sorted(
            ((k, t) for k, t in _possible(n, now) if t > now and k != INEFFECTIVE),
            key=lambda kt: kt[1],
        )
    )
    if upcoming:
        return K4State(PENDING, (), upcoming, n.fcc_notified)
    return K4State(CLEAR, (), (), n.fcc_notified)


def _who(provider_id: str, name: str) -> str:
    return f"provider '{provider_id}'" + (f" ({name})" if name and name != provider_id else "")


def _trigger_text(kind: str, t: float) -> str:
    if kind == WINDOW:
        return (
            f"did not effectively mitigate within 48 hours (window ended {fmt_et_utc(t)} "
            "with no mitigation recorded in it)"
        )
    if kind == REPORT:
        return (
            f"sent no report of its measures by the letter's date (end of day ET: "
            f"{fmt_day_end(t)}), which the letter deems a failure to implement effective measures"
        )
    return f"was determined on {fmt_et_utc(t)} to fail to implement effective measures"


def _missing_text(kind: str, t: float) -> str:
    if kind == WINDOW:
        return f"from {epoch_to_iso(t)} if no mitigation is recorded within the 48-hour window"
    return (
        f"from {epoch_to_iso(t)} if no report is recorded by the letter's date "
        f"(end of day ET: {fmt_day_end(t)})"
    )


@lru_cache(maxsize=4096)
def _verdict(
    notice_id: str,
    provider_id: str,
    name: str,
    st: K4State,
    monitor_only: bool,
) -> Verdict:
    who = _who(provider_id, name)
    cite = "47 CFR 64.1200(k)(4)"
    if st.state == BLOCK:
        assert st.fcc_notified is not None
        reason = (
            f"{who} was notified of illegal robocall traffic (notice {notice_id}) and "
            + "; and ".join(_trigger_text(k, t) for k, t in st.basis)
            + f"; the FCC was notified {epoch_to_iso(st.fcc_notified)}; {cite} permits "
            "blocking all its traffic"
        )
        if monitor_only:
            return Verdict(
                False,
                Rule.DEFAULT,
                "monitor only, allowed: " + reason,
                detail=notice_id,
                would_block=Rule.NOTICE_K4,
            )
        return Verdict(True, Rule.NOTICE_K4, reason, detail=notice_id)
    if st.state == PENDING_FCC:
        since = st.basis[0][1]
        late = ""
        if st.fcc_notified is not None and st.fcc_notified < since:
            late = (
                f" (the FCC notice recorded {epoch_to_iso(st.fcc_notified)} predates the "
                "determination it must report)"
            )
        elif st.fcc_notified is not None:
            late = f" (the FCC notice recorded is dated {epoch_to_iso(st.fcc_notified)})"
        reason = (
            f"allowed: notice {notice_id} against {who} would block: it "
            + "; and ".join(_trigger_text(k, t) for k, t in st.basis)
            + f"; missing: the FCC notification{late} ({cite} requires notice to the "
            "Commission with a brief summary of the basis before blocking); would block "
            "from the moment the FCC notification is recorded"
        )
    else:  # PENDING
        reason = (
            f"allowed: notice {notice_id} against {who} would block "
            + ", or ".join(_missing_text(k, t) for k, t in st.upcoming)
            + f"; and only once the FCC has been notified ({cite} requires notice before blocking)"
        )
    return Verdict(False, Rule.DEFAULT, reason, detail=notice_id, would_block=Rule.NOTICE_K4)


def k4_verdict(
    n: Notice, provider_id: str, name: str, monitor_only: bool, now: float
) -> Verdict | None:
    """The verdict of one k4 notice at ``now``: blocking, would-block, or None
    (nothing to say: the notice is clear).

    Hot path (every INVITE from a notified provider): the state only changes
    at the notice's own instants (deadlines, responses, determinations, FCC
    notice), so the verdicts are computed once per notice content
    (``_schedule``, cached) and a call costs one bisect."""
    times, pieces = _schedule(
        n.id, n.issued, n.mitigation_due, n.report_due, n.mitigated, n.reported,
        n.ineffective, n.effective, n.fcc_notified, provider_id, name, monitor_only,
    )  # fmt: skip
    return pieces[bisect_right(times, now)]


@lru_cache(maxsize=4096)
def _schedule(
    notice_id: str,
    issued: float,
    mitigation_due: float,
    report_due: float,
    mitigated: float | None,
    reported: float | None,
    ineffective: float | None,
    effective: float | None,
    fcc_notified: float | None,
    provider_id: str,
    name: str,
    monitor_only: bool,
) -> tuple[tuple[float, ...], tuple[Verdict | None, ...]]:
    """(breakpoints, verdicts): ``verdicts[bisect_right(breakpoints, now)]``
    is the verdict at ``now``. Every comparison in :func:`k4_state` is
    ``instant <= now``, so the state is constant on ``[b[i], b[i+1])``."""
    n = Notice(
        notice_id, provider_id, "k4", issued, mitigation_due, report_due,
        mitigated=mitigated, reported=reported, fcc_notified=fcc_notified,
        ineffective=ineffective, effective=effective,
    )  # fmt: skip
    times = tuple(
        sorted(
            {t for t in (mitigation_due, report_due, mitigated, reported, ineffective,
                         effective, fcc_notified) if t is not None}
        )
    )  # fmt: skip

    def at(now: float) -> Verdict | None:
        st = k4_state(n, now)
        return (
            None if st.state == CLEAR else _verdict(notice_id, provider_id, name, st, monitor_only)
        )

    return times, (at(times[0] - 1.0), *(at(t) for t in times))


def k4_check(
    n: Notice, provider_id: str, name: str, monitor_only: bool, now: float
) -> tuple[bool, str]:
    """(blocks, why) for ``explain``: the verdict's reason, plus what was
    recorded late (kept, but not a cure) or what cleared the notice."""
    st = k4_state(n, now)
    notes: list[str] = []
    if n.mitigated is not None and n.mitigated <= now and n.mitigated >= n.mitigation_due:
        notes.append(
            f"mitigation recorded {epoch_to_iso(n.mitigated)}, after the 48-hour window: "
            "kept in the history, not a cure"
        )
    if n.reported is not None and n.reported <= now and n.reported >= n.report_due:
        notes.append(
            f"report recorded {epoch_to_iso(n.reported)}, after the letter's date: "
            "kept in the history, not a cure"
        )
    if st.state == CLEAR:
        if n.effective is not None and n.effective <= now:
            why = (
                f"notice {n.id}: the operator determined on {epoch_to_iso(n.effective)} that "
                f"{_who(provider_id, name)}'s measures are effective; not blocking"
            )
        else:
            done = []
            if n.mitigated is not None:
                done.append(f"mitigated {epoch_to_iso(n.mitigated)} (within 48 hours)")
            if n.reported is not None:
                done.append(f"reported {epoch_to_iso(n.reported)} (by the letter's date)")
            why = f"notice {n.id}: " + ", ".join(done) + "; not blocking"
        return False, why + ("; " + "; ".join(notes) if notes else "")
    v = _verdict(n.id, provider_id, name, st, monitor_only)
    why = v.reason
    if notes:
        why += "; " + "; ".join(notes)
        if st.state in (BLOCK, PENDING_FCC):
            why += (
                " (record `notice determine ID --effective` to stop blocking: blocking is "
                "permitted, not required)"
            )
    # blocks only when the verdict blocks: a monitor-only provider's BLOCK
    # state is a would-block, as decide() says (its explain must agree).
    return v.blocked, why


def fcc_notice_error(n: Notice, at: float) -> str | None:
    """Why an FCC notice dated ``at`` cannot be recorded, or None.

    47 CFR 64.1200(k)(4): the blocking provider notifies the Commission of its
    determination, with a brief summary of its basis, before blocking; a
    notice dated before any trigger had happened reports no determination
    (e.g. one dated the day the letter was issued)."""
    if n.kind != "k4":
        return f"notice {n.id} is {n.kind}: an FCC notification applies to k4 notices"
    if triggers_at(n, at):
        return None
    st = k4_state(n, at)
    when = ", or ".join(
        f"the 48-hour mitigation window ends {fmt_et_utc(t)}"
        if k == WINDOW
        else f"the report date ends {fmt_day_end(t)}"
        for k, t in st.upcoming
    )
    return (
        f"notice {n.id}: an FCC notification dated {fmt_et_utc(at)} precedes any "
        "determination it could report (47 CFR 64.1200(k)(4): notify the Commission of "
        "the basis of a determination before blocking): "
        + (when if when else "no trigger is in force at that date")
        + "; or record `notice determine "
        + n.id
        + " --ineffective --summary TEXT` first"
    )
