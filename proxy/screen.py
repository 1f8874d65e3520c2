"""Screening glue: one INVITE -> CallFacts -> rules.engine.decide -> Answer.

How this works: `Screener` is the `screen(request, src, transport)` callable
the SIP core (proxy/sip/core.py) calls for each initial INVITE. It

1. builds `rules.facts.CallFacts` from the request: the caller from the
   first P-Asserted-Identity (RFC 3325 §9.1) else the From URI user, both
   normalised to E.164 by `rules.numbers.normalise`; `Privacy: id` / `user`
   (RFC 3323 §4.2) sets `caller_private` (the carrier still screens the
   number); the callee from the Request-URI user; the upstream provider from
   the trunk map (source IP -> provider, longest prefix) or, from a trusted
   SBC only, the configured header;
2. calls `rules.engine.decide(store.snapshot, facts, now)` synchronously on
   the in-memory snapshot (no await, no Redis round trip);
3. maps a block to the answer configured for the rule's answer class
   (`603` / `603+` / `608`, precomputed in proxy/config.py), or
   forwards (returns None) when allowed, when only a would-block matched, or
   in `--monitor` mode;
4. counts on pre-bound metric children, logs one JSON line per blocked (or
   would-block) call, and appends a decision record (all blocks, sampled
   allows) to the RecordWriter. An allowlist pass over a rule that would
   have blocked (verdict ALLOWLIST with `would_block`) counts as allowed
   (rule allowlist) and in `sipscreen_allowlist_overrides_total{rule}`, and is
   logged and recorded (action `allowlist_override`, rule = the rule passed
   over). A call whose provider cannot be judged against the RMD counts in
   `sipscreen_unmapped_provider_total{action}`: "blocked" (policy block; also
   blocked/unmapped_provider) or "passed" (policy monitor; also
   allowed/default, recorded as would_block unmapped_provider at the allow
   sample rate and not logged: a configuration state, not a per-call event).

If the store never loaded a snapshot, the `no_snapshot_policy` decides:
"open" forwards and counts, "closed" answers 503 (RFC 3261 §21.5.4) with a
Retry-After.
"""

from __future__ import annotations

import datetime
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from proxy.config import Config
from proxy.metrics import Metrics
from proxy.records import clip
from proxy.sip.core import RETRY_AFTER, Answer
from proxy.sip.message import Request, _uri_user
from rules.engine import decide
from rules.facts import CallFacts
from rules.numbers import normalise
from rules.verdict import Rule, Verdict

__all__ = ["DECISION_LOGGER", "Screener", "caller_from_request", "uri_of"]

DECISION_LOGGER = "sipscreen.decisions"
_log = logging.getLogger(DECISION_LOGGER)

# RFC 3261 §21.5.4: 503 with Retry-After when we cannot screen (no snapshot
# loaded and the operator chose to fail closed).
_ANSWER_503 = Answer(503, b"Service Unavailable", RETRY_AFTER)


class _Store(Protocol):
    @property
    def snapshot(self) -> Any: ...

    @property
    def loaded(self) -> bool: ...


class _Records(Protocol):
    def append(self, record: dict[str, str]) -> Any: ...


def _iso_ms(ts: float) -> str:
    """ISO-8601 UTC with milliseconds, as proxy/records.py exports it."""
    return (
        datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        + "Z"
    )


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def uri_of(value: str) -> str:
    """The URI inside a name-addr (`"Bob" <sip:...>;x=y`) or an addr-spec.

    RFC 3261 §20.10/§25.1: in name-addr form the URI is between `<` `>`;
    otherwise header parameters start at the first `;` after the URI (the
    URI's own parameters cannot appear without the brackets).
    """
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt + 1)
        return value[lt + 1 : gt if gt > 0 else len(value)]
    semi = value.find(";")
    return (value[:semi] if semi >= 0 else value).strip()


def caller_from_request(req: Request) -> str | None:
    """Caller ID: first P-Asserted-Identity (RFC 3325 §9.1), else From."""
    # The parser splits comma-separated entries (RFC 3325 §9.1 allows one
    # sip: and one tel: identity): take the first one with a number.
    for raw in req.pai:
        num = normalise(uri_of(_text(raw)))
        if num is not None:
            return num
    frm = req.from_
    return normalise(_text(frm.user or frm.uri))


