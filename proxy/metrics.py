"""Prometheus metrics, every label child bound once at start.

How this works: `Metrics(...)` creates every metric in its own
`CollectorRegistry` and binds the label children the hot path uses
(`labels(...)` costs ~1.2 µs, a bound child's `.inc()` ~0.3 µs; see
shared/PERFORMANCE.md): one child per (verdict, rule) for INVITE decisions,
one per (direction, kind) for SIP messages, one per parse-error / drop
reason. The hot path only does dict lookups on prebuilt tables; the two
per-message counts (messages sent by kind, datagrams per worker) are plain
ints that the periodic `sync_core_stats` adds to their children.

One scrape target with several workers: the parent process sets
`PROMETHEUS_MULTIPROC_DIR` to a fresh temp dir before forking; each worker
calls `enable_multiprocess()` (prometheus_client picks its value class when a
metric is created, so the worker's metrics then write to per-pid mmap files)
and the parent serves `/metrics` from `multiprocess_registry()`
(`MultiProcessCollector` sums the workers' counters). Gauges use the `live*`
modes so a dead worker's values disappear (`mark_process_dead`). Per-worker
traffic stays visible through `sipscreen_worker_datagrams_total{worker=...}`.

`sipscreen_snapshot_age_seconds` is computed at scrape time: in one process
from the store's snapshot (`Gauge.set_function`); with workers, the parent's
`SnapshotAgeCollector` derives it from the newest
`sipscreen_snapshot_loaded_timestamp_seconds` any worker reported.
"""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import values as _prom_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.certfetch import RESULTS as CERT_FETCH_RESULTS
from proxy.shakenstats import OTHER as SHAKEN_OTHER
from proxy.shakenstats import OUTCOMES as SHAKEN_OUTCOMES
from proxy.sip.message import METHODS as SIP_METHODS
from rules.shaken import REASONS as SHAKEN_REASONS
from rules.verdict import Rule

__all__ = [
    "DECISION_BUCKETS",
    "DROP_REASONS",
    "MESSAGE_KINDS",
    "Metrics",
    "PARSE_ERROR_KINDS",
    "SnapshotAgeCollector",
    "enable_multiprocess",
    "multiprocess_registry",
]

_log = logging.getLogger("sipscreen.sip")

# 1 µs .. 10 ms: a decision is ~1.5 µs on these machines (PERFORMANCE.md).
DECISION_BUCKETS = (
    1e-6,
    2e-6,
    5e-6,
    1e-5,
    2e-5,
    5e-5,
    1e-4,
    2e-4,
    5e-4,
    1e-3,
    2e-3,
    5e-3,
    1e-2,
)

# RFC 3261 §7.1 methods plus the common extensions (the parser's list);
# anything else is OTHER.
METHODS = tuple(sorted(m.decode() for m in SIP_METHODS))
# RFC 3261 §7.2: responses by status class.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")
MESSAGE_KINDS = METHODS + ("OTHER",) + STATUS_CLASSES

PARSE_ERROR_KINDS = ("request", "response", "unanswerable", "stream")
DROP_REASONS = (
    "unparseable",
    "no_route",
    "broadcast",
    "send_error",
    "overload",
    "callback_error",
    "no_snapshot",
    "tcp_no_connection",
    "handoff_foreign",
)

# proxy/records/writer.py DROP_REASONS (not imported: metrics stays free of redis).
RECORD_DROP_REASONS = ("buffer_count", "buffer_bytes", "error")
# The record fields proxy/screen.py clips (received strings).
RECORD_CLIPPED_FIELDS = (
    "call_id",
    "provider",
    "caller_raw",
    "callee_raw",
    "pai",
    "from",
    "identity",
    "detail",  # the ambiguous provider header's values (received, through the SBC)
)

# The rules that refuse an in-dialog UPDATE (rules/engine.py decide_update: the
# number lists), and the rule label and citation of an unreadable
# P-Asserted-Identity (proxy/screen.py: a 400 for an INVITE or an UPDATE)
UPDATE_RULES = (Rule.CALLER_BLOCK, Rule.PREFIX_BLOCK, Rule.DNO_INBOUND_ONLY)
UNREADABLE_IDENTITY = ("unreadable_identity_header", "RFC 3325 §9.1")
# an ISUP body (SIP-T, RFC 3204) the screen cannot read (proxy/sip/isup.py): a 400
UNREADABLE_ISUP = ("unreadable_isup_body", "RFC 3204")

