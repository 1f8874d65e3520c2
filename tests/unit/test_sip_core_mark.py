"""The STIR/SHAKEN mark header ([shaken] mark_header) is the proxy's own: no
source may send it towards the softswitch, in-dialog requests included (a
caller must not forge a mark on a re-INVITE or an initial non-INVITE; the
screen only sees initial INVITEs). CoreConfig.strip_header."""

from __future__ import annotations

from test_sip_core import CALLER, SS, invite, make, one

from proxy.shaken import mark_edits
from proxy.sip.core import CoreConfig, Forward, ProxyCore
from proxy.sip.message import Request, parse

MARK = "X-Sipscreen-Mark"
FORGED = b"X-Sipscreen-Mark: shaken-policy;case=none;reason=forged"


def _headers(out: bytes) -> Request:
    msg = parse(out)
    assert isinstance(msg, Request)
    return msg


def test_a_forged_mark_on_a_reinvite_is_cut() -> None:
    core, _ = make(strip_header=MARK)
    core.datagram_received(invite(to_tag=b"ss1", extra=FORGED), CALLER, "udp", 0.0)
    out, dest, _ = one(core)
    assert dest == SS
    assert b"X-Sipscreen-Mark" not in out and b"forged" not in out
    assert _headers(out).method == b"INVITE"


def test_every_spelling_and_copy_is_cut_from_an_initial_options() -> None:
    core, _ = make(strip_header=MARK)
    forged = b"x-sipscreen-mark: a\r\nX-SIPSCREEN-MARK : b\r\nX-Sipscreen-Mark: c,\r\n d"
    core.datagram_received(invite(method=b"OPTIONS", body=b"", extra=forged), CALLER, "udp", 0.0)
    out, _, _ = one(core)
    assert b"sipscreen-mark" not in out.lower()
    assert b" d\r\n" not in out  # the folded line went with its header


def test_a_trusted_source_cannot_send_it_either() -> None:
    core, _ = make(
        strip_header=MARK,
        trusted_header="X-Upstream-Provider",
        is_trusted_source=lambda ip: ip == CALLER[0],
    )
    extra = FORGED + b"\r\nX-Upstream-Provider: carrier-a"
    core.datagram_received(invite(to_tag=b"ss1", extra=extra), CALLER, "udp", 0.0)
    out, _, _ = one(core)
    assert b"X-Sipscreen-Mark" not in out
    assert b"X-Upstream-Provider: carrier-a" in out  # the trusted stamp stays


def test_not_configured_nothing_is_cut() -> None:
    core, _ = make()
    core.datagram_received(invite(to_tag=b"ss1", extra=FORGED), CALLER, "udp", 0.0)
    out, _, _ = one(core)
    assert FORGED in out


class _MarkingScreen:
    """What the Screener does for a marked call: cut every arriving mark line
    and add its own (proxy/shaken.py mark_edits)."""

    def __call__(self, req: Request, src: tuple[str, int], transport: str) -> Forward | None:
        edits = mark_edits(req, MARK.encode(), b"shaken-policy;case=unsigned")
        return None if edits is None else Forward(edits)


def test_the_screens_own_cut_and_the_cores_cut_the_same_line_once() -> None:
    cfg = CoreConfig("127.0.0.1", 5060, SS, secret=b"s", strip_header=MARK)
    core = ProxyCore(cfg, _MarkingScreen())
    core.datagram_received(invite(extra=FORGED), CALLER, "udp", 0.0)
    out, _, _ = one(core)
    assert b"forged" not in out
    assert out.count(b"X-Sipscreen-Mark") == 1
    assert b"X-Sipscreen-Mark: shaken-policy;case=unsigned\r\n" in out
    assert _headers(out).header(b"x-sipscreen-mark") == [b"shaken-policy;case=unsigned"]
