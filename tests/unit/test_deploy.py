"""deploy/: the Grafana dashboard and the Prometheus config name only
metrics the proxy really exports (proxy/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from proxy.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _exported_names() -> set[str]:
    m = Metrics(CollectorRegistry())
    names: set[str] = set()
    for fam in m.registry.collect():
        for s in fam.samples:
            names.add(s.name)
    return names


def test_dashboard_uses_real_metric_names() -> None:
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"sipscreen_[a-z_]+", e)}
    exported = _exported_names()
    assert used, "dashboard queries no sipscreen metric"
    assert used <= exported, used - exported
    # The panels the operator needs are there.
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for word in (
        "verdict",
        "rule",
        "block ratio",
        "decision",
        "sip messages",
        "parse",
        "snapshot",
        "redis",
    ):
        assert word in titles, word


def test_prometheus_scrapes_the_metrics_port() -> None:
    text = (DEPLOY / "prometheus.yml").read_text()
    assert '"127.0.0.1:9060"' in text
    unit = (DEPLOY / "sipscreen.service").read_text()
    assert "ExecStart=" in unit and "sipscreen run" in unit


def _exported_labels() -> dict[str, dict[str, set[str]]]:
    """metric sample name -> label name -> the values exported at start."""
    m = Metrics(CollectorRegistry())
    out: dict[str, dict[str, set[str]]] = {}
    for fam in m.registry.collect():
        for s in fam.samples:
            labels = out.setdefault(s.name, {})
            for k, v in s.labels.items():
                labels.setdefault(k, set()).add(v)
    return out


def test_dashboard_selectors_match_exported_labels() -> None:
    """Every `{label="value"}` / `{label=~"a|b"}` matcher names a label the
    metric has and values it exports (a typo in a value is an empty panel,
    not an error): the operator's panels for allowlist overrides, unmapped
    providers, Redis data lost, TCP limits, rate limiting and retransmission
    suppression, and dropped/truncated records are there."""
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exported = _exported_labels()
    # made by the screener at start (proxy/screen.py), not by Metrics alone
    screener_made = {("rule", "ambiguous_provider_header")}
    for expr in exprs:
        for metric, body in re.findall(r"(sipscreen_[a-z_]+)\{([^}]*)\}", expr):
            for label, op, value in re.findall(r'([a-z_]+)\s*(=~|!=|=)\s*"([^"]*)"', body):
                assert label in exported[metric], (expr, label)
                if op == "!=":
                    continue
                for v in value.split("|") if op == "=~" else [value]:
                    assert v in exported[metric][label] or (label, v) in screener_made, (expr, v)
        for label in re.findall(r"by \(([^)]*)\)", expr):
            names = [n.strip() for n in label.split(",")]
            for metric in re.findall(r"sipscreen_[a-z_]+", expr):
                assert all(n in exported[metric] for n in names), (expr, names)
    text = " ".join(exprs)
    for name in (
        "sipscreen_allowlist_overrides_total",
        "sipscreen_unmapped_provider_total",
        "sipscreen_redis_data_lost",
        "sipscreen_tcp_refused_total",
        "sipscreen_tcp_timeouts_total",
        "sipscreen_tcp_connections",
        "sipscreen_core_events_total",
        "sipscreen_records_dropped_total",
        "sipscreen_records_truncated_total",
        "sipscreen_updates_screened_total",
    ):
        assert name in text, name
    assert "rate_limited" in text and "retransmit_suppressed" in text
