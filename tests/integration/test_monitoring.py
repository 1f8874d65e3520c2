"""The monitoring stack in deploy/: compose file, container file, Grafana
provisioning, alert rules, and every dashboard query and alert expression
evaluated by a real Prometheus scraping a running proxy.

No container runtime or registry pull is needed: the compose file and the
Containerfile are checked statically. The alert rules go through Debian's
`promtool` (`check rules`, `test rules` with deploy/alerts_test.yml); the live
test starts Debian's `prometheus` on 127.0.0.1 (free port, temp storage, 1 s
scrapes) against the proxy under a few SIPp calls, some blocked. Both skip
with the reason when the `prometheus` package is not installed
(scripts/test installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sipscreen_testlib import free_tcp_port, run_sipp, wait_for, write_callers

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROOT = DEPLOY.parent

ALLOWED = [f"+1212736{4000 + i:04d}" for i in range(20)]
BLOCKED = "+12127369999"
CALLEE = "+13125557000"


def _dashboard() -> dict[str, Any]:
    return dict(json.loads((DEPLOY / "grafana-dashboard.json").read_text()))


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/test installs it)")
    return tool


# -- static checks: compose, container file, provisioning ---------------------


def test_compose_file_services_ports_and_mounts() -> None:
    doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"sipscreen", "redis", "prometheus", "grafana"}
    assert services["sipscreen"]["build"]["dockerfile"] == "deploy/Containerfile"
    assert (DEPLOY / services["sipscreen"]["build"]["context"] / "deploy/Containerfile").is_file()
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports", []):
            # host-ip:host-port:container-port[/proto]: loopback only
            assert str(port).startswith("127.0.0.1:"), (name, port)
            published += 1
        for vol in svc.get("volumes", []):
            src = str(vol).split(":", 1)[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), (name, vol)
    assert published >= 5
    # Prometheus loads the alert rules, Grafana the datasource and the dashboard.
    prom_vols = " ".join(services["prometheus"]["volumes"])
    assert "./alerts.yml:/etc/prometheus/alerts.yml" in prom_vols
    graf_vols = services["grafana"]["volumes"]
    assert any(v.startswith("./grafana-dashboard.json:") for v in graf_vols)
    dash_mount = next(v for v in graf_vols if v.startswith("./grafana-dashboard.json:"))
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/sipscreen.yaml").read_text()
    )["providers"]
    assert dash_mount.split(":")[1].startswith(providers[0]["options"]["path"] + "/")
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    assert datasources[0]["type"] == "prometheus"
    assert datasources[0]["url"] == "http://prometheus:9090"
    # The scrape config inside compose names the sipscreen service, whose
    # config listens for metrics inside its container.
    prom = yaml.safe_load((DEPLOY / "compose/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["sipscreen:9060"]
    assert 'listen = "0.0.0.0:9060"' in (DEPLOY / "compose/sipscreen.toml").read_text()


def test_compose_sipscreen_config_loads() -> None:
    from proxy.config import load_config

    cfg = load_config(str(DEPLOY / "compose/sipscreen.toml"), {})
    assert cfg.redis_url == "redis://redis:6379/0"


def test_containerfile_is_multistage_non_root_and_builds_the_extensions() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M)
    assert stages == ["build", "runtime"]
    build, runtime = text.split("\nFROM ", 2)[1:]
    # build stage: compiler, pinned install, the C extensions import
    assert "gcc" in build
    assert "-c constraints.txt" in build and "COPY pyproject.toml setup.py constraints.txt" in build
    assert "import proxy.sip._scan, proxy._udpio" in build
    # runtime stage: no compiler, the venv copied, a non-root USER
    assert "gcc" not in runtime
    assert "COPY --from=build /opt/sipscreen /opt/sipscreen" in runtime
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"useradd .*--uid 10001", runtime)
    # in-place built extensions of the checkout never reach the build stage
    ignore = (DEPLOY / "Containerfile.dockerignore").read_text().split()
    assert "**/*.so" in ignore and ".venv" in ignore


def test_dashboard_datasource_is_a_variable_for_provisioning() -> None:
    """A provisioned dashboard does not resolve `__inputs`: the panels name
    the `datasource` template variable instead (works for import too)."""
    dash = _dashboard()
    assert "__inputs" not in dash
    var = dash["templating"]["list"][0]
    assert var["name"] == "datasource" and var["type"] == "datasource"
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_outage_stats_turn_red_at_a_glance() -> None:
    """Grafana's default thresholds (green, red from 80) would show Redis up
    = 0 green: the panels an outage shows on set their own."""
    panels = {p["title"]: p for p in _dashboard()["panels"]}
    up = panels["Redis up"]["fieldConfig"]["defaults"]
    assert up["thresholds"]["steps"] == [
        {"color": "red", "value": None},
        {"color": "green", "value": 1},
    ]
    lost = panels["Redis data lost"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert lost[-1] == {"color": "red", "value": 1}


# -- alert rules through promtool ---------------------------------------------


def test_alert_rules_check_and_unit_tests() -> None:
    tool = _promtool()
    names = {r["alert"] for r in _alert_rules()}
    assert {
        "SipscreenRedisFeedDown",
        "SipscreenSnapshotStale",
        "SipscreenRuleBlockingMoreThanUsual",
        "Sipscreen5xxAnswers",
        "SipscreenLoadShedding",
        "SipscreenRedisDataLost",
        "SipscreenShakenCertFetchFailures",
    } <= names
    tested = set(re.findall(r"alertname: (\S+)", (DEPLOY / "alerts_test.yml").read_text()))
    assert names <= tested, names - tested
    for args in (
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "config", "prometheus.yml"],
        ["check", "config", "--syntax-only", "compose/prometheus.yml"],
    ):
        res = subprocess.run(
            [tool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
        )
        assert res.returncode == 0, (args, res.stdout, res.stderr)


# -- live: Prometheus scraping a running proxy --------------------------------


class Prometheus:
    """Debian's prometheus on 127.0.0.1, temp storage, 1 s scrape/evaluation."""

    def __init__(self, tmp: Path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus not installed (Debian package; scripts/test installs it)")
        self.port = free_tcp_port()
        cfg = tmp / "prometheus.yml"
        shutil.copy(DEPLOY / "alerts.yml", tmp / "alerts.yml")
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [alerts.yml]\n"
            "scrape_configs:\n  - job_name: sipscreen\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={cfg}",
                    f"--storage.tsdb.path={tmp / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                cwd=str(tmp),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())

    def query(self, expr: str) -> dict[str, Any]:
        body = self.api("query", query=expr)
        assert body["status"] == "success", (expr, body)
        return dict(body["data"])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def factory(target: str) -> Prometheus:
        d = tmp_path / f"prom-{len(started)}"
        d.mkdir()
        p = Prometheus(d, target)
        started.append(p)
        assert wait_for(lambda: p.ready() or p.proc.poll() is not None, 20) and p.ready(), (
            p.log.read_text(errors="replace")
        )
        return p

    yield factory
    for p in started:
        p.stop()


def concrete(expr: str) -> str:
    """A Grafana expression with its interval variables made concrete."""
    for var in ("$__rate_interval", "$__interval", "$__range", "${__rate_interval}"):
        expr = expr.replace(var, "1m")
    assert "$" not in expr, expr
    return expr


@pytest.mark.sipp
def test_dashboard_and_alert_queries_return_data_from_a_live_proxy(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    prometheus_factory: Any,
) -> None:
    """Every target of every panel returns series carrying the labels its
    legendFormat names; every alert expression evaluates (quiet ones may be
    empty) and every rule is loaded healthy. Bounded: 20 allowed calls, 5
    blocked, a few seconds of 1 s scrapes."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (Debian package; scripts/test installs it)")
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(uas.port, redis_url, key_prefix)
    prom = prometheus_factory(f"127.0.0.1:{proxy.metrics_port}")
    # The first scrape (every series at its start value) before any call.
    assert wait_for(lambda: prom.query('up{job="sipscreen"} == 1')["result"], 20)
    allowed = write_callers(tmp_path / "allowed.csv", [(a, CALLEE) for a in ALLOWED])
    blocked = write_callers(tmp_path / "blocked.csv", [(BLOCKED, CALLEE)] * 5)
    target = f"127.0.0.1:{proxy.port}"
    res = run_sipp("uac_screen.xml", target, tmp_path, calls=len(ALLOWED), rate=20, inf=allowed)
    assert res.successful == len(ALLOWED), res.stderr + res.stdout[-2000:]
    # Blocked calls in two rounds with a scrape between, so that rate() and
    # increase() see the blocked count rise between two samples.
    for n in (1, 4):
        res = run_sipp("uac_block_603.xml", target, tmp_path, calls=n, rate=10, inf=blocked)
        assert res.successful == n, res.stderr + res.messages[-2000:]
        assert wait_for(
            lambda: prom.query('sipscreen_invites_total{verdict="blocked"} >= 1')["result"], 10
        )
    # Two scrapes after the calls: the blocked count is in Prometheus and
    # there are two samples of it, so rate() has something to work on.
    assert wait_for(
        lambda: prom.query(
            'count_over_time(sipscreen_invites_total{verdict="blocked"}[1m]) >= 2'
            ' and sipscreen_invites_total{verdict="blocked"} >= 5'
        )["result"],
        20,
    ), prom.log.read_text(errors="replace")[-3000:]
    assert prom.query('up{job="sipscreen"} == 1')["result"]

    for panel in _dashboard()["panels"]:
        for tgt in panel["targets"]:
            expr = concrete(tgt["expr"])
            data = prom.query(expr)
            assert data["result"], (panel["title"], expr)
            wanted = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", tgt.get("legendFormat") or ""))
            for series in data["result"]:
                missing = wanted - set(series["metric"])
                assert not missing, (panel["title"], expr, series["metric"], missing)
    # The blocks are visible by rule and citation (the operator's first panel).
    by_rule = prom.query(
        'sum by (rule, citation) (increase(sipscreen_invites_total{verdict="blocked"}[1m])) > 0'
    )["result"]
    assert by_rule and all(s["metric"]["citation"] for s in by_rule), by_rule

    for rule in _alert_rules():
        data = prom.query(rule["expr"])
        assert data["resultType"] == "vector", rule["alert"]
    # Quiet with a healthy proxy: Redis is up, nothing shed, nothing lost.
    for name in ("SipscreenRedisFeedDown", "SipscreenLoadShedding", "SipscreenRedisDataLost"):
        expr = next(r["expr"] for r in _alert_rules() if r["alert"] == name)
        assert prom.query(expr)["result"] == [], name
    # Prometheus itself evaluated every rule without an error.
    assert wait_for(
        lambda: all(
            r.get("lastEvaluation", "").startswith("20")
            for g in prom.api("rules")["data"]["groups"]
            for r in g["rules"]
        ),
        10,
    )
    rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
    assert len(rules) == len(_alert_rules())
    assert all(r["health"] == "ok" for r in rules), rules
