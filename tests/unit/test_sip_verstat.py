"""proxy/sip/verstat.py and ProxyCore's Forward: ATIS-1000074 verstat edits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.sip.core import CoreConfig, Forward, ProxyCore
from proxy.sip.message import Request, parse
from proxy.sip.verstat import add_verstat, strip_verstat, verstat_edits
from tests.unit.test_sip_core import PROXY, SECRET, SS, invite

P = b"TN-Validation-Passed"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (
            b" <sip:+12125551234@ex.com;user=phone>",
            b" <sip:+12125551234;verstat=%s@ex.com;user=phone>",
        ),
        (b' "A" <tel:+12125551234>', b' "A" <tel:+12125551234;verstat=%s>'),
        (b"<tel:+12125551234;npdi>", b"<tel:+12125551234;verstat=%s;npdi>"),
        (b"sip:+12125551234@ex.com;tag=1", b"sip:+12125551234;verstat=%s@ex.com;tag=1"),
        (
            b"<sip:+1212@a>, <tel:+1212>",
            b"<sip:+1212;verstat=%s@a>, <tel:+1212;verstat=%s>",
        ),
        (b"<sip:ex.com>", b"<sip:ex.com>"),  # no user part: nothing to mark
        (b"<SIPS:+1@h>", b"<SIPS:+1;verstat=%s@h>"),
    ],
)
def test_add(value: bytes, want: bytes) -> None:
    assert add_verstat(value, P) == want.replace(b"%s", P)


def test_strip() -> None:
    assert strip_verstat(b"<sip:+1;verstat=TN-Validation-Passed@h>") == b"<sip:+1@h>"
    assert strip_verstat(b"<tel:+1;VerStat = x;npdi>") == b"<tel:+1;npdi>"
    assert strip_verstat(b"<sip:+1@h>;verstat=x;tag=2") == b"<sip:+1@h>;tag=2"


@given(st.binary(max_size=200))
def test_never_raises(value: bytes) -> None:
    assert b"verstat" not in strip_verstat(value).lower() or b"verstat" in value.lower()
    add_verstat(value, P)


def _req(extra: bytes = b"") -> Request:
    req = parse(invite(extra=extra))
    assert isinstance(req, Request)
    return req


def test_edits_target_pai_strip_everywhere() -> None:
    req = _req(b"P-Asserted-Identity: <sip:+13035551111;verstat=x@example.net>")
    # no verstat to add: only the upstream one is stripped
    (edit,) = verstat_edits(req, None) or ()
    assert req.raw[edit[0] : edit[1]] == b" <sip:+13035551111;verstat=x@example.net>"
    assert edit[2] == b" <sip:+13035551111@example.net>"
    (edit,) = verstat_edits(req, P) or ()
    assert edit[2] == b" <sip:+13035551111;verstat=" + P + b"@example.net>"
    # without PAI the From is the target
    (edit,) = verstat_edits(_req(), P) or ()
    assert edit[2] == b' "Alice" <sip:+13035551111;verstat=' + P + b"@example.net>;tag=from1"
    # nothing to add and nothing to strip: None
    assert verstat_edits(_req(), None) is None


def test_core_applies_forward_edits_with_its_own() -> None:
    class Screen:
        def __call__(self, req: Request, src: tuple[str, int], transport: str) -> Forward | None:
            edits = verstat_edits(req, P)
            return None if edits is None else Forward(edits)

    core = ProxyCore(CoreConfig(PROXY[0], PROXY[1], SS, secret=SECRET), Screen())
    data = invite(
        via_params=b";rport",
        extra=b"P-Asserted-Identity: <tel:+13035551111;verstat=No-TN-Validation>",
    )
    core.datagram_received(data, ("127.0.0.9", 5099), "udp", 1.0)
    (out,) = core.datagrams_to_send()
    msg = parse(out[0])
    assert isinstance(msg, Request)
    assert msg.header(b"p-asserted-identity") == [b"<tel:+13035551111;verstat=" + P + b">"]
    assert msg.vias[1].rport == b"5099" and msg.max_forwards == 69
    assert msg.from_.raw == b'"Alice" <sip:+13035551111@example.net>;tag=from1'
    assert core.stats.forwarded_requests == 1


def test_odd_case_upstream_verstat_is_stripped() -> None:
    """URI parameter names are case-insensitive (RFC 3261 §19.1.4): an upstream
    ';VeRsTaT=' cannot slip past the quick check."""
    req = _req(b"P-Asserted-Identity: <sip:+13035551111;VeRsTaT=TN-Validation-Passed@h>")
    (edit,) = verstat_edits(req, None) or ()
    assert edit[2] == b" <sip:+13035551111@h>"
