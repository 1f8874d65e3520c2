"""proxy/screen.py on real data: a SnapshotStore loaded from the real Redis
(per-test prefix), real parsed requests, a real RecordWriter. Checks the
facts it builds (PAI over From, Privacy, trunk map and trusted header), the
answer per answer class, --monitor, the no-snapshot policy, the metric
children and the decision records."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sipscreen_testlib import loaded_store, screener_config

from proxy.metrics import Metrics
from proxy.records import RecordWriter
from proxy.screen import DECISION_LOGGER, Screener, caller_from_request
from proxy.sip.core import Answer
from proxy.sip.message import parse
from proxy.store.snapshot_store import SnapshotStore
from rules.verdict import Rule

BLOCKED = "+12127369999"
SRC = ("10.1.2.3", 5060)


def _invite(caller_uri: str, *, pai: str | None = None, extra: str = "") -> Any:
    hdrs = (
        "INVITE sip:+13125557000@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKscreen1\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <{caller_uri}>;tag=1\r\n"
        "To: <sip:+13125557000@127.0.0.1>\r\n"
        "Call-ID: screen-test-1\r\n"
        "CSeq: 1 INVITE\r\n"
    )
    if pai:
        hdrs += f"P-Asserted-Identity: {pai}\r\n"
    return parse((hdrs + extra + "Content-Length: 0\r\n\r\n").encode())


def _config(tmp_path: Path, prefix: str, body: str = "") -> Any:
    return screener_config(
        tmp_path, prefix, '[[trunk]]\ncidr = "10.9.9.9/32"\nprovider = "gone"\n' + body
    )


# A trusted SBC (10.1.2.0/24) names the provider in X-Upstream
_TRUSTED = '[trusted_header]\nname = "X-Upstream"\nsources = ["10.1.2.0/24"]\n'


async def _trusted_screener(
    tmp_path: Path, redis_url: str, prefix: str, more: str = ""
) -> tuple[Screener, Metrics]:
    """A Screener (and its metrics) on the seeded snapshot, with the trusted SBC
    header configured and the config lines ``more``."""
    cfg = _config(tmp_path, prefix, more + _TRUSTED)
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    return Screener(cfg, store, m), m


@pytest.fixture
def seeded(redis_client: Any, key_prefix: str) -> str:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    redis_client.hset(
        key_prefix + "provider:gone", mapping={"name": "Gone Telecom", "rmd_status": "removed"}
    )
    return key_prefix


async def test_facts_and_answers(tmp_path: Path, redis_url: str, seeded: str) -> None:
    cfg = _config(
        tmp_path,
        seeded,
        '[answer.deterministic]\nkind = "608"\njcard_url = "https://jc.carrier.net/j"\n',
    )
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    client = aioredis.Redis.from_url(redis_url)
    records = RecordWriter(client, seeded, 1000, 0)
    try:
        s = Screener(cfg, store, m, records, rng=lambda: 1.0)
        # PAI wins over From (RFC 3325 §9.1).
        req = _invite("sip:+12127368000@10.1.2.3", pai=f"<sip:{BLOCKED}@10.1.2.3;user=phone>")
        assert caller_from_request(req) == BLOCKED
        ans = s(req, SRC, "udp")
        assert ans == Answer(
            608, b"Rejected", b"Call-Info: <https://jc.carrier.net/j>;purpose=jwscard\r\n"
        )
        # From alone, allowed.
        assert s(_invite("sip:+12127368000@10.1.2.3"), SRC, "udp") is None
        # Privacy: id hides the caller from the callee, not from screening.
        facts = s.facts_for(_invite(f"tel:{BLOCKED}", extra="Privacy: id;critical\r\n"), SRC)
        assert facts.caller == BLOCKED and facts.caller_private
        assert facts.callee == "+13125557000" and facts.provider == "acme"
        # A provider removed from the RMD (47 CFR 64.6305(g)), by trunk /32.
        ans = s(_invite("sip:+12127368000@10.9.9.9"), ("10.9.9.9", 5060), "udp")
        assert ans is not None and ans.status == 608
        assert m.invites_blocked[Rule.CALLER_BLOCK]._value.get() == 1
        assert m.invites_blocked[Rule.RMD_GATE]._value.get() == 1
        # counted on the INVITE path as plain ints, exported by the periodic flush
        assert m.invites_allowed[Rule.DEFAULT].n == 1
        assert m.decision_seconds._sum.get() == 0
        m.flush_counts()
        assert m.invites_allowed[Rule.DEFAULT].n == 0
        assert m.invites_allowed[Rule.DEFAULT].child._value.get() == 1
        assert m.decision_seconds._sum.get() > 0
        buckets = [b.get() for b in m.decision_seconds._buckets]
        assert sum(buckets) == 3  # three INVITEs decided, one bucket each
        # Blocks are recorded with their rule and citation.
        assert await records.flush() == 2
        recs = await client.xrange(seeded + "records")
        rules = sorted(r[1][b"rule"].decode() for r in recs)
        assert rules == ["caller_block", "rmd_gate"]
        cites = {r[1][b"citation"].decode() for r in recs}
        assert cites == {"operator policy", "47 CFR 64.6305(g)"}
    finally:
        await client.aclose()


async def test_trusted_header_only_from_trusted_sources(
    tmp_path: Path, redis_url: str, seeded: str
) -> None:
    s, _ = await _trusted_screener(tmp_path, redis_url, seeded)
    req = _invite("sip:+12127368000@x", extra="X-Upstream: gone\r\n")
    assert s.facts_for(req, SRC).provider == "gone"
    assert s(req, SRC, "udp") is not None  # RMD gate via the SBC header
    # The same header from an untrusted source is ignored: the trunk map wins.
    assert s.facts_for(req, ("10.1.7.7", 5060)).provider == "acme"


@pytest.mark.parametrize(
    "headers",
    [
        "X-Upstream: acme\r\nX-Upstream: gone\r\n",  # the first was taken
        "X-Upstream: gone\r\nx-upstream: acme\r\n",
        "X-Upstream: acme, gone\r\n",  # an unknown provider "acme, gone": no RMD gate
        "X-Upstream: gone,acme\r\n",
        "X-Upstream: ,gone\r\n",
    ],
)
async def test_more_than_one_trusted_provider_is_refused(
    tmp_path: Path, redis_url: str, seeded: str, headers: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 item 5: two provider values from the trusted SBC never pass (400)."""
    s, m = await _trusted_screener(tmp_path, redis_url, seeded)
    req = _invite("sip:+12127368000@x", extra=headers)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        ans = s(req, SRC, "udp")
    assert ans is not None and ans.status == 400
    assert ans.reason == b"Ambiguous X-Upstream header"
    assert (
        m.invites.labels("blocked", "ambiguous_provider_header", "RFC 3261 §21.4.1")._value.get()
        == 1
    )
    line = json.loads(caplog.records[-1].getMessage())
    assert line["status"] == "400" and line["call_id"] == "screen-test-1"
    assert line["rule"] == "ambiguous_provider_header" and line["action"] == "reject"
    # from an untrusted source the header is not read at all: the trunk map decides
    assert s(req, ("10.1.7.7", 5060), "udp") is None
    # one value still works
    one = _invite("sip:+12127368000@x", extra="X-Upstream: acme\r\n")
    assert s(one, SRC, "udp") is None and s.facts_for(one, SRC).provider == "acme"


