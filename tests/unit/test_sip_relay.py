"""The lean relay (proxy/sip/relay.py) sends what the full parse sends.

Every message below goes through two cores that differ only in
``CoreConfig.lean_relay``; their output datagrams and their counters must be
identical, except in the one way the lean relay is allowed to differ (it
passes on a message broken in a header it does not read, which the full
parse drops or answers 400). The corpus: the messages of real calls in the shapes SIPp and
pjsua2 write them, every RFC 4475 torture message (identical, no exception),
mutations a lean scanner could misread (other spellings, compact forms,
folding, duplicates, wrong Content-Length, several Via values) and random
byte edits. One test checks that the scanner really takes the common shapes
(else this file would prove nothing). Every test runs twice: with the C code
of proxy/sip/_scan.c (C scan against C parse) and without it (Python
against Python); one more compares the C scan with the Python one directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wire_samples import EDIT_JUNK, EDIT_MODE, SIPP_INVITE, edit

from proxy.sip import message, relay
from proxy.sip.core import CoreConfig, ProxyCore
from proxy.sip.message import Request, parse
from proxy.sip.relay import scan_request, scan_response

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
PROXY = ("127.0.0.1", 5060)
SS = ("127.0.0.2", 5070)
CALLER = ("127.0.0.3", 5061)


@pytest.fixture(autouse=True, params=["c", "python"])
def _implementation(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run each test with the C code (when built) and with the pure-Python code."""
    if request.param == "c" and message._C_PARSE is None:
        pytest.skip("proxy/sip/_scan.c not built")
    old = message.set_accelerated(request.param == "c")
    try:
        yield
    finally:
        message.set_accelerated(old)


def _cores(**kw: object) -> tuple[ProxyCore, ProxyCore]:
    def screen(req: Request, src: tuple[str, int], transport: str) -> None:
        return None

    lean = ProxyCore(CoreConfig(PROXY[0], PROXY[1], SS, secret=b"s", **kw), screen)  # type: ignore[arg-type]
    full = ProxyCore(
        CoreConfig(PROXY[0], PROXY[1], SS, secret=b"s", lean_relay=False, **kw),  # type: ignore[arg-type]
        screen,
    )
    return lean, full


def _stats(core: ProxyCore) -> dict[str, object]:
    s = core.stats
    return {k: getattr(s, k) for k in s.__slots__}


def same(data: bytes, src: tuple[str, int] = CALLER, transport: str = "udp", **kw: object) -> list:
    """Feed ``data`` to a lean and a full core; assert identical effects; return the output."""
    lean, full = _cores(**kw)
    lean.datagram_received(data, src, transport, 1.0)
    full.datagram_received(data, src, transport, 1.0)
    out_lean = lean.datagrams_to_send()
    out_full = full.datagrams_to_send()
    assert out_lean == out_full, (data, out_lean, out_full)
    assert _stats(lean) == _stats(full), data
    return out_lean


def same_or_lazier(data: bytes, src: tuple[str, int]) -> None:
    """Identical effects, or the one difference the lean relay is allowed: the full
    parse refused a message (a header the relay does not read is broken) that the
    lean relay passed on, as Kamailio's lazy parser would, or took and then found
    no route for (its next Via broken too: dropped ``unroutable``)."""
    lean, full = _cores()
    lean.datagram_received(data, src, "udp", 1.0)
    full.datagram_received(data, src, "udp", 1.0)
    out_lean, out_full = lean.datagrams_to_send(), full.datagrams_to_send()
    if out_lean == out_full and _stats(lean) == _stats(full):
        return
    assert sum(full.stats.parse_errors.values()) == 1, (data, out_lean, out_full)
    assert sum(lean.stats.parse_errors.values()) == 0
    if not out_lean:
        assert not out_full and lean.stats.dropped["unroutable"] == 1, data
        return
    assert len(out_lean) == 1 and out_lean[0][2] == "udp"
    assert lean.stats.forwarded_requests + lean.stats.forwarded_responses == 1


