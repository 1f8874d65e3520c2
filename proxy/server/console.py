"""What the proxy prints: the log handlers (decisions as bare JSON lines on
stdout, the rest prefixed on stderr) and the start banner."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

from proxy.config import Config
from proxy.screen import DECISION_LOGGER
from proxy.server.bootstrap import monitor_only_providers
from proxy.server.sockets import WorkerSockets

if TYPE_CHECKING:
    from proxy.embedded_redis import EmbeddedRedis

log = logging.getLogger("sipscreen")

# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------


def setup_logging(level: str) -> None:
    """Handlers set once: decisions as bare JSON lines, the rest prefixed."""
    root = logging.getLogger()
    if getattr(root, "_sipscreen", False):
        root.setLevel(level)
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)
    root.setLevel(level)
    dec = logging.getLogger(DECISION_LOGGER)
    dh = logging.StreamHandler(sys.stdout)
    dh.setFormatter(logging.Formatter("%(message)s"))
    dec.addHandler(dh)
    dec.propagate = False
    root._sipscreen = True  # type: ignore[attr-defined]


def _policy_lines(config: Config, monitored: list[str] | str) -> list[str]:
    """Banner lines for the decision policies an operator must know are in force."""
    lines = []
    if config.unmapped_provider_policy == "block":
        what = "BLOCKED (rule unmapped_provider, 47 CFR 64.6305(g))"
    else:
        what = (
            'passed and counted (sipscreen_unmapped_provider_total{action="passed"}, '
            "47 CFR 64.6305(g))"
        )
    lines.append(
        f"sipscreen: unmapped_provider_policy = {config.unmapped_provider_policy}: calls "
        "from a source no trunk maps, or from a provider with no RMD identity, are " + what
    )
    psap = ", ".join(sorted(config.emergency_numbers))
    lines.append(
        f"sipscreen: emergency (47 CFR 64.1200(k)(5)-(6)): calls to {psap}, urn:service:sos[.*]; "
        f"{len(config.emergency_callers)} configured emergency caller(s) + Redis emergency:caller"
    )
    if isinstance(monitored, str):
        lines.append(f"sipscreen: monitor_only providers: {monitored}")
    elif monitored:
        lines.append(
            "sipscreen: monitor_only providers (RMD gate, FDO, notices only counted as "
            f"would_block): {', '.join(monitored)}"
        )
    else:
        lines.append("sipscreen: monitor_only providers: none")
    return lines


def _banner(config: Config, per: list[WorkerSockets], embedded: EmbeddedRedis | None = None) -> str:

    lines = []
    ws = per[0]
    for s in ws.udp:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on udp:{h}:{p} ({config.workers} worker(s))")
    for s in ws.tcp:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on tcp:{h}:{p}")
    for s in ws.tls:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on tls:{h}:{p}")
    sh, sp = config.softswitch
    if config.mode == "redirect":
        lines.append(
            "sipscreen: REDIRECT mode: every INVITE answered (302 or the block), none forwarded"
        )
    else:
        lines.append(f"sipscreen: forwarding to softswitch {config.softswitch_transport}:{sh}:{sp}")
    if config.metrics is not None:
        mh, mp = config.metrics
        lines.append(f"sipscreen: metrics at http://{mh}:{mp}/metrics")
    lines.append(f"sipscreen: redis {config.redis_url} prefix {config.key_prefix!r}")
    if embedded is not None:
        if embedded.persistent:
            lines.append(
                f"sipscreen: embedded redis-server, data kept in {embedded.workdir} "
                "(append-only file on; --data-dir to move it)"
            )
        else:
            lines.append("sipscreen: embedded redis-server, data NOT kept (temporary)")
    lines.append(f"sipscreen: block a number with: {config.block_example()}")
    if config.monitor:
        lines.append("sipscreen: MONITOR mode: nothing is blocked, would-blocks are counted")
    if config.clock_start is not None:
        lines.append(f"sipscreen: REPLAY CLOCK from {_iso_utc(config.clock_start)}")
    lines.extend(_policy_lines(config, monitor_only_providers(config)))
    return "\n".join(lines)


def _iso_utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
