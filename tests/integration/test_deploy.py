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