# --- a call as the benchmark's SIPp pair writes it --------------------------------


def _forwarded_invite(**kw: object) -> bytes:
    lean, _ = _cores(**kw)
    lean.datagram_received(SIPP_INVITE, CALLER, "udp", 0.0)
    ((fwd, dest, _t),) = lean.datagrams_to_send()
    assert dest == SS
    return fwd


def _our_via_and_rest(fwd: bytes) -> tuple[bytes, bytes]:
    req = parse(fwd)
    assert isinstance(req, Request)
    ours, theirs = req.vias
    return (
        fwd[ours.span[0] : ours.span[1]],
        fwd[theirs.span[0] : theirs.span[1]],
    )


def sipp_response(status: int, reason: bytes, *, merged: bool = True, body: bytes = b"") -> bytes:
    """The UAS's answer to the forwarded INVITE ([last_Via:] merges the Vias on one line)."""
    ours, theirs = _our_via_and_rest(_forwarded_invite())
    vias = (
        b"Via: %s, %s\r\n" % (ours, theirs)
        if merged
        else b"Via: %s\r\nVia: %s\r\n" % (ours, theirs)
    )
    return (
        b"SIP/2.0 %d %s\r\n" % (status, reason)
        + vias
        + b"Record-Route: <sip:127.0.0.1:5060;lr>\r\n"
        b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
        b"To: <sip:+13037621499@127.0.0.1:5060>;tag=6717SIPpTag011\r\n"
        b"Call-ID: 1-6874@127.0.0.3\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:127.0.0.2:5070;transport=UDP>\r\n"
        + (b"Content-Type: application/sdp\r\n" if body else b"")
        + b"Content-Length: %5d\r\n\r\n" % len(body)
        + body
    )


