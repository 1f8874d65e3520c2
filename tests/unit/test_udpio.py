"""proxy/_udpio.c: batched UDP receive and send, on real loopback sockets.

recv_batch must return every waiting datagram, whole and in order, with its
sender; send_batch must send a list in order to IPv4 and IPv6 peers, report
how many went out, and answer a datagram that cannot go (too big, bad host)
with an error for that item alone.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator

import pytest

try:
    from proxy import _udpio
except ImportError:  # pragma: no cover
    _udpio = None  # type: ignore[assignment]


def test_the_extension_is_built() -> None:
    """CI installs with a compiler: a silent fallback would hide a build break."""
    if os.environ.get("SIPSCREEN_ALLOW_PURE_PYTHON"):
        pytest.skip("pure-Python install allowed by SIPSCREEN_ALLOW_PURE_PYTHON")
    assert _udpio is not None


needs_c = pytest.mark.skipif(_udpio is None, reason="proxy/_udpio.c not built")


def _udp(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1" if family == socket.AF_INET else "::1", 0))
    s.setblocking(False)
    return s


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = _udp(), _udp()
    yield a, b
    a.close()
    b.close()


def _settle(sock: socket.socket) -> None:
    """Wait (at most 50 ms) until ``sock`` has something to read."""
    select.select([sock], [], [], 0.05)


@needs_c
def test_recv_batch_takes_every_waiting_datagram(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert _udpio.recv_batch(a.fileno(), 64) == []  # nothing waits: EAGAIN is no error
    payloads = [b"x" * n for n in (0, 1, 1500, 65507)] + [b"msg %d" % i for i in range(100)]
    for p in payloads:
        b.sendto(p, a.getsockname())
    got: list[tuple[bytes, tuple[str, int]]] = []
    for _ in range(100):  # bounded
        batch = _udpio.recv_batch(a.fileno(), 64)
        assert len(batch) <= 64
        got += batch
        if len(got) == len(payloads):
            break
        _settle(a)
    assert [d for d, _ in got] == payloads
    assert {src for _, src in got} == {b.getsockname()}
    assert _udpio.recv_batch(a.fileno(), 0) == []  # n is clamped to 1..64


@needs_c
def test_recv_batch_names_each_sender_when_peers_interleave() -> None:
    """Consecutive datagrams from one peer share its (host, port) tuple; every
    datagram still names its own sender, IPv4 and IPv6, peers interleaved."""
    rx4, rx6 = _udp(), _udp(socket.AF_INET6)
    peers4 = [_udp() for _ in range(3)]
    peers6 = [_udp(socket.AF_INET6) for _ in range(2)]
    try:
        for rx, peers in ((rx4, peers4), (rx6, peers6)):
            order = [0, 0, 1, 0, 1, 1, 2, 2, 0] if len(peers) == 3 else [0, 1, 1, 0, 0, 1]
            for n, k in enumerate(order):
                peers[k].sendto(b"from %d #%d" % (k, n), rx.getsockname())
            got: list[tuple[bytes, tuple[str, int]]] = []
            for _ in range(50):  # bounded
                got += _udpio.recv_batch(rx.fileno(), 64)
                if len(got) == len(order):
                    break
                _settle(rx)
            assert len(got) == len(order)
            for data, src in got:
                k = int(data.split()[1])
                assert src == peers[k].getsockname()[:2]
            for (d1, s1), (d2, s2) in zip(got, got[1:], strict=False):
                if d1.split()[1] == d2.split()[1]:
                    assert s1 is s2  # one tuple for a run of one peer's datagrams
    finally:
        for s in (rx4, rx6, *peers4, *peers6):
            s.close()


@needs_c
def test_send_batch_in_order_to_ipv4_and_ipv6(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    items = [(b"m%d" % i, "127.0.0.1", b.getsockname()[1]) for i in range(150)]
    assert _udpio.send_batch(a.fileno(), items) == 150  # three sendmmsg calls
    got = []
    for _ in range(200):
        try:
            got.append(b.recvfrom(100))
        except BlockingIOError:
            if len(got) == 150:
                break
            _settle(b)
    assert [d for d, _ in got] == [d for d, _, _ in items]
    assert all(src == a.getsockname() for _, src in got)
    c, d = _udp(socket.AF_INET6), _udp(socket.AF_INET6)
    try:
        assert _udpio.send_batch(c.fileno(), [(b"v6", "::1", d.getsockname()[1])]) == 1
        _settle(d)
        [(data, src)] = _udpio.recv_batch(d.fileno(), 8)
        assert data == b"v6" and src == ("::1", c.getsockname()[1])
    finally:
        c.close()
        d.close()


@needs_c
def test_send_batch_reports_the_item_that_cannot_go(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    port = b.getsockname()[1]
    fd = a.fileno()
    with pytest.raises(ValueError):
        _udpio.send_batch(fd, [(b"x", "softswitch.example", port)])
    with pytest.raises(ValueError):
        _udpio.send_batch(fd, [(b"x", "127.0.0.1", 70000)])
    with pytest.raises(TypeError):
        _udpio.send_batch(fd, [(b"x", b"127.0.0.1", port)])
    # too big for UDP: the first item fails alone (EMSGSIZE); what came before it went
    items = [
        (b"ok", "127.0.0.1", port),
        (b"x" * 70000, "127.0.0.1", port),
        (b"after", "127.0.0.1", port),
    ]
    assert _udpio.send_batch(fd, items) == 1
    with pytest.raises(OSError):
        _udpio.send_batch(fd, items[1:])
    assert _udpio.send_batch(fd, items[2:]) == 1
    _settle(b)
    assert [d for d, _ in _udpio.recv_batch(b.fileno(), 8)] == [b"ok", b"after"]
    with pytest.raises(OSError):
        _udpio.recv_batch(-1, 8)


@needs_c
def test_an_ipv4_peer_of_a_dual_stack_socket_is_named_by_its_ipv4_address() -> None:
    """An IPv6 socket that is not IPV6_V6ONLY carries IPv4, the kernel naming its
    peers ``::ffff:a.b.c.d``. recv_batch names them ``a.b.c.d`` (the trunk map
    and trusted sources match one spelling), and send_batch(..., mapped=True)
    reaches an IPv4 host by that socket; a plain IPv6 host goes as it is."""
    d = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    d.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    d.bind(("::ffff:127.0.0.1", 0))  # IPv4 loopback only, by an IPv6 socket
    d.setblocking(False)
    v4, v6 = _udp(), _udp(socket.AF_INET6)
    try:
        port = d.getsockname()[1]
        v4.sendto(b"hello", ("127.0.0.1", port))
        _settle(d)
        ((data, src),) = _udpio.recv_batch(d.fileno(), 8)
        assert data == b"hello" and src == ("127.0.0.1", v4.getsockname()[1])
        assert _udpio.send_batch(d.fileno(), [(b"back", "127.0.0.1", src[1])], True) == 1
        _settle(v4)
        assert v4.recvfrom(100) == (b"back", ("127.0.0.1", port))
        # an IPv6 host by the same socket is not mapped (and ::1 is not reachable from
        # a socket bound to ::ffff:127.0.0.1: the kernel says so, not a ValueError)
        with pytest.raises(OSError):
            _udpio.send_batch(d.fileno(), [(b"x", "::1", v6.getsockname()[1])], True)
    finally:
        d.close()
        v4.close()
        v6.close()
