"""Render the Grafana dashboard's panels to PNG from a real Prometheus, headless.

Grafana is not in Debian, so this plots what the operator would see: each
panel of deploy/grafana-dashboard.json, each target's expression evaluated by
Prometheus (`query_range`, 1 s steps) over a short run of the real proxy, one
PNG per scenario:

- `blocked_spike`: steady allowed calls, then a burst of calls to a blocked
  caller (the "by rule" panel and the block ratio jump);
- `redis_outage`: the proxy's Redis is stopped for ~20 s and started again
  ("Redis up" goes red, screening continues: the verdict panel stays flat);
- `load_shedding`: the proxy is frozen (SIGSTOP) while a burst of INVITEs
  queues up, then thawed: it sheds part of the burst with 503 (the shed and
  5xx lines).

Everything binds to 127.0.0.1: a private redis-server, the proxy, a SIPp
callee and callers, and Debian's `prometheus` (1 s scrapes, temp storage).
Loads are small (<= 20 calls/s) and each scenario lasts about a minute.
matplotlib is needed (`pip install matplotlib`); it is not a dependency of
sipscreen or its tests.

    python3 deploy/render_dashboard.py --out /tmp/dashboard [--scenario blocked_spike]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from sipscreen_testlib import (  # noqa: E402
    SIPP_DIR,
    ProxyProcess,
    RedisServer,
    _sipp,
    free_tcp_port,
    free_udp_port,
    run_sipp,
    write_callers,
    write_config,
)

CALLEE = "+13125557000"
BLOCKED = "+12127369999"
ALLOWED = [f"+1212736{4000 + i:04d}" for i in range(20)]
SCENARIOS = ("blocked_spike", "redis_outage", "load_shedding")


class Stack:
    """Private Redis, SIPp callee, the proxy and Prometheus, all on loopback."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.redis = RedisServer(free_tcp_port(), work)
        self.redis.start()
        import redis

        r = redis.Redis.from_url(self.redis.url)
        r.sadd("sipscreen:block:caller", BLOCKED)
        r.close()
        uas_port = free_udp_port()
        self.uas = subprocess.Popen(
            [_sipp(), "-sf", str(SIPP_DIR / "uas_rr.xml"), "-i", "127.0.0.1", "-p", str(uas_port)]
            + ["-t", "u1", "-nostdin", "-timeout", "600s"],
            cwd=str(work),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port, mport = free_udp_port(), free_tcp_port()
        cfg = write_config(
            work / "sipscreen.toml",
            proxy={
                "listen": [f"udp:127.0.0.1:{port}"],
                "softswitch": f"udp:127.0.0.1:{uas_port}",
                "workers": 1,
                "overload_queue_kib": 64,
                "log_level": "INFO",
            },
            redis={"url": self.redis.url, "key_prefix": "sipscreen:", "embedded": False},
            metrics={"listen": f"127.0.0.1:{mport}"},
        )
        self.proxy = ProxyProcess(cfg, port, mport, [], work)
        self.proxy.start()
        self.prom_port = free_tcp_port()
        pcfg = work / "prometheus.yml"
        pcfg.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: sipscreen\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        )
        prom = shutil.which("prometheus")
        if prom is None:
            raise SystemExit("prometheus not installed (apt-get install prometheus)")
        self.prom = subprocess.Popen(
            [
                prom,
                f"--config.file={pcfg}",
                f"--storage.tsdb.path={work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prom_port}",
            ],
            cwd=str(work),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.api("query", query="up")["data"]["result"]:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        self._stop_traffic = threading.Event()
        self._traffic: threading.Thread | None = None

    def api(self, path: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def calls(self, caller: str, n: int, rate: float) -> None:
        inf = write_callers(self.work / f"c-{uuid.uuid4().hex[:6]}.csv", [(caller, CALLEE)] * n)
        scenario = "uac_block_603.xml" if caller == BLOCKED else "uac_screen.xml"
        run_sipp(
            scenario,
            f"127.0.0.1:{self.proxy.port}",
            self.work,
            calls=n,
            rate=rate,
            inf=inf,
            timeout=30,
        )

    def background(self) -> None:
        """Allowed calls at ~4/s until stop_background()."""

        def loop() -> None:
            i = 0
            while not self._stop_traffic.is_set():
                self.calls(ALLOWED[i % len(ALLOWED)], 8, 4)
                i += 1

        self._traffic = threading.Thread(target=loop, daemon=True)
        self._traffic.start()

    def stop_background(self) -> None:
        self._stop_traffic.set()
        if self._traffic is not None:
            self._traffic.join(40)

    def burst_while_frozen(self, n: int = 300) -> None:
        """The load-shedding recipe of tests/integration/test_overload.py."""
        ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ua.bind(("127.0.0.1", 0))
        lport = ua.getsockname()[1]
        assert self.proxy.proc is not None
        pid = self.proxy.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            for i in range(n):
                msg = (
                    f"INVITE sip:{CALLEE}@127.0.0.1:{self.proxy.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <sip:+12127368{i % 1000:03d}@127.0.0.1:{lport}>;tag=r{i}\r\n"
                    f"To: <sip:{CALLEE}@127.0.0.1:{self.proxy.port}>\r\n"
                    f"Call-ID: render-{i}-{uuid.uuid4().hex}\r\n"
                    "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
                )
                ua.sendto(msg.encode(), ("127.0.0.1", self.proxy.port))
            time.sleep(0.1)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(2)
        ua.close()

    def close(self) -> None:
        self.stop_background()
        for p in (self.prom, self.uas):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.proxy.stop()
        self.redis.stop()


def run_scenario(name: str, stack: Stack) -> tuple[float, float, list[tuple[float, str]]]:
    """Drive one scenario; returns its window and the event marks."""
    events: list[tuple[float, str]] = []
    t0 = time.time()
    stack.background()
    time.sleep(20)
    if name == "blocked_spike":
        events.append((time.time(), "blocked burst"))
        stack.calls(BLOCKED, 100, 20)
        time.sleep(25)
    elif name == "redis_outage":
        events.append((time.time(), "Redis stopped"))
        stack.redis.stop()
        time.sleep(20)
        events.append((time.time(), "Redis started"))
        stack.redis.start()
        time.sleep(20)
    elif name == "load_shedding":
        events.append((time.time(), "frozen + 300 INVITEs"))
        stack.burst_while_frozen()
        time.sleep(25)
    stack.stop_background()
    return t0, time.time(), events


def concrete(expr: str, window: str) -> str:
    """Grafana's interval variables and the panels' rate windows ([1m], [5m])
    set to `window`: a one-minute run is drawn the way Grafana draws a zoomed
    range ($__rate_interval shrinks with it); the [1h] stats are kept."""
    for var in ("$__rate_interval", "$__interval", "$__range", "${__rate_interval}", "1m", "5m"):
        expr = expr.replace(f"[{var}]", f"[{window}]")
    return expr


def legend(fmt: str | None, metric: dict[str, str], expr: str) -> str:
    if not fmt:
        return expr[:40]
    out = fmt
    for k, v in metric.items():
        out = out.replace("{{" + k + "}}", v)
    return out


PALETTE = {"green": "#e3f4e1", "red": "#fbd5d5", "orange": "#fde6c8", "yellow": "#fdf6c8"}
# Grafana's default when a panel sets no thresholds: green, red from 80.
DEFAULT_STEPS = [{"color": "green", "value": None}, {"color": "red", "value": 80}]


def stat_colour(panel: dict[str, Any], value: float) -> str:
    """The colour Grafana gives a stat value: its value mapping, else the
    last threshold step at or below it (the dashboard's own settings)."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    for mapping in defaults.get("mappings", []):
        hit = mapping.get("options", {}).get(f"{value:g}")
        if mapping.get("type") == "value" and hit and hit.get("color"):
            return str(hit["color"])
    steps = defaults.get("thresholds", {}).get("steps") or DEFAULT_STEPS
    colour = str(steps[0]["color"])
    for step in steps[1:]:
        if value >= float(step["value"]):
            colour = str(step["color"])
    return colour if colour in PALETTE else "green"


def render(
    name: str,
    stack: Stack,
    t0: float,
    t1: float,
    events: list[tuple[float, str]],
    out: Path,
    window: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    panels = dash["panels"]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5, rows * 3.0))
    for ax, panel in zip(axes.flat, panels, strict=False):
        ax.set_title(panel["title"], fontsize=9)
        ax.tick_params(labelsize=7)
        any_series = False
        for tgt in panel["targets"]:
            data = stack.api(
                "query_range", query=concrete(tgt["expr"], window), start=t0, end=t1, step=1
            )["data"]["result"]
            for s in data:
                xs = [float(v[0]) - t0 for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                if panel["type"] == "stat" or any(y != 0 and not math.isnan(y) for y in ys):
                    ax.plot(xs, ys, label=legend(tgt.get("legendFormat"), s["metric"], tgt["expr"]))
                    any_series = True
        if panel["type"] == "stat" and any_series:
            ys = [y for line in ax.lines for y in line.get_ydata()]
            colours = [stat_colour(panel, y) for y in ys]
            # red if the value was red at any time in the window (a past outage)
            ax.set_facecolor(PALETTE["red"] if "red" in colours else PALETTE[colours[-1]])
            ax.text(0.98, 0.85, f"now {ys[-1]:g}", transform=ax.transAxes, ha="right", fontsize=11)
        elif not any_series:
            ax.text(0.5, 0.5, "all zero", transform=ax.transAxes, ha="center", color="grey")
        else:
            ax.legend(fontsize=6, loc="upper left")
        for t, _label in events:
            ax.axvline(t - t0, color="red", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, t1 - t0)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    marks = ", ".join(f"{label} at {t - t0:.0f} s" for t, label in events)
    fig.suptitle(
        f"sipscreen dashboard, scenario {name} ({marks}); x: seconds; rate windows {window}",
        fontsize=12,
    )
    fig.tight_layout()
    path = out / f"dashboard-{name}.png"
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/sipscreen-dashboard"))
    ap.add_argument("--scenario", choices=SCENARIOS, action="append")
    ap.add_argument("--window", default="10s", help="rate window for [1m]/[5m] (default 10s)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.scenario or SCENARIOS:
        with tempfile.TemporaryDirectory(prefix=f"render-{name}-") as tmp:
            stack = Stack(Path(tmp))
            try:
                t0, t1, events = run_scenario(name, stack)
                time.sleep(2)  # the last scrapes
                print(render(name, stack, t0, t1, events, args.out, args.window))
            finally:
                stack.close()


if __name__ == "__main__":
    main()
