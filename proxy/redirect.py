"""Redirect mode glue: the configuration and the screener's verdict -> RedirectCore.

How this works: `make_core(config, core_config, screener, metrics)` builds the
worker's SIP core for `config.mode`: a `ProxyCore` (inline) or a
`RedirectCore` (proxy/sip/redirect.py) with the `[redirect]` settings and
`verdict_headers`, and sets `sipscreen_mode{mode}` to 1 so the mode is
visible next to the usual metrics. `verdict_headers(screener)` turns the
screener's last decision (`Screener.last`, set on every INVITE it decides)
into the header lines an SBC routes on (README "Redirect mode"):

    X-Sipscreen-Verdict: allow | would-block | monitor | block | unscreened
    X-Sipscreen-Rule: <rule label>          (the would-block rule for would-block)
    X-Sipscreen-Citation: <citation>        (e.g. 47 CFR 64.6305(g))
    X-Sipscreen-Verstat: <ATIS-1000074 verstat>   ([shaken] on only)
    X-Sipscreen-Attest: A | B | C           ([shaken] on, Identity verified)
"""

from __future__ import annotations

from typing import Any

from proxy.config import Config
from proxy.sip.core import CoreConfig, ProxyCore, Screen
from proxy.sip.redirect import RedirectConfig, RedirectCore

__all__ = ["make_core", "redirect_config", "verdict_headers"]

_UNSCREENED = b"X-Sipscreen-Verdict: unscreened\r\n"


# verdict_headers' answers by the verdict object (most calls share one of the
# pre-built verdicts, rules/verdict.py): id -> (verdict, verstat, attest,
# monitor, lines). The entry holds the verdict, so its id is not reused while
# it is here; bounded (a verdict built per call, a block's, comes and goes).
_LINES: dict[int, tuple[Any, Any, Any, bool, bytes]] = {}
_LINES_MAX = 256


def verdict_headers(screener: object) -> bytes:
    """The X-Sipscreen-* lines of ``screener.last`` (module docstring)."""
    last = getattr(screener, "last", None)
    if last is None:
        return _UNSCREENED
    verdict, facts = last
    monitor = getattr(screener, "_monitor", False)
    got = _LINES.get(id(verdict))
    if (
        got is not None
        and got[0] is verdict
        and got[1] == facts.verstat
        and got[2] == facts.attest
        and got[3] == monitor
    ):
        return got[4]
    lines = _verdict_lines(verdict, facts, monitor)
    if len(_LINES) >= _LINES_MAX:
        _LINES.clear()
    _LINES[id(verdict)] = (verdict, facts.verstat, facts.attest, monitor, lines)
    return lines


def _verdict_lines(verdict: Any, facts: Any, monitor: bool) -> bytes:
    """verdict_headers' lines, built (the cache's reference)."""
    rule = verdict.rule
    if verdict.blocked:
        word = "monitor" if monitor else "block"
    elif verdict.would_block is not None and rule.label != "allowlist":
        word, rule = "would-block", verdict.would_block
    else:
        word = "allow"
    lines = (
        f"X-Sipscreen-Verdict: {word}\r\n"
        f"X-Sipscreen-Rule: {rule.label}\r\n"
        f"X-Sipscreen-Citation: {rule.citation}\r\n"
    )
    if facts.verstat:
        lines += f"X-Sipscreen-Verstat: {facts.verstat}\r\n"
    if facts.attest:
        lines += f"X-Sipscreen-Attest: {facts.attest}\r\n"
    return lines.encode("utf-8")


def _no_headers(screener: object) -> bytes:
    return b""


def redirect_config(config: Config) -> RedirectConfig:
    target = config.redirect_target
    return RedirectConfig(
        target=target.encode("ascii") if target else None,
        allow_status=config.redirect_allow_status,
        allow_reason=config.redirect_allow_reason.encode("ascii"),
        verdict_headers=verdict_headers if config.redirect_verdict_headers else _no_headers,
    )


def _mark_mode(metrics: Any, mode: str) -> None:
    """sipscreen_mode{mode} = 1."""
    gauge = getattr(metrics, "mode", None)
    if gauge is not None:
        gauge.labels(mode).set(1)


def make_core(config: Config, core_config: CoreConfig, screen: Screen, metrics: Any) -> ProxyCore:
    """The SIP core of one worker for ``config.mode``."""
    _mark_mode(metrics, config.mode)
    if config.mode == "redirect":
        return RedirectCore(core_config, screen, redirect_config(config))
    return ProxyCore(core_config, screen)
