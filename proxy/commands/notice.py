"""`sipscreen notice`: FCC notices (47 CFR 64.1200(k)(4), (n)(2)).

How this works: a notice is the hash `notice:<id>` plus its append-only
history `notice:<id>:history` (notice_history.py). Every change appends one
entry and rewrites the hash fields derived from the whole history in one
MULTI/EXEC (notice_history.append_event); a correction voids an earlier
entry, it never deletes it. `notice add` prints the deadlines (48 hours to
mitigate, the letter's report date); `notice show` and `list` the state, k4
included (rules.k4).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxy.commands.common import (
    AdminError,
    Client,
    Clock,
    Subparsers,
    iso,
    read_file,
    recorded_by,
    when_arg,
    wrap,
)
from proxy.commands.notice_history import (
    append_event,
    history_key,
    load_notice,
    notice_history,
    notices_of,
)
from rules import k4 as rk4
from rules import notices as rnotices
from rules.snapshot import Notice, parse_campaigns


def _print_entry(e: Mapping[str, Any], gone: set[int]) -> None:
    at = rnotices.iso_to_epoch(str(e["at"]))
    extra = ""
    if e.get("value"):
        extra += f" {e['value']}"
    if e.get("voids") is not None:
        extra += f" voids #{e['voids']}"
    if e.get("summary"):
        extra += f": {e['summary']}"
    void = " [VOIDED]" if int(e["seq"]) in gone else ""
    print(
        f"  #{e['seq']} {e['event']}{extra}{void}\n"
        f"      effective {rnotices.fmt_et_utc(at)}; recorded {e['recorded']} by {e['by']}"
    )


def _letter_dates(args: argparse.Namespace) -> tuple[dt.date | dt.datetime, dt.date | None, str]:
    """The letter's date, the report date it states (None: not stated) and
    the letter's file name: read from --letter, --issued and --report-due
    overriding it."""
    letter_name = ""
    issued: dt.date | dt.datetime
    stated: dt.date | None = None
    if args.letter:
        text = read_file(args.letter)
        letter_name = Path(args.letter).name
        try:
            facts = rnotices.extract_letter_facts(text)
        except ValueError as exc:
            if not args.issued:
                raise AdminError(f"{args.letter}: {exc}") from None
        else:
            issued, stated = facts.issued, facts.report_due_stated
    if args.issued:
        try:
            issued = rnotices.parse_when(args.issued)
        except ValueError:
            raise AdminError(f"--issued: not a date: {args.issued!r}") from None
    elif not args.letter:
        raise AdminError("--issued DATE or --letter FILE is required")
    if args.report_due:
        try:
            due = rnotices.parse_when(args.report_due)
        except ValueError:
            raise AdminError(f"--report-due: not a date: {args.report_due!r}") from None
        if isinstance(due, dt.datetime):
            raise AdminError("--report-due: the date the letter states (YYYY-MM-DD), not a time")
        stated = due
    return issued, stated, letter_name


async def _notice_add(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    issued, stated, letter_name = _letter_dates(args)
    day = issued.strftime("%Y%m%d")
    nid = args.id or f"{args.kind}-{args.provider}-{day}"
    campaigns = [c for c in (args.campaign or [])]
    for c in campaigns:
        try:
            parse_campaigns(c)
        except ValueError as exc:
            raise AdminError(f"--campaign: {exc}") from None
    key = prefix + f"notice:{nid}"
    if await r.exists(key):
        raise AdminError(f"notice {nid}: already recorded (see `notice show {nid}`)")
    n = rnotices.new_notice(
        nid, args.provider, args.kind, issued, campaigns, letter_name, report_due_stated=stated
    )
    t = now()
    entry = rnotices.new_event(1, "issued", n.issued, t, recorded_by(args), summary=letter_name)
    async with r.pipeline(transaction=True) as p:
        p.hset(key, mapping=rnotices.notice_to_record(n))
        p.rpush(history_key(prefix, nid), json.dumps(entry, sort_keys=True))
        await p.execute()
    print(f"notice {nid}: {args.kind} for provider {args.provider}, issued {iso(n.issued)}")
    print(f"  issued         {rnotices.fmt_et_utc(n.issued)}")
    # 47 CFR 64.1200(k)(4): 48 hours to mitigate; the letter: 14 days to report.
    window = rnotices.fmt_et_utc(n.mitigation_due)
    print(f"  mitigation due {iso(n.mitigation_due)}  (48 hours: {window})")
    report_day = dt.datetime.fromtimestamp(n.report_due - 1, dt.UTC)
    print(
        f"  report due     {rnotices.eastern_date(report_day).isoformat()} end of day ET: "
        f"{rnotices.fmt_day_end(n.report_due)}"
    )
    if args.kind == "k4" and stated is None:
        print(
            "sipscreen: warning: the report date was counted per 47 CFR 1.4 (letter date + 14 "
            "days); give the date the letter states with --report-due",
            file=sys.stderr,
        )
    return 0


def _check_at(n: Notice, at: float, t: float, what: str) -> None:
    if at < n.issued:
        raise AdminError(
            f"{what}: {rnotices.fmt_et_utc(at)} is before notice {n.id} was issued "
            f"({rnotices.fmt_et_utc(n.issued)})"
        )
    if at > t + 60:
        raise AdminError(f"{what}: {rnotices.fmt_et_utc(at)} is in the future")


async def _notice_respond(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    n = await load_notice(r, prefix, args.id)
    event, text = ("mitigated", args.mitigated) if args.mitigated else ("reported", args.reported)
    # A bare date is the start of that ET day: the provider gets the benefit of
    # the doubt (a response on the deadline's day counts as in time).
    at = when_arg(text, f"--{event}")
    t = now()
    _check_at(n, at, t, f"--{event}")
    e = await append_event(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, event, at, t, recorded_by(args), summary=args.summary or ""
        ),
        t,
    )  # fmt: skip
    due = n.mitigation_due if event == "mitigated" else n.report_due
    late = "" if at < due else f" LATE (due before {iso(due)}): kept, not a cure"
    print(f"notice {args.id}: #{e['seq']} {event}={iso(at)}{late}")
    return 0


async def _notice_determine(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    n = await load_notice(r, prefix, args.id)
    if n.kind != "k4":
        raise AdminError(f"notice {args.id} is {n.kind}: determinations apply to k4 notices")
    t = now()
    at = when_arg(args.date, "--date") if args.date else t
    _check_at(n, at, t, "--date")
    value = "ineffective" if args.ineffective else "effective"
    e = await append_event(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "determination", at, t, recorded_by(args), summary=args.summary, value=value
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} determination {value} at {iso(at)}")
    return 0


async def _notice_fcc(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    n = await load_notice(r, prefix, args.id)
    # A bare date is the last second of that ET day: blocking never starts
    # before the notification was sent.
    at = when_arg(args.date, "--date", "end")
    t = now()
    _check_at(n, at, t, "--date")
    err = rk4.fcc_notice_error(n, at)
    if err is not None:
        raise AdminError(err)
    e = await append_event(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "fcc_notified", at, t, recorded_by(args), summary=args.summary
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} fcc_notified={iso(at)} ({rnotices.fmt_et(at)})")
    return 0


async def _notice_correct(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    await load_notice(r, prefix, args.id)
    events = await notice_history(r, prefix, args.id)
    target = next((e for e in events if int(e["seq"]) == args.entry), None)
    if target is None:
        raise AdminError(f"notice {args.id}: no history entry #{args.entry}")
    if target["event"] in ("issued", "correction"):
        raise AdminError(
            f"notice {args.id}: entry #{args.entry} ({target['event']}) cannot be voided"
        )
    if args.entry in rnotices.voided(events):
        raise AdminError(f"notice {args.id}: entry #{args.entry} is already voided")
    t = now()
    e = await append_event(
        r, prefix, args.id,
        lambda seq: rnotices.new_event(
            seq, "correction", t, t, recorded_by(args), summary=args.summary, voids=args.entry
        ),
        t,
    )  # fmt: skip
    print(f"notice {args.id}: #{e['seq']} correction voids #{args.entry}")
    return 0


async def _notice_show(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    n = await load_notice(r, prefix, args.id)
    h = await r.hgetall(prefix + f"notice:{args.id}")
    t = when_arg(args.at, "--at") if args.at else now()
    events = await notice_history(r, prefix, args.id)
    if args.at:  # the state as the history stood then (entries dated later left out)
        n = rnotices.notice_as_of(n, events, t)
    print(f"notice {n.id}: {n.kind} ({rnotices.KINDS[n.kind]}) against provider {n.provider}")
    if n.letter:
        print(f"  letter         {n.letter}")
    print(f"  issued         {rnotices.fmt_et_utc(n.issued)}")
    print(f"  mitigation due {rnotices.fmt_et_utc(n.mitigation_due)} (48 hours; late from then on)")
    print(f"  report due     end of day ET: {rnotices.fmt_day_end(n.report_due)}")
    for name in ("mitigated", "reported", "ineffective", "effective", "fcc_notified"):
        v = getattr(n, name)
        if v is not None:
            print(f"  {name:<14} {rnotices.fmt_et_utc(v)}")
    if h.get("fcc_notified_summary"):
        print(f"  fcc summary    {h['fcc_notified_summary']}")
    print("history:" if events else "history: none recorded (notice written before histories)")
    gone = rnotices.voided(events)
    for e in events:
        _print_entry(e, gone)
    if n.kind == "k4":
        prov = await r.hgetall(prefix + f"provider:{n.provider}")
        st = rk4.k4_state(n, t)
        _, why = rk4.k4_check(
            n, n.provider, prov.get("name", ""), prov.get("monitor_only") == "1", t
        )
        print(f"k4 state at {rnotices.fmt_et_utc(t)}: {st.state}")
        print(f"  {why}")
    return 0


async def _notice_list(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    t = now()
    for n in await notices_of(r, prefix, args.provider):
        resp = [
            f"{k}={iso(v)}"
            for k, v in (
                ("mitigated", n.mitigated),
                ("reported", n.reported),
                ("ineffective", n.ineffective),
                ("effective", n.effective),
                ("fcc_notified", n.fcc_notified),
            )
            if v is not None
        ]
        state = f"\tk4 {rk4.k4_state(n, t).state}" if n.kind == "k4" else ""
        print(
            f"{n.id}\t{n.kind}\t{n.provider}\tissued {iso(n.issued)}\t"
            f"mitigation due {iso(n.mitigation_due)}\treport due {iso(n.report_due)}\t"
            + (" ".join(resp) or "no response recorded")
            + state
        )
    return 0


def register(sub: Subparsers) -> None:
    notice = sub.add_parser("notice", help="FCC notices").add_subparsers(
        dest="notice_command", required=True
    )
    p = notice.add_parser("add", help="record a notice and print its deadlines")
    p.add_argument("--provider", required=True, help="provider id the notice names")
    p.add_argument(
        "--kind",
        choices=("k4", "n2"),
        required=True,
        help="k4: 47 CFR 64.1200(k)(4) notice; n2: (n)(2) notify-and-direct",
    )
    p.add_argument("--issued", help="letter date (a bare date is a US Eastern day) or instant")
    p.add_argument("--letter", help="the letter as text: its date and facts are read from it")
    p.add_argument("--report-due", help="the report date the letter states (YYYY-MM-DD)")
    p.add_argument(
        "--campaign",
        action="append",
        help="n2: a campaign caller ID or +prefix (repeatable)",
    )
    p.add_argument("--id", help="notice id (default KIND-PROVIDER-YYYYMMDD)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_notice_add))
    p = notice.add_parser("respond", help="record the provider's mitigation or report")
    p.add_argument("id", help="notice id (see notice list)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--mitigated", help="when (a bare date: 00:00 ET that day)")
    g.add_argument("--reported", help="when (a bare date: 00:00 ET that day)")
    p.add_argument("--summary", help="what the provider said or did")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_notice_respond))
    p = notice.add_parser(
        "determine", help="record the operator's determination on the provider's measures"
    )
    p.add_argument("id", help="notice id (see notice list)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ineffective", action="store_true", help="measures not effective: may block")
    g.add_argument("--effective", action="store_true", help="measures effective: stop blocking")
    p.add_argument("--summary", required=True, help="the basis of the determination")
    p.add_argument("--date", help="when (default now; a bare date: 00:00 ET that day)")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_notice_determine))
    p = notice.add_parser("fcc-notified", help="record that the FCC was notified")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--date", required=True, help="when (a bare date: 23:59:59 ET that day)")
    p.add_argument("--summary", required=True, help="the brief summary of the basis sent")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_notice_fcc))
    p = notice.add_parser("correct", help="void an earlier history entry (kept, marked)")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--entry", type=int, required=True, help="the entry's #")
    p.add_argument("--summary", required=True, help="why")
    p.add_argument("--by", help="who records it (default: the OS user)")
    p.set_defaults(handler=wrap(_notice_correct))
    p = notice.add_parser("show", help="a notice, its deadlines, history and k4 state")
    p.add_argument("id", help="notice id (see notice list)")
    p.add_argument("--at", help="state at this time (default now)")
    p.set_defaults(handler=wrap(_notice_show))
    p = notice.add_parser("list", help="list notices with their deadlines and state")
    p.add_argument("--provider", help="only this provider's notices")
    p.set_defaults(handler=wrap(_notice_list))
