"""Issue 14, live: a caller over TCP, the softswitch over UDP. A reliable caller
runs no timer A (RFC 3261 §17.1.1.2), so the proxy retransmits its INVITE over UDP
(proxy/sip/retransmit.py): a softswitch stand-in (an asyncio UDP server on
loopback) that loses the first copy still gets the call, and a dead one gives
the caller 408 Request Timeout after timer B (64*T1 = 32 s). On the old code the
first case never completed and the second left the caller waiting."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from test_transports import _answer, tcp_invite

from proxy.sip.message import Request, Response, frame_stream, parse


class Softswitch(asyncio.DatagramProtocol):
    """Records every datagram; answers an INVITE 200 from its ``answer_from``-th copy
    (0: never)."""

    def __init__(self, answer_from: int) -> None:
        self.answer_from = answer_from
        self.invites: list[tuple[float, bytes]] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's UDP transport is no asyncio.DatagramTransport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.startswith(b"INVITE "):
            return
        self.invites.append((asyncio.get_running_loop().time(), data))
        if self.answer_from and len(self.invites) >= self.answer_from:
            msg = parse(data)
            assert isinstance(msg, Request) and self.transport is not None
            self.transport.sendto(_answer(msg, 200), addr)


def _invite(port: int, lport: int) -> bytes:
    return tcp_invite(port, lport, uuid.uuid4().hex.encode())


async def _read_response(reader: asyncio.StreamReader, timeout: float) -> Response:
    buf = b""
    async with asyncio.timeout(timeout):
        while True:
            msg, used = frame_stream(buf)
            if msg is not None:
                resp = parse(msg)
                assert isinstance(resp, Response)
                return resp
            buf = buf[used:]
            chunk = await reader.read(65535)
            assert chunk, "the proxy closed the connection"
            buf += chunk


async def _call(start_proxy: Any, redis_url: str, key_prefix: str, answer_from: int) -> Any:
    loop = asyncio.get_running_loop()
    ss = Softswitch(answer_from)
    transport, _ = await loop.create_datagram_endpoint(lambda: ss, local_addr=("127.0.0.1", 0))
    proxy = start_proxy(transport.get_extra_info("sockname")[1], redis_url, key_prefix, tcp=True)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    return ss, transport, proxy, reader, writer


async def test_tcp_invite_whose_first_udp_copy_is_lost_gets_through(
    key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    ss, transport, proxy, reader, writer = await _call(start_proxy, redis_url, key_prefix, 2)
    try:
        writer.write(_invite(proxy.port, 5999))
        resp = await _read_response(reader, 5.0)
        assert resp.status == 200 and resp.cseq == (1, b"INVITE")
        # the proxy's copy came T1 after the first, the same bytes, and no more after
        (t0, first), (t1, second) = ss.invites
        assert first == second
        assert 0.4 <= t1 - t0 <= 1.5
        await asyncio.sleep(1.2)
        assert len(ss.invites) == 2
    finally:
        writer.close()
        transport.close()


async def test_tcp_invite_to_a_dead_softswitch_gets_408(
    key_prefix: str, redis_url: str, start_proxy: Any
) -> None:
    ss, transport, proxy, reader, writer = await _call(start_proxy, redis_url, key_prefix, 0)
    try:
        writer.write(_invite(proxy.port, 5999))
        resp = await _read_response(reader, 40.0)
        assert resp.status == 408 and resp.cseq == (1, b"INVITE")
        # timer A: the first copy and six more (0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s)
        assert len(ss.invites) == 7
        assert 31.0 <= ss.invites[-1][0] - ss.invites[0][0] <= 33.0
        for _ in range(30):
            n = proxy.metric("sipscreen_core_events_total", event="relay_retransmit_timeout_408")
            if n:
                break
            await asyncio.sleep(0.2)
        assert n == 1
        assert "answered 408" in proxy.stderr()
    finally:
        writer.close()
        transport.close()
