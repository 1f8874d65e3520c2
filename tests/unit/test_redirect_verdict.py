"""proxy/redirect.py ``verdict_headers``: the X-Sipscreen-* lines an SBC routes on,
kept per verdict object, are always the lines built from the screener's last
decision (``_verdict_lines``), whatever verdicts, verification results and
monitor setting come and go."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

from proxy import redirect
from proxy.redirect import _verdict_lines, verdict_headers
from rules.facts import CallFacts
from rules.verdict import ALLOW_DEFAULT, ALLOW_EMERGENCY, Rule, Verdict


def _facts(verstat: str | None, attest: str | None) -> CallFacts:
    f = CallFacts("+12025550123", "+13125557000", None, "10.0.0.1", "c1", None, False)
    f.verstat, f.attest = verstat, attest
    return f


def test_the_kept_lines_are_the_built_ones() -> None:
    verdicts = [
        ALLOW_DEFAULT,
        ALLOW_EMERGENCY,
        Verdict(True, Rule.RMD_GATE, "not in the RMD"),
        Verdict(False, Rule.ALLOWLIST, "allowlisted", would_block=Rule.CALLER_BLOCK),
        Verdict(False, Rule.DEFAULT, "monitor-only", would_block=Rule.RMD_GATE),
    ]
    shaken = [(None, None), ("TN-Validation-Passed", "A"), ("TN-Validation-Failed", None)]
    seen: dict[bytes, int] = {}
    for _round in range(2):  # the second round answers from what the first kept
        for v, (verstat, attest), monitor in itertools.product(verdicts, shaken, (False, True)):
            facts = _facts(verstat, attest)
            screener = SimpleNamespace(last=(v, facts), _monitor=monitor)
            got = verdict_headers(screener)
            assert got == _verdict_lines(v, facts, monitor)
            seen[got] = seen.get(got, 0) + 1
    assert b"X-Sipscreen-Verdict: monitor\r\n" in b"".join(seen)
    assert b"X-Sipscreen-Verstat: TN-Validation-Passed\r\n" in b"".join(seen)
    assert verdict_headers(SimpleNamespace(last=None)) == b"X-Sipscreen-Verdict: unscreened\r\n"


def test_verdicts_built_per_call_never_get_another_ones_lines() -> None:
    """A block's verdict is built per call and freed after it: its id comes back
    for another verdict. The kept entry holds its verdict (no reuse while it is
    kept) and is checked by identity; the table stays bounded."""
    facts = _facts(None, None)
    rules = [Rule.RMD_GATE, Rule.CALLER_BLOCK, Rule.FDO, Rule.PROVIDER_BLOCK]
    for i in range(3 * redirect._LINES_MAX):
        v = Verdict(i % 2 == 0, rules[i % len(rules)], f"r{i}")
        screener = SimpleNamespace(last=(v, facts), _monitor=False)
        assert verdict_headers(screener) == _verdict_lines(v, facts, False)
        del v, screener
        assert len(redirect._LINES) <= redirect._LINES_MAX
