"""The identities of an INVITE through the running proxy, with real SIP.

SIPp caller -> sipscreen (subprocess) -> SIPp callee (the stand-in
softswitch), a real Redis with a per-test prefix. Each call is one INVITE
whose Request-URI, From, To and P-Asserted-Identity are written literally
into a SIPp scenario made from tests/sipp/uac_screen.xml:

- issue 10 item 1: a blocked caller whose Request-URI user does not read as
  a number (escaped, a name, a 7-digit local number) and whose To is 911
  was forwarded as an emergency call; the callee comes from the Request-URI
  only, so the call is screened and refused;
- issue 10 items 3 and 4: escaped digits in From/PAI and a PAI with a
  quoted display name holding `<`, or a `user:password` URI, are the
  blocked number;
- issue 9: a `urn:service:sos` Request-URI (RFC 5031, RFC 6881 §6.2.1) was
  answered 416; it is relayed to the softswitch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import SIPP_DIR, count_received, run_sipp

from rules.engine import decide
from rules.facts import CallFacts
from rules.snapshot import Snapshot

pytestmark = [pytest.mark.sipp]

BLOCKED = "+12027621401"
OTHER = "+13125558000"
CALLEE = "+13125557000"
HOST = "127.0.0.1"

_INVITE_LINE = "INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0"
_DECLINED_ACK_LINE = "ACK sip:[field1]@[remote_ip]:[remote_port] SIP/2.0"
_FROM = "From: <sip:[field0]@[local_ip]:[local_port]>"
_TO = "To: <sip:[field1]@[remote_ip]:[remote_port]>"


def scenario(
    tmp_path: Path,
    ruri: str,
    frm: str,
    to: str,
    pai: str | None = None,
    *,
    extra: str = "",
    refused: int = 603,
) -> Path:
    """uac_screen.xml with this Request-URI, From, To (and PAI, extra header lines)
    written in literally; `refused`: the final response taken instead of 603."""
    text = (SIPP_DIR / "uac_screen.xml").read_text(encoding="iso-8859-1")
    text = text.replace('<recv response="603"', f'<recv response="{refused}"', 1)
    if extra:
        text = text.replace("Max-Forwards: 70\n", "Max-Forwards: 70\n" + extra, 1)
    for needle in (_INVITE_LINE, _DECLINED_ACK_LINE, _FROM, _TO):
        assert needle in text, needle
    text = text.replace(_INVITE_LINE, f"INVITE {ruri} SIP/2.0")
    text = text.replace(_DECLINED_ACK_LINE, f"ACK {ruri} SIP/2.0")
    text = text.replace(_FROM, f"From: {frm}").replace(_TO, f"To: {to}")
    if pai is not None:
        text = text.replace(
            "Max-Forwards: 70\n", f"Max-Forwards: 70\nP-Asserted-Identity: {pai}\n", 1
        )
    text = text.replace("[field0]", "caller").replace("[field1]", "callee")
    path = tmp_path / f"uac-{time.monotonic_ns()}.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


def call(
    tmp_path: Path,
    proxy: Any,
    ruri: str,
    frm: str,
    to: str,
    pai: str | None = None,
    **kw: Any,
) -> Any:
    res = run_sipp(
        str(scenario(tmp_path, ruri, frm, to, pai, **kw)),
        f"{HOST}:{proxy.port}",
        tmp_path,
        calls=1,
        rate=1,
    )
    assert res.successful == 1, res.stderr + res.messages[-3000:]
    return res


@pytest.fixture
def proxy_and_uas(
    key_prefix: str, redis_url: str, redis_client: Any, start_proxy: Any, sipp_uas: Any
) -> tuple[Any, Any]:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    uas = sipp_uas("uas_rr.xml")
    return start_proxy(uas.port, redis_url, key_prefix), uas


@pytest.mark.parametrize(
    "ruri",
    [
        f"sip:+1%32125552671@{HOST}",  # escaped digits (the softswitch reads +12125552671)
        f"sip:bob@{HOST}",
        f"sip:5552671@{HOST}",
    ],
)
def test_to_911_does_not_make_a_blocked_caller_an_emergency_call(
    tmp_path: Path, proxy_and_uas: tuple[Any, Any], ruri: str
) -> None:
    """Issue 10 item 1: with `To: <sip:911@host>` the call skipped every rule."""
    proxy, uas = proxy_and_uas
    res = call(tmp_path, proxy, ruri, f"<sip:{BLOCKED}@{HOST}>;tag=1", f"<sip:911@{HOST}>")
    assert count_received(res.messages, "SIP/2.0 603") >= 1
    assert uas.received("INVITE") == 0


@pytest.mark.parametrize(
    ("frm", "pai"),
    [
        (f"<sip:+1%32027621401@{HOST}>;tag=1", None),
        (f"<sip:%2B12027621401@{HOST}>;tag=1", None),
        (
            f"<sip:{OTHER}@{HOST}>;tag=1",
            "<sip:" + "".join(f"%{ord(c):02X}" for c in BLOCKED) + f"@{HOST}>",
        ),
        (f"<sip:{OTHER}@{HOST}>;tag=1", f'"a<sip:{OTHER}@h>" <sip:{BLOCKED}@{HOST}>'),
        (f"<sip:{OTHER}@{HOST}>;tag=1", f'"a,<sip:{OTHER}@h>" <sip:{BLOCKED}@{HOST}>'),
        (f"<sip:{OTHER}@{HOST}>;tag=1", f"<sip:{BLOCKED}:x@{HOST}>"),
    ],
    ids=[
        "from_escaped_digit",
        "from_escaped_plus",
        "pai_all_escaped",
        "pai_quoted_lt",
        "pai_quoted_comma",
        "pai_password",
    ],
)
def test_blocked_caller_in_escaped_or_quoted_identities_is_refused(
    tmp_path: Path, proxy_and_uas: tuple[Any, Any], frm: str, pai: str | None
) -> None:
    """Issue 10 items 3 and 4: these were forwarded past block:caller."""
    proxy, uas = proxy_and_uas
    res = call(tmp_path, proxy, f"sip:{CALLEE}@{HOST}", frm, f"<sip:{CALLEE}@{HOST}>", pai)
    assert count_received(res.messages, "SIP/2.0 603") >= 1
    assert uas.received("INVITE") == 0


@pytest.mark.parametrize("ruri", ["urn:service:sos", "urn:service:sos.police", "URN:Service:SOS"])
def test_sos_urn_is_relayed_to_the_softswitch(
    tmp_path: Path, proxy_and_uas: tuple[Any, Any], ruri: str
) -> None:
    """Issue 9: a urn:service:sos Request-URI was answered 416 Unsupported URI Scheme."""
    proxy, uas = proxy_and_uas
    res = call(tmp_path, proxy, ruri, f"<sip:{OTHER}@{HOST}>;tag=1", f"<{ruri}>")
    assert count_received(res.messages, "SIP/2.0 416") == 0
    assert count_received(res.messages, "SIP/2.0 200") >= 1
    assert uas.received("INVITE") == 1
    assert f"INVITE {ruri} SIP/2.0" in uas.messages()


def _engine_knows_sos() -> bool:
    s = Snapshot.empty()
    s.apply("block:caller", "add", [BLOCKED])
    return not decide(s, CallFacts(BLOCKED, "urn:service:sos", None), time.time()).blocked


@pytest.mark.skipif(
    not _engine_knows_sos(),
    reason="rules/engine.py does not take urn:service:sos as emergency yet (engine branch)",
)
def test_sos_urn_from_a_blocked_caller_is_never_blocked(
    tmp_path: Path, proxy_and_uas: tuple[Any, Any]
) -> None:
    """47 CFR 64.1200(k): emergency calls are never blocked, by number or by URN."""
    proxy, uas = proxy_and_uas
    ruri = "urn:service:sos.police"
    res = call(tmp_path, proxy, ruri, f"<sip:{BLOCKED}@{HOST}>;tag=1", f"<{ruri}>")
    assert count_received(res.messages, "SIP/2.0 603") == 0
    assert uas.received("INVITE") == 1


@pytest.mark.parametrize(
    ("sources", "extra", "status", "relayed"),
    [
        # an untrusted caller's stamp is cut: the trunk map decides, the softswitch never sees it
        (["10.99.0.0/16"], "X-Upstream-Provider: gone\n", None, True),
        # the trusted SBC's own stamp is honoured (gone: removed from the RMD)
        (["127.0.0.1/32"], "X-Upstream-Provider: gone\n", 603, False),
        # two values from the trusted SBC: 400, never the first one
        (["127.0.0.1/32"], "X-Upstream-Provider: acme\nX-Upstream-Provider: gone\n", 400, False),
        (["127.0.0.1/32"], "X-Upstream-Provider: acme, gone\n", 400, False),
    ],
    ids=["untrusted_cut", "trusted_one", "trusted_two_lines", "trusted_comma_list"],
)
def test_trusted_provider_header(
    tmp_path: Path,
    key_prefix: str,
    redis_url: str,
    redis_client: Any,
    start_proxy: Any,
    sipp_uas: Any,
    sources: list[str],
    extra: str,
    status: int | None,
    relayed: bool,
) -> None:
    """Issue 10 item 5 through the running proxy."""
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    redis_client.hset(
        key_prefix + "provider:gone", mapping={"name": "Gone", "rmd_status": "removed"}
    )
    uas = sipp_uas("uas_rr.xml")
    proxy = start_proxy(
        uas.port,
        redis_url,
        key_prefix,
        sections={"trusted_header": {"name": "X-Upstream-Provider", "sources": sources}},
    )
    res = call(
        tmp_path,
        proxy,
        f"sip:{CALLEE}@{HOST}",
        f"<sip:{OTHER}@{HOST}>;tag=1",
        f"<sip:{CALLEE}@{HOST}>",
        extra=extra,
        refused=status or 603,
    )
    if status is not None:
        assert count_received(res.messages, f"SIP/2.0 {status}") >= 1
    assert uas.received("INVITE") == (1 if relayed else 0)
    if relayed:
        assert "X-Upstream-Provider" not in uas.messages()