def _callee(req: Request) -> str | None:
    """Callee: the Request-URI's number, else the To header's."""
    num = normalise(_text(req.ruri))
    if num is None and req.to.user:
        num = normalise(_text(req.to.user))
    return num


def _private(privacy: bytes | None) -> bool:
    # RFC 3323 §4.2: Privacy = priv-value *(";" priv-value); "id" (RFC 3325)
    # and "user" ask to hide the caller's identity from the callee.
    if not privacy:
        return False
    for tok in _text(privacy).lower().replace(",", ";").split(";"):
        if tok.strip() in ("id", "user"):
            return True
    return False


class Screener:
    """The `screen` callable handed to `ProxyCore`."""

    def __init__(
        self,
        config: Config,
        store: _Store,
        metrics: Metrics,
        records: _Records | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.records = records
        self._clock = clock
        self._rng = rng
        self._monitor = config.monitor
        self._closed = config.no_snapshot_policy == "closed"
        self._sample = config.records_sample_allowed
        self._trunk_lookup = config.trunks.lookup
        self._trusted_header = (
            config.trusted_provider_header.encode("ascii")
            if config.trusted_provider_header
            else None
        )
        # Answer per answer class, built once from the configured AnswerSpec.
        self._answers: dict[str, Answer] = {}
        for cls, spec in config.answers.items():
            self._answers[cls] = Answer(spec.status, spec.reason, spec.extra_headers)
        default = self._answers.get("deterministic") or Answer(603, b"Decline", b"")
        self._answer_by_rule: dict[Rule, Answer] = {
            rule: self._answers.get(rule.answer_class, default) for rule in Rule
        }
        self._allowed = metrics.invites_allowed
        self._blocked = metrics.invites_blocked
        self._would = metrics.invites_would_block
        self._overrides = metrics.allowlist_overrides_by_rule
        self._unmapped_passed = metrics.unmapped_passed
        self._unmapped_blocked = metrics.unmapped_blocked
        self._observe = metrics.decision_seconds.observe
        self.errors = 0

    # -- facts --------------------------------------------------------------

    def provider_for(self, req: Request, source_ip: str) -> str | None:
        """Upstream provider: trusted SBC header, else trunk map by source IP."""
        if self._trusted_header is not None and self.config.is_trusted_source(source_ip):
            values = req.header(self._trusted_header)
            if values:
                return _text(values[0]).strip() or None
        return self._trunk_lookup(source_ip)

    def facts_for(self, req: Request, src: tuple[str, int]) -> CallFacts:
        source_ip = src[0]
        return CallFacts(
            caller_from_request(req),
            _callee(req),
            self.provider_for(req, source_ip),
            source_ip,
            _text(req.call_id),
            None,  # OCN: from a verified SHAKEN Identity only (RFC 8588)
            _private(req.privacy),
        )

    # -- the hot path ----------------------------------------------------------

    def __call__(self, req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        store = self.store
        if not store.loaded:
            if self._closed:
                self.metrics.invites_no_snapshot_refused.inc()
                return _ANSWER_503
            self.metrics.invites_no_snapshot.inc()
            return None
        t0 = time.perf_counter()
        snap = store.snapshot
        facts = self.facts_for(req, src)
        now = self._clock()
        verdict: Verdict = decide(snap, facts, now)
        self._observe(time.perf_counter() - t0)
        if not verdict.blocked:
            would = verdict.would_block
            if would is None:
                self._allowed[verdict.rule].inc()
                if self._sample and self.records is not None and self._rng() < self._sample:
                    self._record(req, src, transport, facts, verdict, "allow", snap, now)
                return None
            if verdict.rule is Rule.ALLOWLIST:
                # The allowlist passed the call over `would`: allowed, counted
                # by the rule it passed over, recorded and logged.
                self._allowed[Rule.ALLOWLIST].inc()
                self._overrides[would].inc()
                self._record(
                    req, src, transport, facts, verdict, "allowlist_override", snap, now, rule=would
                )
                return None
            if would is Rule.UNMAPPED_PROVIDER:
                # unmapped_provider_policy = monitor: allowed/default plus the
                # unmapped counter on every call; recorded at the allow sample
                # rate and not logged (a configuration state, not an event).
                self._allowed[verdict.rule].inc()
                self._unmapped_passed.inc()
                if self._sample and self.records is not None and self._rng() < self._sample:
                    self._record(
                        req,
                        src,
                        transport,
                        facts,
                        verdict,
                        "would_block",
                        snap,
                        now,
                        rule=would,
                        log=False,
                    )
                return None
            self._would[would].inc()
            self._record(req, src, transport, facts, verdict, "would_block", snap, now, rule=would)
            return None
        if self._monitor:
            # --monitor: count and log what would be blocked, forward it.
            self._would[verdict.rule].inc()
            if verdict.rule is Rule.UNMAPPED_PROVIDER:
                self._unmapped_passed.inc()
            self._record(req, src, transport, facts, verdict, "monitor", snap, now)
            return None
        self._blocked[verdict.rule].inc()
        if verdict.rule is Rule.UNMAPPED_PROVIDER:
            self._unmapped_blocked.inc()
        answer = self._answer_by_rule[verdict.rule]
        self._record(req, src, transport, facts, verdict, "reject", snap, now, answer=answer)
        return answer

    # -- the block path: records and the JSON log line ------------------------

    def _record(
        self,
        req: Request,
        src: tuple[str, int],
        transport: str,
        facts: CallFacts,
        verdict: Verdict,
        action: str,
        snap: Any,
        now: float,
        *,
        rule: Rule | None = None,
        answer: Answer | None = None,
        log: bool = True,
    ) -> None:
        """Build the decision record (the record path only: blocked,
        would-block, monitor, sampled allows), log it, queue it.

        The raw strings are read from the request here, not on the allow
        path; every string received from the network is clipped to its
        configured size (`records.max_call_id` / `records.max_header`),
        ending in `…[+N]`, and the cut is counted by field.
        """
        r = rule or verdict.rule
        cfg = self.config
        cap_id = cfg.records_max_call_id
        cap_hdr = cfg.records_max_header
        ip, port = src[0], src[1]
        frm = req.from_
        # Field names of proxy/records.py FIELDS; every value a str (XADD).
        raw: dict[str, str] = {
            "call_id": facts.call_id,
            "provider": facts.provider or "",
            "caller_raw": _text(frm.user or frm.uri),
            "callee_raw": _text(_uri_user(req.ruri)[1] or req.ruri),
            "pai": _text(b", ".join(req.header(b"p-asserted-identity"))),
            "from": _text(frm.raw),
            "identity": _text(b", ".join(req.header(b"identity"))),
        }
        cut = self.metrics.records_truncated_children
        for k, v in raw.items():
            limit = cap_id if k == "call_id" else cap_hdr
            if 0 < limit < len(v):
                raw[k] = clip(v, limit)
                cut[k].inc()
        rec: dict[str, str] = {
            "ts": _iso_ms(now),
            "call_id": raw["call_id"],
            "source": f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}",
            "transport": transport,
            "provider": raw["provider"],
            "ocn": facts.ocn or "",
            "caller": facts.caller or "",
            "callee": facts.callee or "",
            "caller_raw": raw["caller_raw"],
            "callee_raw": raw["callee_raw"],
            "caller_private": "1" if facts.caller_private else "0",
            "pai": raw["pai"],
            "from": raw["from"],
            "identity": raw["identity"],
            "rule": r.label,
            "citation": r.citation,
            "reason": verdict.reason,
            "detail": verdict.detail,
            "action": action,
            "monitor": "1" if self._monitor else "0",
            "status": str(answer.status) if answer is not None else "",
            "snapshot_version": str(getattr(snap, "version", "")),
        }
        if log and action != "allow" and _log.isEnabledFor(logging.INFO):
            _log.info(json.dumps(rec, separators=(",", ":")))
        if self.records is not None:
            try:
                self.records.append(rec)
            except Exception:  # a failing writer must never fail a call
                self.metrics.records_dropped_children["error"].inc()