def sipp_in_dialog(method: bytes, cseq: int, *, route: bytes = b"<sip:127.0.0.1:5060;lr>") -> bytes:
    """The caller's ACK/BYE after a 200 that carried our Record-Route (RFC 3261 §12.2.1.1)."""
    return (
        b"%s sip:127.0.0.2:5070;transport=UDP SIP/2.0\r\n" % method
        + b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-%d\r\n" % (cseq * 4)
        + (b"Route: " + route + b"\r\n" if route else b"")
        + b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
        b"To: <sip:+13037621499@127.0.0.1:5060>;tag=6717SIPpTag011\r\n"
        b"Call-ID: 1-6874@127.0.0.3\r\n"
        + b"CSeq: %d %s\r\n"
        % (cseq, method)
        + b"Contact: <sip:+12027621401@127.0.0.3:5061>\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


def softswitch_bye() -> bytes:
    """The softswitch hangs up: its BYE routes through us to the caller's Contact."""
    return (
        b"BYE sip:+12027621401@127.0.0.3:5061 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK-ss-77\r\n"
        b"Route: <sip:127.0.0.1:5060;lr>\r\n"
        b"From: <sip:+13037621499@127.0.0.1:5060>;tag=6717SIPpTag011\r\n"
        b"To: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
        b"Call-ID: 1-6874@127.0.0.3\r\n"
        b"CSeq: 7 BYE\r\n"
        b"Max-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )


PJSUA_BYE = (
    b"BYE sip:192.0.2.10:5070;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;rport;branch=z9hG4bKPj3c1e9a4d-0c8f-4c7e\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:+12027621401@127.0.0.3>;tag=2b7f1d0e-7a41-4a8c-9bbd\r\n"
    b"To: <sip:+13037621499@127.0.0.1>;tag=as5e3c2a1b\r\n"
    b"Call-ID: 4a0f1c52-8a62-4ac1-b2cc-2d4c2f0e9a11\r\n"
    b"CSeq: 31337 BYE\r\n"
    b"Route: <sip:127.0.0.1:5060;lr>\r\n"
    b"User-Agent: PJSUA v2.15 Linux\r\n"
    b"Content-Length:  0\r\n\r\n"
)


def test_a_whole_call_is_relayed_identically_and_leanly() -> None:
    msgs = [
        (sipp_response(180, b"Ringing"), SS),
        (sipp_response(200, b"OK", body=b"v=0\r\ns=-\r\n"), SS),
        (sipp_response(200, b"OK", merged=False), SS),
        (sipp_in_dialog(b"ACK", 1), CALLER),
        (sipp_in_dialog(b"BYE", 2), CALLER),
        (softswitch_bye(), SS),
        (PJSUA_BYE, CALLER),
    ]
    for data, src in msgs:
        out = same(data, src)
        assert len(out) == 1, data
    lean, _ = _cores()
    assert scan_response(sipp_response(180, b"Ringing"), lean._our_via) is not None
    assert scan_response(sipp_response(200, b"OK", merged=False), lean._our_via) is not None
    # the caller's ACK and BYE go the lean way too (C only: else the full parse)
    for data in (sipp_in_dialog(b"ACK", 1), sipp_in_dialog(b"BYE", 2), PJSUA_BYE):
        got = scan_request(data, CALLER[0], CALLER[1], lean._lean_route)
        assert (got is not None) == (message.PARSER.c_request is not None), data


def test_the_lean_relay_edits_what_the_rfc_says() -> None:
    ((resp, dest, t),) = same(sipp_response(180, b"Ringing"), SS)
    assert dest == CALLER and t == "udp"
    assert resp.count(b"Via:") == 1 and b"z9hG4bKsc" not in resp  # RFC 3261 §16.7 step 3
    ((ack, dest, _),) = same(sipp_in_dialog(b"ACK", 1), CALLER)
    assert dest == SS
    req = parse(ack)
    assert isinstance(req, Request)
    assert req.max_forwards == 69 and not req.has_header(b"route")  # §16.6 step 3, §16.4
    assert req.vias[0].branch is not None and req.vias[0].branch.startswith(b"z9hG4bKsc")
    ((bye, dest, _),) = same(softswitch_bye(), SS)
    assert dest == CALLER  # routed by its Request-URI once our Route is removed (§16.12)


def test_an_untrusted_callers_provider_header_is_cut_lean_or_not() -> None:
    """Issue 10 item 5: a caller that is not a trusted SBC cannot stamp the trusted
    provider header for the softswitch; its in-dialog ACK/BYE are no exception (the
    lean forward declines them to the full path, which cuts the header)."""
    kw: dict[str, object] = {
        "trusted_header": "X-Upstream-Provider",
        "is_trusted_source": lambda ip: ip == "127.0.0.9",
    }
    for method, cseq in ((b"ACK", 1), (b"BYE", 2)):
        data = sipp_in_dialog(method, cseq).replace(
            b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nx-upstream-PROVIDER: good\r\n"
        )
        ((fwd, dest, _),) = same(data, CALLER, **kw)
        assert dest == SS and b"good" not in fwd
        assert not parse(fwd).has_header(b"x-upstream-provider")
        lean, _ = _cores(**kw)
        assert scan_request(data, CALLER[0], CALLER[1], lean._lean_route, lean._th) is None
        # without the header the lean forward still takes them (C only)
        got = scan_request(
            sipp_in_dialog(method, cseq), CALLER[0], CALLER[1], lean._lean_route, lean._th
        )
        assert (got is not None) == (message.PARSER.c_request is not None)
        # from the trusted SBC it is forwarded as it came
        ((fwd, _, _),) = same(data, ("127.0.0.9", 5061), **kw)
        assert b"x-upstream-PROVIDER: good\r\n" in fwd


def test_a_forged_mark_on_a_callers_ack_or_bye_is_cut_lean_or_not() -> None:
    """The STIR/SHAKEN mark header ([shaken] mark_header) is the proxy's own: the
    full path cuts it from every request a caller sends towards the softswitch
    (test_sip_core_mark.py). The caller's in-dialog ACK/BYE went the lean way
    with it: the lean forward declined only on the trusted provider header, so
    a forged mark reached the softswitch. Now it declines on either, and the
    full path cuts the mark, with or without a trusted header configured."""
    for kw in (
        {"strip_header": "X-Sipscreen-Mark"},
        {
            "strip_header": "X-Sipscreen-Mark",
            "trusted_header": "X-Upstream-Provider",
            "is_trusted_source": lambda ip: ip == "127.0.0.9",
        },
    ):
        for method, cseq in ((b"ACK", 1), (b"BYE", 2)):
            data = sipp_in_dialog(method, cseq).replace(
                b"Max-Forwards: 70\r\n",
                b"Max-Forwards: 70\r\nX-Sipscreen-Mark: shaken-policy;reason=forged\r\n",
            )
            ((fwd, dest, _),) = same(data, CALLER, **kw)
            assert dest == SS and b"forged" not in fwd
            assert not parse(fwd).has_header(b"x-sipscreen-mark")
            lean, _ = _cores(**kw)
            # without the mark the lean forward still takes them (C only)
            got = scan_request(
                sipp_in_dialog(method, cseq),
                CALLER[0],
                CALLER[1],
                lean._lean_route,
                lean._th,
                lean._strip_more,
            )
            assert (got is not None) == (message.PARSER.c_request is not None)
    c_request = message.PARSER.c_request
    if c_request is not None:
        with pytest.raises(TypeError):
            c_request(sipp_in_dialog(b"BYE", 2), CALLER[0], CALLER[1], b"<x>", None, "x-mark")


def test_multi_worker_relay_port() -> None:
    for kw in ({"workers": 2, "worker_index": 1, "relay_port": 5062}, {"record_route": False}):
        lean, _ = _cores(**kw)
        lean.datagram_received(SIPP_INVITE, CALLER, "udp", 0.0)
        out = lean.datagrams_to_send()
        if out[0][1] != SS:
            continue  # handed to its owner worker
        ours, theirs = _our_via_and_rest(out[0][0])
        resp = sipp_response(180, b"Ringing").replace(
            _our_via_and_rest(_forwarded_invite())[0], ours
        )
        same(resp, SS, **kw)


@pytest.mark.parametrize("path", sorted(DATA.glob("*.dat")), ids=lambda p: p.stem)
def test_every_torture_message_is_treated_identically(path: Path) -> None:
    data = path.read_bytes()
    for src in (CALLER, SS):
        same(data, src)


# --- mutations a lean scanner could misread ------------------------------------------


_COMPACT = {b"Via": b"v", b"To": b"t", b"From": b"f", b"Call-ID": b"i", b"Content-Length": b"l"}
_RR = b"<sip:127.0.0.1:5060;lr>"


def _mutations(msg: bytes) -> list[bytes]:
    head, _, body = msg.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    out: list[bytes] = []

    def join(ls: list[bytes], b: bytes = body) -> bytes:
        return b"\r\n".join(ls) + b"\r\n\r\n" + b

    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(b":")
        if not colon:
            continue
        for other in (name.lower(), name.upper(), name + b" ", b" " + name):
            out.append(join(lines[:i] + [other + b":" + value] + lines[i + 1 :]))
        compact = {
            b"Via": b"v",
            b"To": b"t",
            b"From": b"f",
            b"Call-ID": b"i",
            b"Content-Length": b"l",
        }
        if name in compact:
            out.append(join(lines[:i] + [compact[name] + b":" + value] + lines[i + 1 :]))
        out.append(join(lines[:i] + lines[i + 1 :]))  # header missing
        out.append(join(lines[: i + 1] + lines[i:]))  # header twice
        out.append(join(lines[:i] + [name + b":\r\n " + value.strip()] + lines[i + 1 :]))  # folded
        out.append(join(lines[:i] + [name + b": " + value.strip() + b", x"] + lines[i + 1 :]))
        out.append(join(lines[:i] + [name + b':"' + value] + lines[i + 1 :]))
    out.append(join(lines, body + b"junk"))  # octets past Content-Length (RFC 3261 §18.3)
    out.append(join(lines + [b"Proxy-Require: foo"]))
    out.append(join(lines + [b"Date: Sat, 13 Nov 2010 23:29:00 PST"]))
    out.append(join(lines + [b"Contact: sip:a@b?x=y"]))
    out.append(join(lines + [b"Bad Header: x"]))
    out.append(join(lines + [b"NoColonHere"]))
    out.append(msg.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    out.append(msg.replace(b"Max-Forwards: 70", b"Max-Forwards: 300"))
    out.append(msg.replace(b";tag=6717SIPpTag011", b";tag=sc0.0123456789"))
    out.append(msg.replace(b";tag=6717SIPpTag011", b";TAG=6717SIPpTag011"))
    out.append(msg.replace(b";tag=6717SIPpTag011", b""))
    out.append(msg.replace(b"z9hG4bK-", b"old-"))
    out.append(msg.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    out.append(msg.replace(b"SIP/2.0/UDP 127.0.0.3:5061", b"SIP/2.0/TCP 127.0.0.3:5061"))
    out.append(msg.replace(b"SIP/2.0/UDP 127.0.0.3:5061", b"SIP/2.0/UDP [::1]:5061;rport"))
    out.append(msg.replace(b"SIP/2.0/UDP 127.0.0.3:5061", b"SIP/2.0/UDP host.example:5061"))
    out.append(msg.replace(b";branch=", b";received=10.0.0.9;rport=5;branch="))
    out.append(
        msg.replace(b"<sip:127.0.0.1:5060;lr>", b"<sip:127.0.0.1:5060;lr>, <sip:10.0.0.7;lr>")
    )
    out.append(msg.replace(b"<sip:127.0.0.1:5060;lr>", b"<sip:10.0.0.7;lr>"))
    out.append(
        msg.replace(b"<sip:127.0.0.1:5060;lr>", b"<sip:127.0.0.1:5060;lr>\r\nRoute: <sip:10.0.0.8>")
    )
    out.append(msg.replace(b"CSeq: 2 BYE", b"CSeq: 2 INFO"))
    out.append(msg.replace(b"CSeq: 2 BYE", b"CSeq: 99999999999 BYE"))
    out.append(msg.replace(b"sip:127.0.0.2:5070", b"sips:127.0.0.2:5070", 1))
    out.append(msg.replace(b"sip:127.0.0.2:5070", b"sip:127.0.0.1:5060", 1))
    out.append(msg.replace(b"sip:127.0.0.2:5070", b"sip:255.255.255.255", 1))
    out.append(msg.replace(b"sip:127.0.0.2:5070", b"sip:h.example", 1))
    out.append(msg.replace(b"sip:127.0.0.2:5070", b"sip:127.0.0.2:5070;transport=sctp", 1))
    out.append(msg.replace(b"BYE sip:", b"OPTIONS sip:", 1))
    out.append(msg.replace(b"BYE sip:", b"CANCEL sip:", 1))
    out.append(msg.replace(b"\r\n", b"\n"))
    out.append(b"\r\n" + msg)
    return out


BASES = [
    sipp_in_dialog(b"BYE", 2),
    sipp_in_dialog(b"ACK", 1, route=b""),
    softswitch_bye(),
    PJSUA_BYE,
]


@pytest.mark.parametrize("base", range(len(BASES)))
def test_mutated_in_dialog_requests_are_treated_identically(base: int) -> None:
    # the lean forward of requests validates what the parse validates: no laziness
    for m in _mutations(BASES[base]) + _request_mutations(BASES[base]):
        for src in (CALLER, SS, ("127.0.0.9", 5061)):
            same(m, src)
    for kw in ({"workers": 2, "worker_index": 1, "relay_port": 5062}, {"record_route": False}):
        same(BASES[base], CALLER, **kw)


def _request_mutations(msg: bytes) -> list[bytes]:
    """What the lean forward of an in-dialog request reads: the Via parameters it
    fills or must leave to the full path, Max-Forwards, the Route, the body, the tag."""
    via_end = msg.index(b"\r\n", msg.index(b"Via: "))
    out = [
        msg[:via_end] + tail + msg[via_end:]
        for tail in (
            b";rport",
            b";rport;rport",
            b";rport=",
            b";rport=7",
            b";RPORT",
            b"; rport",
            b";rport ",
            b";rportx",
            b";rportx;rport",
            b";x",
            b";x;X",
            b";branch=z9hG4bK-other",
            b";received=127.0.0.3",
            b";received=127.0.0.3;rport",
            b";ttl=1;maddr=127.0.0.4",
            b";",
            b"; =x",
            b" ",
            b", SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-2",
            b"\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-2",
        )
    ]
    for a, b in (
        (b"Max-Forwards: 70", b"Max-Forwards: 1"),
        (b"Max-Forwards: 70", b"Max-Forwards:70"),
        (b"Max-Forwards: 70", b"Max-Forwards: 70 "),
        (b"Max-Forwards: 70", b"Max-Forwards: 0070"),
        (b"Max-Forwards: 70", b"Max-Forwards: 7x"),
        (b"Max-Forwards: 70\r\n", b""),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route:  <sip:127.0.0.1:5060;lr> "),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route: <sip:127.0.0.1;lr>"),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route: <sip:127.0.0.1:5060;LR>"),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route: <sip:127.0.0.1:5060;lr;transport=tcp>"),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route: <sip:127.0.0.1:5060;lr>,<sip:x;lr>"),
        (b"Route: <sip:127.0.0.1:5060;lr>", b"Route:"),
        (b"Content-Length: 0", b"Content-Length: 4"),
        (b"Content-Length:  0", b"Content-Length: 4"),
        (b"To: <", b'To: "Callee" <'),
        (b"From: <", b'From: "Caller <'),
        (b"Call-ID: ", b"Call-ID: a b "),
        (b"CSeq: ", b"CSeq:  "),
        (b"UDP 127.0.0.3:5061", b"UDP 127.0.0.3"),
        (b"UDP 127.0.0.3:5061", b"UDP LOCALHOST:5061"),
        (b"UDP 127.0.0.3:5061", b"UDP 127.0.0.33:5061"),
    ):
        out.append(msg.replace(a, b, 1))
    head, _, _ = msg.partition(b"\r\n\r\n")
    for tag in (b"sc-err", b"sc0.0123456789", b"sc", b"s", b"", b"SC1"):
        out.append(
            msg.replace(b";tag=6717SIPpTag011", b";tag=" + tag).replace(
                b";tag=as5e3c2a1b", b";tag=" + tag
            )
        )
    out.append(head.replace(b"Content-Length: 0", b"Content-Length: 4") + b"\r\n\r\nv=0\n")
    out.append(head.replace(b"Content-Length:  0", b"Content-Length: 4") + b"\r\n\r\nv=0\n")
    out.append(head.replace(b"Content-Length: 0\r\n", b"") + b"\r\n\r\n")
    out.append(head.replace(b"Content-Length: 0\r\n", b"") + b"\r\n\r\nbody")
    out.append(head + b"\r\n\r\nbody")
    return out


def test_mutated_responses_are_treated_identically() -> None:
    for base in (
        sipp_response(180, b"Ringing"),
        sipp_response(200, b"OK", merged=False, body=b"v=0\r\n"),
    ):
        for m in _mutations(base):
            same_or_lazier(m, SS)
        for bad in (
            base.replace(b"SIP/2.0 ", b"SIP/2.0 1000 ", 1),
            base.replace(b"Ringing", b"", 1),
            base.replace(b"SIP/2.0/UDP 127.0.0.3", b"SIP/2.0/UDP 255.255.255.255", 1),
            base.replace(b"SIP/2.0/UDP 127.0.0.3", b"SIP/2.0/SCTP 127.0.0.3", 1),
            base.replace(b"z9hG4bKsc", b"z9hG4bKxx", 1),
        ):
            same(bad, SS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(
        BASES
        + [sipp_response(180, b"Ringing"), sipp_response(200, b"OK", merged=False, body=b"v=0\r\n")]
    ),
    pos=st.integers(min_value=0, max_value=600),
    junk=EDIT_JUNK,
    mode=EDIT_MODE,
)
@example(base=sipp_response(180, b"Ringing"), pos=106, junk=b"\r\n", mode="replace")  # unroutable
def test_random_byte_edits_are_treated_identically_or_lazily(
    base: bytes, pos: int, junk: bytes, mode: str
) -> None:
    data = edit(base, pos, junk, mode)
    if data.startswith(b"SIP/"):
        same_or_lazier(data, SS)
    else:  # requests: identical, the lean forward is never lazier than the parse
        same(data, SS if b"ss-77" in data else CALLER)


# --- multi-worker: the owner is found before the parse ---------------------------


def _wire(cores: list[ProxyCore], index: int, data: bytes, src: tuple[str, int]) -> list:
    """What leaves the proxy when worker ``index`` receives ``data`` (handoffs followed)."""
    cores[index].datagram_received(data, src, "udp", 1.0)
    wire = []
    pending = cores[index].datagrams_to_send()
    while pending:
        out, dest, transport = pending.pop(0)
        if transport == "handoff":
            owner = cores[dest[1]]
            owner.datagram_received_handoff(out, 1.0)
            pending.extend(owner.datagrams_to_send())
        else:
            wire.append((out, dest, transport))
    return wire


def _workers(lean: bool) -> list[ProxyCore]:
    def screen(req: Request, src: tuple[str, int], transport: str) -> None:
        return None

    return [
        ProxyCore(
            CoreConfig(
                PROXY[0], PROXY[1], SS, secret=b"s", workers=2, worker_index=k, lean_relay=lean
            ),
            screen,
        )
        for k in range(2)
    ]


def test_handoff_before_parse_sends_the_same_bytes_to_the_wire() -> None:
    msgs = [SIPP_INVITE.replace(b"-6874-1-0", b"-6874-%d-0" % i) for i in range(16)]
    msgs += [m.replace(b"INVITE", b"CANCEL").split(b"\r\n\r\n")[0] + b"\r\n\r\n" for m in msgs[:4]]
    msgs += [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
    handed = 0
    for data in msgs:
        for index in (0, 1):
            lean, full = _workers(True), _workers(False)
            assert _wire(lean, index, data, CALLER) == _wire(full, index, data, CALLER), data
            handed += lean[index].stats.handoffs_out
    assert handed >= 8  # the pre-parse handoff was really taken


def _c_matches_python(data: bytes, our_via: bytes) -> bool:
    """The C scan gives the Python scan's answer or declines; True when it answered."""
    c_scan = message._C_RESPONSE
    assert c_scan is not None
    got = c_scan(data, our_via)
    if got is None:
        return False
    want = relay._scan_response(data, our_via)
    assert want is not None, data
    status, via, cut = got
    assert (status, cut) == (want[0], want[2]), data
    slots = type(via).__slots__
    assert [getattr(via, n) for n in slots] == [getattr(want[1], n) for n in slots], data
    return True


def test_c_scan_response_matches_python(_implementation: None) -> None:
    if message._C_RESPONSE is None:
        pytest.skip("proxy/sip/_scan.c not built")
    our = _cores()[0]._our_via
    bases = [
        sipp_response(180, b"Ringing"),
        sipp_response(200, b"OK", merged=False, body=b"v=0\r\n"),
    ]
    answered = sum(_c_matches_python(b, our) for b in bases)
    assert answered == 2
    for base in bases:
        for m in _mutations(base):
            _c_matches_python(m, our)
        for pos in range(0, len(base), 3):
            for junk in (b"\r\n", b" ", b",", b"0", b"x", b"\r\n\r\n"):
                _c_matches_python(base[:pos] + junk + base[pos:], our)
                _c_matches_python(base[:pos] + junk + base[pos + len(junk) :], our)
            _c_matches_python(base[:pos], our)
    for path in sorted(DATA.glob("*.dat")):
        _c_matches_python(path.read_bytes(), our)