async def test_monitor_forwards_and_counts(
    tmp_path: Path, redis_url: str, seeded: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _config(tmp_path, seeded, "[proxy]\nmonitor = true\n")
    store = await loaded_store(cfg, redis_url)
    m = Metrics(CollectorRegistry())
    s = Screener(cfg, store, m)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert s(_invite(f"sip:{BLOCKED}@x"), SRC, "udp") is None
    assert m.invites_would_block[Rule.CALLER_BLOCK]._value.get() == 1
    assert m.invites_blocked[Rule.CALLER_BLOCK]._value.get() == 0
    line = json.loads(caplog.records[-1].getMessage())
    assert line["action"] == "monitor" and line["caller"] == BLOCKED
    assert line["rule"] == "caller_block" and line["call_id"] == "screen-test-1"


@pytest.mark.parametrize(("policy", "status"), [("open", None), ("closed", 503)])
async def test_no_snapshot_policy(
    tmp_path: Path, redis_url: str, key_prefix: str, policy: str, status: int | None
) -> None:
    cfg = _config(tmp_path, key_prefix, f'[proxy]\nno_snapshot_policy = "{policy}"\n')
    # Never loaded: nothing answers at this URL.
    store = SnapshotStore("redis://127.0.0.1:1/0", key_prefix, emergency=cfg.emergency_numbers)
    m = Metrics(CollectorRegistry())
    ans = Screener(cfg, store, m)(_invite(f"sip:{BLOCKED}@x"), SRC, "udp")
    assert (ans.status if ans else None) == status
    child = m.invites_no_snapshot_refused if status else m.invites_no_snapshot
    assert child._value.get() == 1


async def test_more_than_one_trusted_provider_in_monitor_mode(
    tmp_path: Path, redis_url: str, seeded: str
) -> None:
    s, m = await _trusted_screener(tmp_path, redis_url, seeded, "[proxy]\nmonitor = true\n")
    assert s(_invite("sip:+12127368000@x", extra="X-Upstream: acme, gone\r\n"), SRC, "udp") is None
    child = m.invites.labels("would_block", "ambiguous_provider_header", "RFC 3261 §21.4.1")
    assert child._value.get() == 1


async def test_ambiguous_provider_record_is_clipped_and_complete(
    tmp_path: Path, redis_url: str, seeded: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The 400 for an ambiguous trusted provider header writes the record a
    blocked call gets (transport, raw PAI/From/Identity), with its received
    strings clipped like every record: the values come from the caller
    through the SBC, so a 30 KB header is an attacker-sized record otherwise.
    A writer that raises is counted as dropped (error), never fails the call."""
    s, m = await _trusted_screener(tmp_path, redis_url, seeded)
    big = "r" * 30000
    req = parse(
        _invite("sip:+12127368000@x", pai="<sip:+12127368000@x>")
        .raw.replace(b"Call-ID: screen-test-1", b"Call-ID: " + b"c" * 30000)
        .replace(b"Content-Length: 0", f"X-Upstream: acme, {big}\r\nContent-Length: 0".encode())
    )
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        ans = s(req, SRC, "tcp")
    assert ans is not None and ans.status == 400
    line = json.loads(caplog.records[-1].getMessage())
    assert len(line["call_id"]) < 300 and len(line["detail"]) < 600
    assert line["transport"] == "tcp" and line["pai"] == "<sip:+12127368000@x>"
    assert line["from"].startswith("<sip:+12127368000@x>") and "identity" in line
    assert m.records_truncated_children["call_id"]._value.get() == 1
    assert m.records_truncated_children["detail"]._value.get() == 1

    class Failing:
        def append(self, record: dict[str, str]) -> None:
            raise RuntimeError("writer gone")

    s.records = Failing()  # type: ignore[assignment]
    assert s(req, SRC, "udp") is not None
    assert m.records_dropped_children["error"]._value.get() == 1


async def test_monitor_only_provider_without_rmd_identity_under_block_policy(
    tmp_path: Path, redis_url: str, seeded: str, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """unmapped_provider_policy = block and a monitor_only provider with no RMD
    identity: the gate would have refused the call (47 CFR 64.6305(g)), so it
    is counted as would_block and recorded and logged like every would-block
    (issue 9: "A monitor_only provider is still counted as would_block by the
    gate"), not only sampled as the monitor policy's configuration state."""
    redis_client.hset(
        seeded + "provider:onb", mapping={"name": "Onboarding", "rmd_status": "unknown",
                                          "monitor_only": "1"}
    )  # fmt: skip
    cfg = _config(
        tmp_path,
        seeded,
        '[proxy]\nunmapped_provider_policy = "block"\n'
        '[[trunk]]\ncidr = "10.7.0.0/16"\nprovider = "onb"\n',
    )
    store = SnapshotStore(
        redis_url, cfg.key_prefix, emergency=cfg.emergency_numbers, unmapped_provider_policy="block"
    )
    await store.load_full()
    m = Metrics(CollectorRegistry())
    s = Screener(cfg, store, m, rng=lambda: 1.0)  # no allowed call sampled
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        assert s(_invite("sip:+12127368000@x"), ("10.7.1.1", 5060), "udp") is None
    assert m.invites_would_block[Rule.UNMAPPED_PROVIDER]._value.get() == 1
    m.flush_counts()
    assert m.unmapped_passed.child._value.get() == 1
    line = json.loads(caplog.records[-1].getMessage())
    assert line["action"] == "would_block" and line["rule"] == "unmapped_provider"
    assert line["provider"] == "onb"
    # an unmapped source under the block policy is still blocked
    ans = s(_invite("sip:+12127368000@x"), ("10.200.0.1", 5060), "udp")
    assert ans is not None and m.unmapped_blocked._value.get() == 1


def _update(frm: str, pai: str | None = None, extra: str = "") -> Any:
    req = _invite(frm, pai=pai, extra=extra).raw
    return parse(
        req.replace(b"INVITE", b"UPDATE").replace(
            b"<sip:+13125557000@127.0.0.1>\r\n", b"<sip:+13125557000@127.0.0.1>;tag=ss\r\n"
        )
    )


async def test_a_psap_calling_back_is_never_refused_for_a_header_the_screen_cannot_read(
    tmp_path: Path, redis_url: str, seeded: str, redis_client: Any
) -> None:
    """47 CFR 64.1200(k)(6): a call whose From (or a readable P-Asserted-Identity
    entry) is on the emergency-caller lists, a PSAP calling back, is forwarded
    even when the trusted SBC's provider header is ambiguous or another PAI
    entry is unreadable; it got the 400 before. Counted as allowed by the
    emergency rule. A caller not on the lists still gets the 400."""
    psap, listed = "+13125550911", "+13125550912"
    redis_client.sadd(seeded + "emergency:caller", listed)
    s, m = await _trusted_screener(
        tmp_path, redis_url, seeded, f'[proxy]\nemergency_callers = ["{psap}"]\n'
    )
    ambiguous = "X-Upstream: acme, gone\r\n"
    unreadable = f'P-Asserted-Identity: "unbalanced <sip:{BLOCKED}@h>\r\n'
    readable_then_not = f"P-Asserted-Identity: <tel:{listed}>, <  sip:{BLOCKED}@h >\r\n"
    cases = [(psap, ambiguous), (psap, unreadable), (listed, unreadable)]
    cases += [("+13125557777", readable_then_not)]
    for frm, extra in cases:
        req = _invite(f"sip:{frm}@x", extra=extra)
        assert s(req, SRC, "udp") is None, (frm, extra)
        assert s.last is not None and s.last[0].rule is Rule.EMERGENCY
        assert s.last[0].detail == "emergency_caller"
    for extra in (ambiguous, unreadable):
        ans = s(_invite("sip:+13125557777@x", extra=extra), SRC, "udp")
        assert ans is not None and ans.status == 400
    assert m.invites_allowed[Rule.EMERGENCY].n == 4


@pytest.mark.parametrize("monitor", [False, True])
async def test_an_update_s_identities_are_screened_against_the_lists(
    tmp_path: Path, redis_url: str, seeded: str, monitor: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Screener.update: a blocked number in an UPDATE's P-Asserted-Identity (or
    From) gets the answer of its rule's class, counted apart from INVITEs
    (sipscreen_updates_screened_total), logged and recorded as reject_update;
    under --monitor forwarded, counted would_refuse, recorded monitor_update.
    Provider rules do not judge an UPDATE: one from a trunk removed from the
    RMD, or with two trusted provider values, is judged by its numbers."""
    more = "[proxy]\nmonitor = true\n" if monitor else ""
    s, m = await _trusted_screener(tmp_path, redis_url, seeded, more)
    clean = "sip:+12127368000@10.1.2.3"
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        ans = s.update(_update(clean, pai=f"<tel:{BLOCKED}>"), SRC, "udp")
        assert (ans is None) if monitor else (ans is not None and ans.status == 603)
        line = json.loads(caplog.records[-1].getMessage())
        assert line["action"] == ("monitor_update" if monitor else "reject_update")
        assert line["rule"] == "caller_block" and line["detail"] == f"update:{BLOCKED}"
        assert line["status"] == ("" if monitor else "603") and "UPDATE" in line["reason"]
        ans = s.update(_update(f"sip:{BLOCKED}@x", extra="X-Upstream: a, b\r\n"), SRC, "udp")
        assert (ans is None) == monitor
    verdict = "would_refuse" if monitor else "refused"
    counted = m.updates.labels(verdict, "caller_block", "operator policy")._value.get()
    assert counted == 2 and m.invites_blocked[Rule.CALLER_BLOCK]._value.get() == 0
    # the RMD gate and the number's validity do not judge an UPDATE
    assert s.update(_update(clean), ("10.9.9.9", 5060), "udp") is None
    assert s.update(_update("sip:+10005551234@x"), SRC, "udp") is None
    assert m.updates.labels("allowed", "default", "operator policy")._value.get() == 2


async def test_an_emergency_call_is_never_refused_for_a_header_the_screen_cannot_read(
    tmp_path: Path, redis_url: str, seeded: str
) -> None:
    """47 CFR 64.1200(k)(5): a call to 911 (or urn:service:sos) is forwarded even
    when the trusted SBC's provider header is ambiguous or a P-Asserted-Identity
    entry is unreadable, the two cases the screen answers 400 for other calls;
    counted as allowed by the emergency rule."""
    s, m = await _trusted_screener(tmp_path, redis_url, seeded)
    ambiguous = "X-Upstream: acme, gone\r\n"
    unreadable = f'P-Asserted-Identity: "unbalanced <sip:{BLOCKED}@h>\r\n'
    for extra in (ambiguous, unreadable):
        for ruri in (b"sip:911@127.0.0.1", b"urn:service:sos.police"):
            req = parse(
                _invite(f"sip:{BLOCKED}@x", extra=extra).raw.replace(
                    b"sip:+13125557000@127.0.0.1 SIP/2.0", ruri + b" SIP/2.0", 1
                )
            )
            assert s(req, SRC, "udp") is None, (extra, ruri)
            assert s.last is not None and s.last[0].rule is Rule.EMERGENCY
        ans = s(_invite(f"sip:{BLOCKED}@x", extra=extra), SRC, "udp")
        assert ans is not None and ans.status == 400  # any other call
    assert m.invites_allowed[Rule.EMERGENCY].n == 4
