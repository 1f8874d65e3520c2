"""RFC 4475 torture messages: each file's expected parse result and proxy outcome.

The table is the RFC's verdict per message (README.md in tests/data/rfc4475):
``parse`` is "request", "response" or the SIPError status; ``core`` is what the
proxy does with it: "forward" (to the softswitch), an int (answered locally
with that status), or "drop".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.core import Answer, CoreConfig, ProxyCore
from proxy.sip.message import Request, Response, SIPError, parse

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
# The steering copy beside the checkout (../shared), when present.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "sip-torture"
SS = ("127.0.0.1", 5070)
SRC = ("192.0.2.77", 5060)

# file: (parse expectation, core outcome)
EXPECTED: dict[str, tuple[str | int, str | int]] = {
    # 3.1.1 valid messages
    "wsinv": ("request", "forward"),
    "intmeth": ("request", "forward"),
    "esc01": ("request", "forward"),
    "escnull": ("request", "forward"),
    "esc02": ("request", "forward"),
    "lwsdisp": ("request", "forward"),
    "longreq": ("request", "forward"),
    "dblreq": ("request", "forward"),
    "semiuri": ("request", "forward"),
    "transports": ("request", "forward"),
    "mpart01": ("request", "forward"),
    "unreason": ("response", "drop"),  # valid, but its top Via is not ours (§16.7)
    "noreason": ("response", "drop"),
    # 3.1.2 invalid messages
    "badinv01": (400, 400),
    "clerr": (400, 400),
    "ncl": (400, 400),
    "scalar02": (400, 400),
    "scalarlg": (0, "drop"),
    "quotbal": (400, 400),
    "ltgtruri": (400, 400),
    "lwsruri": (400, 400),
    "lwsstart": (400, 400),
    "trws": (400, 400),
    "escruri": (400, 400),
    "baddate": (400, 400),
    "regbadct": (400, 400),
    "badaspec": (400, 400),
    "baddn": (400, 400),
    "badvers": (505, 505),
    "mismatch01": (400, 400),
    "mismatch02": (400, 400),
    "bigcode": (0, "drop"),
    # 3.2 transaction layer
    "badbranch": ("request", "forward"),
    # 3.3 application layer
    "insuf": (400, 400),
    "unkscm": ("request", 416),
    "novelsc": ("request", 416),
    # unksm2: Request-URI is sip:, only To/From/Contact use other schemes; RFC 4475
    # §3.3.3 says proxies treat it like any other request (a registrar would 400)
    "unksm2": ("request", "forward"),
    "bext01": ("request", 420),
    "invut": ("request", "forward"),
    "regaut01": ("request", "forward"),
    "multi01": (400, 400),
    "mcl01": (400, 400),
    "bcast": ("response", "drop"),
    "zeromf": ("request", 483),
    "cparam01": ("request", "forward"),
    "cparam02": ("request", "forward"),
    "regescrt": ("request", "forward"),
    "sdp01": ("request", "forward"),
    # 3.4 backward compatibility
    "inv2543": ("request", "forward"),
}


def test_table_covers_all_49_files() -> None:
    names = sorted(p.stem for p in DATA.glob("*.dat"))
    assert len(names) == 49
    assert names == sorted(EXPECTED)


def test_copy_is_byte_identical() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared torture set not present")
    for p in SHARED.glob("*"):
        assert (DATA / p.name).read_bytes() == p.read_bytes(), p.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse(name: str) -> None:
    data = (DATA / f"{name}.dat").read_bytes()
    want, _ = EXPECTED[name]
    if want == "request":
        assert isinstance(parse(data), Request)
    elif want == "response":
        assert isinstance(parse(data), Response)
    else:
        with pytest.raises(SIPError) as ei:
            parse(data)
        assert ei.value.status == want


def _screen(req: Request, src: tuple[str, int], transport: str) -> Answer | None:
    return None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_core_outcome(name: str) -> None:
    data = (DATA / f"{name}.dat").read_bytes()
    _, want = EXPECTED[name]
    core = ProxyCore(CoreConfig("127.0.0.1", 5060, SS), _screen)
    core.datagram_received(data, SRC, "udp", 1000.0)
    out = core.datagrams_to_send()
    if want == "drop":
        assert out == []
        assert sum(core.stats.dropped.values()) == 1
    elif want == "forward":
        assert len(out) == 1
        fwd, dest, _ = out[0]
        assert dest == SS
        msg = parse(fwd)
        assert isinstance(msg, Request)
        assert msg.vias[0].sent_by == b"127.0.0.1:5060"
    else:
        assert len(out) == 1
        resp, dest, transport = out[0]
        assert dest[0] == SRC[0] and transport == "udp"
        assert resp.startswith(b"SIP/2.0 %d " % want)
        assert resp.endswith(b"Content-Length: 0\r\n\r\n")
        # RFC 3261 §8.2.6.2: the Via lines and Call-ID come back as received
        assert b"\r\nVia: " in resp or b"\r\nVia:" in resp
        if want in (416, 420, 483):  # answers to well-formed requests parse again
            parsed = parse(resp)
            assert isinstance(parsed, Response) and parsed.status == want
            assert parsed.to.tag is not None


def test_dblreq_forwards_only_the_register() -> None:
    core = ProxyCore(CoreConfig("127.0.0.1", 5060, SS), _screen)
    core.datagram_received((DATA / "dblreq.dat").read_bytes(), SRC, "udp", 0.0)
    [(fwd, _, _)] = core.datagrams_to_send()
    assert b"INVITE" not in fwd
    assert fwd.endswith(b"Content-Length: 0\r\n\r\n")


def test_bext01_lists_unsupported_options() -> None:
    core = ProxyCore(CoreConfig("127.0.0.1", 5060, SS), _screen)
    core.datagram_received((DATA / "bext01.dat").read_bytes(), SRC, "udp", 0.0)
    [(resp, _, _)] = core.datagrams_to_send()
    msg = parse(resp)
    assert msg.header(b"unsupported") == [b"noProxiesSupportThis, norDoAnyProxiesSupportThis"]


def test_bcast_with_our_via_on_top_is_not_sent_to_broadcast() -> None:
    core = ProxyCore(CoreConfig("127.0.0.1", 5060, SS), _screen)
    data = (DATA / "bcast.dat").read_bytes()
    # the response as it would come back through us: our Via above, then bcast's Vias
    ours = b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsc0123456789abcdef\r\n"
    eol = data.find(b"\r\n") + 2
    # drop 192.0.2.198's Via so that the broadcast one is next
    rest = data[eol:].replace(b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\n", b"")
    core.datagram_received(data[:eol] + ours + rest, SS, "udp", 0.0)
    assert core.datagrams_to_send() == []
    assert core.stats.dropped["broadcast"] == 1
