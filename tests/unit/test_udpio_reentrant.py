"""proxy/_udpio.c shares nothing between calls and runs no Python code mid-batch.

Two threads receiving at once each get exactly their own datagrams (the
receive buffers were once module-wide and the GIL was released around
recvmmsg, so two calls wrote the same buffers), and send_batch refuses a port
that is not an int instead of calling its ``__index__``, Python code that
could empty the list whose bytes the kernel is about to read.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

try:
    from proxy import _udpio
except ImportError:  # pragma: no cover
    _udpio = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(_udpio is None, reason="proxy/_udpio.c not built")


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return s


def _echo_rounds(tag: int, deadline: float, errors: list[str]) -> None:
    tx, rx = _udp(), _udp()
    dest = rx.getsockname()
    try:
        rnd = 0
        while time.monotonic() < deadline and rnd < 400 and not errors:
            want = [b"%d:%d:%d:" % (tag, rnd, i) + bytes([65 + tag]) * (i * 37) for i in range(32)]
            assert _udpio.send_batch(tx.fileno(), [(d, dest[0], dest[1]) for d in want]) == 32
            got: list[bytes] = []
            for _ in range(2000):  # bounded; loopback delivers at once
                got += [d for d, _ in _udpio.recv_batch(rx.fileno(), 64)]
                if len(got) >= len(want):
                    break
            if got != want:
                errors.append(f"thread {tag} round {rnd}: {len(got)} datagrams, not its own")
            rnd += 1
    finally:
        tx.close()
        rx.close()


def test_concurrent_receivers_get_their_own_datagrams() -> None:
    errors: list[str] = []
    deadline = time.monotonic() + 2.0
    threads = [threading.Thread(target=_echo_rounds, args=(k, deadline, errors)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_send_batch_runs_no_python_code_mid_batch() -> None:
    tx, rx = _udp(), _udp()
    port = rx.getsockname()[1]
    items: list[tuple[bytes, str, object]] = []

    class Port:
        """An index that empties the list being sent (its bytes would be freed)."""

        def __index__(self) -> int:
            items.clear()
            return port

    try:
        items += [(b"first" * 100, "127.0.0.1", port), (b"second" * 100, "127.0.0.1", Port())]
        with pytest.raises(TypeError):
            _udpio.send_batch(tx.fileno(), items)
        assert len(items) == 2  # __index__ never ran
        assert _udpio.send_batch(tx.fileno(), items[:1]) == 1
    finally:
        tx.close()
        rx.close()
