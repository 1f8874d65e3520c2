"""The kernel's steering program (proxy/sip/steer.py) against the core's owner:
real SO_REUSEPORT groups on 127.0.0.1, real datagrams, the socket each one
reached compared with ``key_owner`` of the parsed transaction key."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from proxy.server.sockets import attach_steering_cbpf
from proxy.sip import steer
from proxy.sip.message import Request, parse
from proxy.sip.transaction import transaction_key


@contextmanager
def group(n: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if socks else 0))
            s.settimeout(2.0)
            socks.append(s)
        attach_steering_cbpf(socks[0], n)
        yield socks
    finally:
        for s in socks:
            s.close()


def deliver(socks: list[socket.socket], data: bytes) -> int:
    """Send ``data`` to the group; the index of the socket that got it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(data, socks[0].getsockname())
    for s in socks:
        s.setblocking(False)
    try:
        for _ in range(200):
            for i, s in enumerate(socks):
                try:
                    got = s.recv(65535)
                except BlockingIOError:
                    continue
                assert got == data
                return i
            socket.socket  # noqa: B018 (spin)
            import time

            time.sleep(0.002)
    finally:
        for s in socks:
            s.settimeout(2.0)
    raise AssertionError("datagram not delivered")


def message(method: str, branch: str, ruri_len: int, to_tag: str = "", first: str = "") -> bytes:
    user = "+1" + "2" * max(1, ruri_len)
    body = "v=0\r\n" * 5 if method == "INVITE" else ""
    return (
        f"{method} sip:{user}@10.0.0.1:5060;user=phone SIP/2.0\r\n{first}"
        f"Via: SIP/2.0/UDP 10.1.2.3:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:+12125550100@10.1.2.3>;tag=1\r\n"
        f"To: <sip:{user}@10.0.0.1>{to_tag}\r\nCall-ID: c-{branch}\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def owner_of(data: bytes, n: int) -> int:
    req = parse(data)
    assert isinstance(req, Request)
    return steer.key_owner(transaction_key(req), n)


@pytest.mark.parametrize("n", [2, 3])
def test_the_kernel_delivers_each_transaction_to_its_owner(n: int) -> None:
    rng = random.Random(5)
    seen = [0] * n
    with group(n) as socks:
        for i in range(150):
            tail = "".join(
                rng.choice("abcdefXYZ0123456789-.!%*_+`'~") for _ in range(rng.randint(1, 30))
            )
            branch = "z9hG4bK" + tail
            invite = message("INVITE", branch, rng.randint(1, 200))
            at = deliver(socks, invite)
            assert at == owner_of(invite, n), invite[:200]
            seen[at] += 1
            if i % 5 == 0:  # its ACK (same branch, RFC 3261 §17.1.1.3) and a retransmission
                ack = message("ACK", branch, 10, ";tag=sc1.x")
                assert deliver(socks, ack) == at
                assert deliver(socks, invite) == at
    assert min(seen) > 150 / n / 3  # spread, not pinned


def test_sipp_branches_spread_over_two_workers() -> None:
    """SIPp numbers its branches z9hG4bK-PID-CALL-0: consecutive calls differ in one
    digit or two, and still land on both workers about evenly."""
    owners = [steer.key_owner(b"z9hG4bK-4242-%d-0|127.0.0.1:5061" % i, 2) for i in range(1000)]
    assert 400 < sum(owners) < 600


def test_what_the_program_cannot_place_still_arrives() -> None:
    """No cookie, a cookie past SCAN, a "z9hG" before the top Via, a datagram too
    short to read: delivered to some worker (the core hands it to the owner)."""
    with group(2) as socks:
        for data in (
            b"x",
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=1\r\n\r\n",
            message("INVITE", "z9hG4bKfar", 10, first="X-Pad: " + "p" * steer.SCAN + "\r\n"),
            message("INVITE", "z9hG4bKabc", 10).replace(b"+122", b"z9hG4bKq", 1),
            b"INVITE sip:z9hG4bK SIP/2.0\r\n",
        ):
            assert deliver(socks, data) in (0, 1)


def test_the_program_fits_the_kernel_limit() -> None:
    for n in (2, 3, 8, 64):
        assert len(steer.program(n)) <= 4096


def test_key_owner_without_a_cookie_is_a_crc() -> None:
    import zlib

    key = b"2543|call|tag|1|h:5060"
    assert steer.key_owner(key, 3) == zlib.crc32(key) % 3
    assert steer.key_owner(b"z9hG4bKx|h", 1) == 0


def test_the_c_hash_is_the_reference_hash() -> None:
    rng = random.Random(7)
    cases = [b"", b"z9hG4b", b"Z9hG4bKx", b"z9hG4bK", b"z9hG4bK" + b"\xff" * 40]
    cases += [b"z9hG4bK" + rng.randbytes(rng.randint(0, 40)) for _ in range(5000)]
    for b in cases:
        assert steer.branch_hash(b) == steer._branch_hash_py(b), b