# sipscreen_core_events_total{event} children created at start (CoreStats names)
WATCHED_CORE_EVENTS = (
    "shed",
    "rate_limited",
    "retransmit_suppressed",
    "ack_timeouts",
    # requests retransmitted for reliable senders (proxy/sip/retransmit.py)
    "relay_retransmit_timeout_408",
    "relay_retransmit_refused",
)

_ChildMap = dict[Any, Any]


class Tally:
    """A count on the INVITE path: ``inc`` adds to a plain int, ``flush`` (the
    worker's periodic ``flush_counts``) adds it to its Prometheus child. With
    workers, every ``child.inc`` is an mmap write behind a ``getpid`` system
    call (prometheus_client's multiprocess values): 1-2 µs an INVITE paid
    twice or three times."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0

    def inc(self, amount: int = 1) -> None:
        self.n += amount

    def flush(self) -> None:
        n = self.n
        if n:
            self.n = 0
            self.child.inc(n)


class HistogramTally:
    """Observations of an unlabelled Histogram, bucketed here (``observe``: the
    same bucket as ``Histogram.observe``, the first upper bound >= the value)
    and added to the histogram's bucket and sum values by ``flush``."""

    __slots__ = ("hist", "bounds", "counts", "total")

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.bounds = tuple(hist._upper_bounds)  # +Inf last, as the histogram's
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.total += amount

    def flush(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        buckets = self.hist._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self.hist._sum.inc(self.total)
        self.total = 0.0


def enable_multiprocess(directory: str | None = None) -> None:
    """Switch this process's prometheus_client to multiprocess values.

    Call in a worker right after fork, before any `Metrics()` is built.
    """
    if directory is not None:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    _prom_values.ValueClass = _prom_values.get_value_class()  # type: ignore[no-untyped-call]


def multiprocess_registry(directory: str) -> CollectorRegistry:
    """The parent's registry: workers' metrics summed + scrape-time age."""
    reg = CollectorRegistry()
    mpc = MultiProcessCollector(reg, path=directory)  # type: ignore[no-untyped-call]
    reg.register(SnapshotAgeCollector(mpc))
    return reg


class SnapshotAgeCollector:
    """`sipscreen_snapshot_age_seconds` from the workers' load timestamps."""

    def __init__(self, source: Any, clock: Callable[[], float] = time.time) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        newest = 0.0
        for metric in self._source.collect():
            if metric.name == "sipscreen_snapshot_loaded_timestamp_seconds":
                for s in metric.samples:
                    newest = max(newest, float(s.value))
        g = GaugeMetricFamily(
            "sipscreen_snapshot_age_seconds",
            "Seconds since the rules snapshot was last loaded or updated (-1: none yet)",
        )
        g.add_metric([], self._clock() - newest if newest > 0 else -1.0)
        yield g


class Metrics:
    """Every sipscreen metric, with the hot-path children pre-bound."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        worker: int = 0,
        multiprocess: bool = False,
        snapshot_loaded_at: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # No `*_created` series: they double the scrape for no operator value.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiprocess
        reg = self.registry
        self.invites = Counter(
            "sipscreen_invites",
            "Initial INVITEs screened, by verdict and the rule that decided",
            ["verdict", "rule", "citation"],
            registry=reg,
        )
        # One child per (verdict, rule): the hot path indexes these by Rule.
        self.invites_allowed: _ChildMap = {}
        self.invites_blocked: _ChildMap = {}
        self.invites_would_block: _ChildMap = {}
        for rule in Rule:
            self.invites_allowed[rule] = Tally(
                self.invites.labels("allowed", rule.label, rule.citation)
            )
            self.invites_blocked[rule] = self.invites.labels("blocked", rule.label, rule.citation)
            self.invites_would_block[rule] = self.invites.labels(
                "would_block", rule.label, rule.citation
            )
        # The operator's allowlist let a call pass over a rule of steps 4-6
        # (DNO, operator lists, notices) that would otherwise have blocked it:
        # the call counts as allowed/allowlist above, and here by that rule.
        self.allowlist_overrides = Counter(
            "sipscreen_allowlist_overrides",
            "Allowlisted calls passed over a rule that would otherwise have blocked them",
            ["rule", "citation"],
            registry=reg,
        )
        self.allowlist_overrides_by_rule: _ChildMap = {
            rule: self.allowlist_overrides.labels(rule.label, rule.citation) for rule in Rule
        }
        # In-dialog UPDATEs whose identities the dialog's stamp did not prove,
        # screened against the number lists (rules/engine.py decide_update):
        # "refused" (answered with the list's block answer, not forwarded),
        # "would_refuse" (--monitor: forwarded), "allowed".
        self.updates = Counter(
            "sipscreen_updates_screened",
            "In-dialog UPDATEs with identities the call was not admitted with, by verdict",
            ["verdict", "rule", "citation"],
            registry=reg,
        )
        # every series the screen can count, at 0 from the start (a dashboard
        # panel shows a flat line, not "no data"): (verdict, rule label) -> child
        self.updates_by: _ChildMap = {}
        for verdict, rules in (
            ("refused", UPDATE_RULES),
            ("would_refuse", UPDATE_RULES),
            ("allowed", (Rule.DEFAULT, Rule.ALLOWLIST, Rule.EMERGENCY)),
        ):
            for rule in rules:
                self.updates_by[(verdict, rule.label)] = self.updates.labels(
                    verdict, rule.label, rule.citation
                )
        for verdict in ("refused", "would_refuse"):
            for labels in (UNREADABLE_IDENTITY, UNREADABLE_ISUP):
                self.updates_by[(verdict, labels[0])] = self.updates.labels(verdict, *labels)
        # Calls whose upstream provider cannot be judged against the RMD (no
        # trunk entry, no provider record, rmd_status unknown), by what the
        # unmapped_provider_policy did: "passed" (monitor; the call also counts
        # as allowed/default above) or "blocked" (also blocked/unmapped_provider).
        self.unmapped_provider = Counter(
            "sipscreen_unmapped_provider",
            "Calls from a provider that cannot be judged against the RMD, by action",
            ["action", "rule", "citation"],
            registry=reg,
        )
        _um = Rule.UNMAPPED_PROVIDER
        # every call without a provider, with no trunk map: tallied (flush_counts)
        self.unmapped_passed = Tally(
            self.unmapped_provider.labels("passed", _um.label, _um.citation)
        )
        self.unmapped_blocked = self.unmapped_provider.labels("blocked", _um.label, _um.citation)
        # No snapshot loaded yet (47 CFR rules cannot be applied): a verdict
        # of its own so operators see it.
        self.invites_no_snapshot = self.invites.labels("allowed", "no_snapshot", "operator policy")
        self.invites_no_snapshot_refused = self.invites.labels(
            "blocked", "no_snapshot", "operator policy"
        )

        self.sip_messages = Counter(
            "sipscreen_sip_messages",
            "SIP messages received (in) and sent (out), by method or status class",
            ["direction", "kind"],
            registry=reg,
        )
        # Every (direction, kind) series exists at 0 from the start. The sent
        # ones are keyed by the first token of the datagram (b"INVITE") for
        # requests and by the status-class digit (b"1".."6") for responses
        # (count_out); the received ones come from the core's stats.
        for direction in ("in", "out"):
            for kind in (*METHODS, *STATUS_CLASSES, "OTHER"):
                self.sip_messages.labels(direction, kind)
        out = self.sip_messages.labels
        self.msg_out: _ChildMap = {m.encode(): out("out", m) for m in METHODS}
        self.msg_out.update({sc[0].encode(): out("out", sc) for sc in STATUS_CLASSES})
        self.msg_out_other = self.sip_messages.labels("out", "OTHER")

        self.decision_seconds = Histogram(
            "sipscreen_decision_seconds",
            "Time to decide one INVITE (facts + rules), seconds",
            buckets=DECISION_BUCKETS,
            registry=reg,
        )
        self.decision_tally = HistogramTally(self.decision_seconds)  # the INVITE path's
        self.snapshot_entries = Gauge(
            "sipscreen_snapshot_entries",
            "Entries in the in-memory rules snapshot",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.snapshot_loaded_timestamp = Gauge(
            "sipscreen_snapshot_loaded_timestamp_seconds",
            "UNIX time the rules snapshot was last loaded or updated",
            registry=reg,
            multiprocess_mode="livemax",
        )
        # 1 for the mode this proxy runs in (proxy/redirect.py sets it)
        self.mode = Gauge(
            "sipscreen_mode",
            "1 for the mode this proxy runs in: inline (in the call path) or redirect",
            ["mode"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.redis_up = Gauge(
            "sipscreen_redis_up",
            "1 when the store is connected to Redis and following edits",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.redis_data_lost = Gauge(
            "sipscreen_redis_data_lost",
            "1 when Redis came back without the store's generation stamp (restarted "
            "empty?): screening stays on the last snapshot until an operator confirms",
            registry=reg,
            multiprocess_mode="livemax",
        )
        if not multiprocess:
            self.snapshot_age = Gauge(
                "sipscreen_snapshot_age_seconds",
                "Seconds since the rules snapshot was last loaded or updated (-1: none yet)",
                registry=reg,
            )
            loaded_at = snapshot_loaded_at

            def _age() -> float:
                ts = loaded_at() if loaded_at is not None else None
                return clock() - ts if ts else -1.0

            self.snapshot_age.set_function(_age)

        self.parse_errors = Counter(
            "sipscreen_parse_errors",
            "SIP messages that failed to parse, by kind",
            ["kind"],
            registry=reg,
        )
        self.parse_error_children: _ChildMap = {
            k: self.parse_errors.labels(k) for k in PARSE_ERROR_KINDS
        }
        self.dropped = Counter(
            "sipscreen_dropped",
            "Messages dropped without an answer, by reason",
            ["reason"],
            registry=reg,
        )
        self.dropped_children: _ChildMap = {r: self.dropped.labels(r) for r in DROP_REASONS}
        self.records_dropped = Counter(
            "sipscreen_records_dropped",
            "Decision records dropped, by reason: the writer's buffer full by count "
            "(buffer_count) or by bytes (buffer_bytes), typically while Redis is down, "
            "or the writer failing (error)",
            ["reason"],
            registry=reg,
        )
        self.records_dropped_children: _ChildMap = {
            r: self.records_dropped.labels(r) for r in RECORD_DROP_REASONS
        }
        self.records_truncated = Counter(
            "sipscreen_records_truncated",
            "Received strings cut to their configured size in a decision record "
            "(and its log line), by record field",
            ["field"],
            registry=reg,
        )
        self.records_truncated_children: _ChildMap = {
            f: self.records_truncated.labels(f) for f in RECORD_CLIPPED_FIELDS
        }
        # STIR/SHAKEN (issue 11, [shaken] on): one count per verified INVITE.
        # result "passed" with attest A/B/C, else the reason with attest "".
        self.shaken_results = Counter(
            "sipscreen_shaken_results",
            "STIR/SHAKEN verification results of INVITEs ([shaken] enabled): "
            "result passed (attest A/B/C), or why not (unsigned, cert_pending, "
            "malformed, unsupported, bad_signature, chain, revoked, stale, "
            "claims_mismatch; attest empty)",
            ["result", "attest"],
            registry=reg,
        )
        self.shaken_children: dict[tuple[str, str | None], Any] = {
            ("", a): self.shaken_results.labels("passed", a) for a in ("A", "B", "C")
        }
        for reason in SHAKEN_REASONS:
            self.shaken_children[(reason, None)] = self.shaken_results.labels(reason, "")
        # The attestation policy's "mark" action: forwarded calls that carried
        # the mark header, by policy case (rules/engine.py shaken_mark).
        self.shaken_marked = Counter(
            "sipscreen_shaken_marked",
            "INVITEs forwarded with the STIR/SHAKEN mark header ([shaken] policy "
            "action mark), by case: unsigned, c_attested, failed",
            ["case"],
            registry=reg,
        )
        self.shaken_marked_children: dict[str, Any] = {
            c: self.shaken_marked.labels(c) for c in ("unsigned", "c_attested", "failed")
        }
        # x5u certificate fetches (proxy/certfetch.py, [shaken] fetch = true).
        self.shaken_cert_fetches = Counter(
            "sipscreen_shaken_cert_fetches",
            "STIR/SHAKEN x5u certificate fetches by result: fetched (HTTPS), "
            "redis (shared cache), timeout, too_large, http_error, bad_cert, "
            "error, host_not_allowed, backoff (skipped after a failure)",
            ["result"],
            registry=reg,
        )
        # Per provider of the snapshot (bounded): proxy/shakenstats.py.
        self.shaken_provider_calls = Counter(
            "sipscreen_shaken_provider_calls",
            "INVITEs by upstream provider (providers of the snapshot, else '(other)') and "
            "STIR/SHAKEN outcome: unsigned, pending (certificate not cached), failed, "
            "A/B/C (verified, by attestation) ([shaken] enabled)",
            ["provider", "outcome"],
            registry=reg,
        )
        for o in SHAKEN_OUTCOMES:  # the label set at start (panels, docs)
            self.shaken_provider_calls.labels(SHAKEN_OTHER, o)
        self.shaken_provider_claim = Gauge(
            "sipscreen_shaken_provider_claim",
            "1 per provider seen by [shaken], labelled with its RMD STIR/SHAKEN "
            "implementation claim (as when first seen by this worker)",
            ["provider", "implementation"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.shaken_provider_claim.labels(SHAKEN_OTHER, "").set(0)
        self.shaken_cert_fetch_children: dict[str, Any] = {
            r: self.shaken_cert_fetches.labels(r) for r in CERT_FETCH_RESULTS
        }
        # TCP resources (issue 10.6): connections open now, refused by a cap,
        # closed by a timeout
        self.tcp_open = Gauge(
            "sipscreen_tcp_connections",
            "TCP connections open",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.tcp_refused = Counter(
            "sipscreen_tcp_refused",
            "TCP connections closed at once by a cap (worker, source, file descriptors)",
            ["reason"],
            registry=reg,
        )
        self.tcp_refused_children: _ChildMap = {
            r: self.tcp_refused.labels(r) for r in ("worker_cap", "source_cap", "tls_client_cert")
        }
        self.tcp_timeouts = Counter(
            "sipscreen_tcp_timeouts",
            "TCP connections closed by a timeout: idle, or a message left incomplete",
            ["kind"],
            registry=reg,
        )
        self.tcp_timeout_children: _ChildMap = {
            k: self.tcp_timeouts.labels(k) for k in ("idle", "incomplete")
        }
        self.callback_errors = Counter(
            "sipscreen_callback_errors",
            "Unhandled exceptions caught in event-loop callbacks",
            registry=reg,
        )
        self.worker_datagrams = Counter(
            "sipscreen_worker_datagrams",
            "Datagrams received by each worker process",
            ["worker"],
            registry=reg,
        ).labels(str(worker))
        # Hot-path counts kept as plain ints (a bound child's `.inc()` takes a
        # lock, and an mmap write with workers); `flush_counts()`, called from
        # the periodic `sync_core_stats`, adds them to the children above.
        self.datagrams_in = 0  # the adapter adds 1 per received datagram
        self._datagrams_synced = 0
        self._out_n: dict[bytes, int] = dict.fromkeys(self.msg_out, 0)
        self._out_n[b""] = 0  # anything else: kind OTHER
        self.core_stats = Counter(
            "sipscreen_core_events",
            "Events counted by the SIP core (ProxyCore.stats), by name",
            ["event"],
            registry=reg,
        )
        # The events an operator watches (load shedding, the per-source INVITE
        # limit, the retransmission budget, unACKed rejections) exist at 0 from
        # the start, so that dashboards and alerts see them before the first one.
        self._core_children: _ChildMap = {
            (event, ""): self.core_stats.labels(event) for event in WATCHED_CORE_EVENTS
        }
        self._core_last: dict[tuple[str, str], float] = {}
        # relay retransmission timeouts logged so far: (all, INVITE, next log time)
        self._rtx_logged: tuple[int, int, float] = (0, 0, 0.0)

    # -- hot-path helpers ---------------------------------------------------

    def count_out(self, data: bytes) -> None:
        """Count one sent message by method / status class (exported by `flush_counts`)."""
        sp = data.find(b" ", 0, 24)
        tok = data[:sp] if sp > 0 else b""
        if tok == b"SIP/2.0":
            tok = data[sp + 1 : sp + 2]
        n = self._out_n
        if tok in n:
            n[tok] += 1
        else:
            n[b""] += 1

    def flush_counts(self) -> None:
        """Add the plain hot-path counts to their Prometheus children (periodic)."""
        for tally in self.invites_allowed.values():
            tally.flush()
        self.unmapped_passed.flush()
        self.decision_tally.flush()
        n = self._out_n
        for key, v in n.items():
            if v:
                n[key] = 0
                (self.msg_out.get(key) or self.msg_out_other).inc(v)
        d = self.datagrams_in
        if d > self._datagrams_synced:
            self.worker_datagrams.inc(d - self._datagrams_synced)
            self._datagrams_synced = d

    def parse_error(self, kind: str) -> None:
        child = self.parse_error_children.get(kind)
        if child is None:
            child = self.parse_error_children[kind] = self.parse_errors.labels(kind)
        child.inc()

    def drop(self, reason: str, n: int = 1) -> None:
        child = self.dropped_children.get(reason)
        if child is None:
            child = self.dropped_children[reason] = self.dropped.labels(reason)
        child.inc(n)

    # -- periodic -----------------------------------------------------------

    def sync_core_stats(self, stats: Any) -> None:
        """Export the SIP core's counters (proxy/sip/core.py `CoreStats`) as
        deltas; called about twice a second, off the hot path.

        `requests_in[method]` / `responses_in[class]` feed
        `sipscreen_sip_messages_total{direction="in"}`, `parse_errors[kind]`
        and `dropped[reason]` their own metrics, scalars and the rest
        `sipscreen_core_events_total{event}`. The adapter's own plain counts
        (`count_out`, `datagrams_in`) are flushed here too.
        """
        self.flush_counts()
        if stats is None:
            return
        self._log_relay_timeouts(stats)
        names = getattr(stats, "__slots__", None) or list(vars(stats))
        for name in names:
            value = getattr(stats, name, None)
            if isinstance(value, dict):
                for k, v in value.items():
                    self._delta((name, str(k)), v)
            else:
                self._delta((name, ""), value)

    def _log_relay_timeouts(self, stats: Any) -> None:
        """Log the requests the core retransmitted for TCP/TLS senders that got no
        response over UDP (proxy/sip/retransmit.py), once a minute at most: a dead
        softswitch under a flood of INVITEs must not flood the log."""
        rr = getattr(stats, "relay_retransmit", None)
        if not rr:
            return
        n408 = rr.get("timeout_408", 0)
        n = n408 + rr.get("timeout_non_invite", 0)
        if n <= self._rtx_logged[0] or time.monotonic() < self._rtx_logged[2]:
            return
        new, new408 = n - self._rtx_logged[0], n408 - self._rtx_logged[1]
        self._rtx_logged = (n, n408, time.monotonic() + 60.0)
        _log.warning(
            "%d request(s) from TCP/TLS senders got no response over UDP in 64*T1 "
            "(%d INVITE answered 408 Request Timeout); the last: %s",
            new,
            new408,
            getattr(stats, "relay_retransmit_last", ""),
        )

    def _delta(self, key: tuple[str, str], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        last = self._core_last.get(key, 0.0)
        if value > last:
            child = self._core_children.get(key)
            if child is None:
                child = self._core_children[key] = self._core_child(key)
            child.inc(value - last)
        self._core_last[key] = float(value)

    def _core_child(self, key: tuple[str, str]) -> Any:
        group, name = key
        if group == "requests_in":
            kind = name.upper() if name.upper() in METHODS else "OTHER"
            return self.sip_messages.labels("in", kind)
        if group == "responses_in":
            return self.sip_messages.labels("in", name)
        if group == "parse_errors":
            return self.parse_errors.labels(name)
        if group == "dropped":
            return self.dropped.labels(name)
        event = f"{group}_{name}" if name else group
        return self.core_stats.labels(event)

    def set_snapshot(self, entries: int | None, loaded_at: float | None) -> None:
        if entries is not None:
            self.snapshot_entries.set(entries)
        if loaded_at:
            self.snapshot_loaded_timestamp.set(loaded_at)
