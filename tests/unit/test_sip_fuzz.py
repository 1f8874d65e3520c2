"""Hypothesis: garbage and mutated messages only ever raise SIPError; rewrites round-trip."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sip.core import Answer, CoreConfig, ProxyCore
from proxy.sip.message import Request, Response, SIPError, frame_stream, parse

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
SAMPLES = [p.read_bytes() for p in sorted(DATA.glob("*.dat"))]
SS = ("127.0.0.2", 5070)


def _parse_or_sip_error(data: bytes) -> Request | Response | None:
    try:
        return parse(data)
    except SIPError:
        return None


def _core() -> ProxyCore:
    def screen(req: Request, src: tuple[str, int], transport: str) -> Answer | None:
        return Answer(603, b"Decline") if req.call_id.endswith(b"7") else None

    return ProxyCore(CoreConfig("127.0.0.1", 5060, SS), screen)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    _parse_or_sip_error(data)
    _parse_or_sip_error(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    try:
        frame_stream(data)
    except SIPError:
        pass


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(
                st.sampled_from([b"\r\n", b" ", b",", b";", b":", b'"', b"<", b"\r\n "])
            )
        elif op == 2:
            del data[pos : pos + draw(st.integers(1, 20))]
        else:
            data[pos:pos] = draw(st.binary(max_size=8))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.sampled_from(["udp", "tcp"]))
def test_mutations_through_parser_and_core(data: bytes, transport: str) -> None:
    _parse_or_sip_error(data)
    core = _core()
    core.datagram_received(data, ("192.0.2.10", 5060), transport, 0.0)
    core.datagram_received(data, SS, transport, 0.0)
    for out, dest, _ in core.datagrams_to_send():
        # whatever we emit is a well-formed-enough SIP message and never goes to broadcast
        assert dest[0] not in ("255.255.255.255", "0.0.0.0")
        assert out.startswith(b"SIP/2.0 ") or parse(out) is not None
    t = core.get_timer()
    if t is not None:
        core.handle_timer(t)


token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
ipv4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "OPTIONS", "BYE", "MESSAGE", "REGISTER"]),
    user=st.from_regex(r"\+?[0-9]{3,15}", fullmatch=True),
    host=ipv4,
    port=st.integers(1, 65535),
    branch=token,
    call_id=token,
    cseq=st.integers(0, 2**31 - 1),
    mf=st.one_of(st.none(), st.integers(1, 255)),
    rport=st.booleans(),
    compact=st.booleans(),
    fold=st.booleans(),
    body=st.binary(max_size=200).filter(lambda b: b"\r\n\r\n" not in b),
    src_port=st.integers(1, 65535),
)
def test_generated_messages_round_trip(
    method: str,
    user: str,
    host: str,
    port: int,
    branch: str,
    call_id: str,
    cseq: int,
    mf: int | None,
    rport: bool,
    compact: bool,
    fold: bool,
    body: bytes,
    src_port: int,
) -> None:
    via = f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch}" + (";rport" if rport else "")
    hv, hf, ht, hi = ("v", "f", "t", "i") if compact else ("Via", "From", "To", "Call-ID")
    sep = "\r\n  " if fold else " "
    lines = [
        f"{method} sip:{user}@127.0.0.2:5070 SIP/2.0",
        f"{hv}: {via}",
        f"{hf}: <sip:{user}@{host}>;tag={branch}",
        f"{ht}:{sep}<sip:{user}@example.com>",
        f"{hi}: {call_id}",
        f"CSeq: {cseq}{sep}{method}",
    ]
    if mf is not None:
        lines.append(f"Max-Forwards: {mf}")
    lines.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    msg = parse(raw)
    assert isinstance(msg, Request)
    assert msg.method == method.encode() and msg.cseq == (cseq, method.encode())
    assert msg.call_id == call_id.encode() and msg.body == body
    assert msg.from_.user == user.encode() and msg.vias[0].port == port

    core = ProxyCore(CoreConfig("127.0.0.1", 5060, SS), lambda r, s, t: None)
    src = ("198.51.100.7", src_port)
    core.datagram_received(raw, src, "udp", 0.0)
    [(fwd, dest, _)] = core.datagrams_to_send()
    assert dest == SS
    out = parse(fwd)
    assert isinstance(out, Request)
    assert out.body == body and out.call_id == msg.call_id and out.cseq == msg.cseq
    assert out.max_forwards == (70 if mf is None else mf - 1)
    assert out.vias[1].branch == msg.vias[0].branch
    assert out.vias[1].received == b"198.51.100.7"
    assert out.vias[1].rport == (str(src_port).encode() if rport else None)

    # the softswitch's answer comes back to the caller with our Via popped
    vias = b"".join(b"Via: " + fwd[v.span[0] : v.span[1]] + b"\r\n" for v in out.vias)
    resp = (
        b"SIP/2.0 200 OK\r\n"
        + vias
        + b"From: "
        + out.from_.raw
        + b"\r\nTo: "
        + out.to.raw
        + b";tag=x\r\nCall-ID: "
        + out.call_id
        + b"\r\nCSeq: %d %s\r\n" % out.cseq
        + b"Content-Length: 0\r\n\r\n"
    )
    core.datagram_received(resp, SS, "udp", 0.1)
    [(back, dest2, _)] = core.datagrams_to_send()
    assert dest2 == ("198.51.100.7", src_port if rport else port)
    got = parse(back)
    assert isinstance(got, Response) and len(got.vias) == 1
    assert got.vias[0].branch == msg.vias[0].branch
