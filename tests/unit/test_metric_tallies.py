"""The INVITE path's plain-int tallies (proxy/metrics.py Tally, HistogramTally)
export exactly what the Prometheus children would have counted themselves."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from proxy.metrics import DECISION_BUCKETS, HistogramTally, Metrics, Tally
from rules.verdict import Rule


def _buckets(h: Histogram) -> list[float]:
    return [b.get() for b in h._buckets]


def test_histogram_tally_buckets_as_observe_does() -> None:
    reg = CollectorRegistry()
    direct = Histogram("direct", "d", buckets=DECISION_BUCKETS, registry=reg)
    tallied = Histogram("tallied", "t", buckets=DECISION_BUCKETS, registry=reg)
    tally = HistogramTally(tallied)
    values = [0.0, 5e-7, *DECISION_BUCKETS, *(b * 1.0001 for b in DECISION_BUCKETS), 1.0, 99.0]
    for v in values:
        direct.observe(v)
        tally.observe(v)
    assert _buckets(tallied) == [0.0] * len(_buckets(tallied))  # nothing until flushed
    tally.flush()
    assert _buckets(tallied) == _buckets(direct)
    assert tallied._sum.get() == direct._sum.get()
    tally.flush()  # a second flush adds nothing
    assert _buckets(tallied) == _buckets(direct)


def test_tally_adds_its_count_once() -> None:
    c = Counter("c", "c", registry=CollectorRegistry())
    t = Tally(c)
    for _ in range(5):
        t.inc()
    t.flush()
    t.flush()
    assert c._value.get() == 5 and t.n == 0


def test_flush_counts_exports_the_invite_tallies() -> None:
    m = Metrics(CollectorRegistry())
    m.invites_allowed[Rule.DEFAULT].inc()
    m.decision_tally.observe(3e-6)
    m.flush_counts()
    labels = {"verdict": "allowed", "rule": "default", "citation": Rule.DEFAULT.citation}
    assert m.registry.get_sample_value("sipscreen_invites_total", labels) == 1
    assert m.registry.get_sample_value("sipscreen_decision_seconds_count") == 1
    assert m.registry.get_sample_value("sipscreen_decision_seconds_bucket", {"le": "5e-06"}) == 1
