"""Every socket a worker serves, bound by the parent before the fork.

UDP: one SO_REUSEPORT socket per worker per address and a classic BPF
program (SO_ATTACH_REUSEPORT_CBPF) that spreads datagrams over the group by
the hash of the top Via's branch (proxy/sip/steer.py: a transaction's INVITE,
retransmissions, ACK and CANCEL reach the worker that owns it), because a
trunk sends from one address and port that plain SO_REUSEPORT would pin to
one worker; per worker a relay port towards the
softswitch and a private 127.0.0.1 handoff socket. TCP/TLS: one listening
socket per address, shared. An address that cannot be bound is a
`StartupError` naming it. `receive_queue` reads a socket's queued bytes
(SO_MEMINFO) for load shedding."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import socket
import struct
from dataclasses import dataclass, field

from proxy.config import Config
from proxy.sip import steer

log = logging.getLogger("sipscreen")

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h
_SKF_AD_OFF = -0x1000  # linux/filter.h
_SKF_AD_RANDOM = 56
_UDP_RCVBUF = 4 * 1024 * 1024


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def attach_cbpf(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to ``sock``'s SO_REUSEPORT group: for each
    datagram it returns the index of the socket (in bind order) to deliver to."""
    prog = (_SockFilter * len(insns))(*(_SockFilter(*i) for i in insns))
    fprog = _SockFprog(len(insns), ctypes.cast(prog, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


def attach_steering_cbpf(sock: socket.socket, n: int) -> None:
    """Spread a SO_REUSEPORT group's datagrams over its n sockets by the hash of the
    top Via's branch (proxy/sip/steer.py): a transaction's datagrams reach the
    worker that owns it; a datagram without a branch goes to one at random."""
    attach_cbpf(sock, steer.program(n))


def attach_random_cbpf(sock: socket.socket, n: int) -> None:
    """Spread a SO_REUSEPORT group's datagrams at random over its n sockets.

    Classic BPF: A = random u32 (SKF_AD_RANDOM); A %= n; return A (the
    index of the socket in the group, in bind order). Not used by the proxy
    any more (attach_steering_cbpf); kept for the comparison in tests.
    """
    attach_cbpf(
        sock,
        [
            (0x20, 0, 0, (_SKF_AD_OFF + _SKF_AD_RANDOM) & 0xFFFFFFFF),  # ld [rand]
            (0x94, 0, 0, n),  # BPF_ALU|BPF_MOD|BPF_K: mod #n
            (0x16, 0, 0, 0),  # BPF_RET|BPF_A: ret a
        ],
    )


SO_MEMINFO = 55  # linux/asm-generic/socket.h: struct of SK_MEMINFO_VARS u32
# SK_MEMINFO_RMEM_ALLOC, SK_MEMINFO_RCVBUF: bytes queued for reading, and the
# receive buffer they count against (both in kernel accounting, truesize)


def receive_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(bytes queued, receive buffer size) of ``sock`` (Linux SO_MEMINFO), None if unknown."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36)
    except OSError:
        return None
    if len(raw) < 8:
        return None
    queued, rcvbuf = struct.unpack_from("II", raw, 0)
    return int(queued), int(rcvbuf)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def carries_ipv4(sock: socket.socket) -> bool:
    """``sock`` is an IPv6 socket that IPv4 reaches too: not IPV6_V6ONLY (Linux's
    default, net.ipv6.bindv6only) and bound to ``::`` or an IPv4-mapped address
    (RFC 3493 §3.7). Its IPv4 peers are named by their IPv4 address
    (proxy/_udpio.c, values.canonical_ip), and datagrams to an IPv4 host leave
    by it IPv4-mapped when the worker has no IPv4 socket."""
    if sock.family != socket.AF_INET6:
        return False
    try:
        if sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
            return False
        host: str = sock.getsockname()[0]
    except OSError:
        return False
    return host == "::" or host[:7].lower() == "::ffff:"


@dataclass
class WorkerSockets:
    """The sockets one worker serves, bound by the parent (or itself)."""

    udp: list[socket.socket] = field(default_factory=list)
    tcp: list[socket.socket] = field(default_factory=list)
    tls: list[socket.socket] = field(default_factory=list)
    handoff: socket.socket | None = None
    handoff_addrs: list[tuple[str, int]] = field(default_factory=list)
    # Several workers: this worker's own UDP port on the first listen address.
    # Its forwarded requests leave from it and name it in their Via, so the
    # softswitch's 180 and 200 of one transaction reach the worker that sent
    # the INVITE, in order (the kernel's spreading would split and reorder them).
    relay: socket.socket | None = None


def bind_sockets(config: Config) -> list[WorkerSockets]:
    """Bind every listen socket for `config.workers` workers.

    UDP: one SO_REUSEPORT socket per worker per address (plus the steering
    CBPF program when workers > 1). TCP: one listening socket per address
    shared by all workers (the kernel spreads accept()s). Handoff: one
    private 127.0.0.1 UDP socket per worker. An address that cannot be
    bound (in use, not local) raises `StartupError` naming it, with every
    socket bound so far closed.
    """
    n = config.workers
    per: list[WorkerSockets] = [WorkerSockets() for _ in range(n)]
    for transport, host, port in config.listen:
        fam = _family(host)
        if transport == "udp":
            bound_port = port
            for k in range(n):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                if n > 1:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
                try:
                    s.bind((host, bound_port))
                except OSError as exc:
                    s.close()
                    _close_all(per)
                    raise _busy(f"udp:{host}:{bound_port}", exc) from None
                bound_port = s.getsockname()[1]
                s.setblocking(False)
                per[k].udp.append(s)
            if n > 1:
                attach_steering_cbpf(per[0].udp[-1], n)
        else:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                s.close()
                _close_all(per)
                raise _busy(f"{transport}:{host}:{port}", exc) from None
            s.listen(1024)
            s.setblocking(False)
            for k in range(n):
                (per[k].tls if transport == "tls" else per[k].tcp).append(s)
    udp_hosts = [(h, fam) for t, h, _p in config.listen if t == "udp" for fam in [_family(h)]]
    if n > 1 and udp_hosts:
        host, fam = udp_hosts[0]
        for k in range(n):
            r = socket.socket(fam, socket.SOCK_DGRAM)
            with contextlib.suppress(OSError):
                r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RCVBUF)
            r.bind((host, 0))
            r.setblocking(False)
            per[k].relay = r
    addrs: list[tuple[str, int]] = []
    for k in range(n):
        h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        h.bind(("127.0.0.1", 0))
        h.setblocking(False)
        per[k].handoff = h
        addrs.append(h.getsockname()[:2])
    for ws in per:
        ws.handoff_addrs = addrs
    return per


def _close_all(per: list[WorkerSockets]) -> None:
    seen: set[int] = set()
    for ws in per:
        for sock in (*ws.udp, *ws.tcp, *ws.tls, ws.handoff, ws.relay):
            if sock is not None and id(sock) not in seen:
                seen.add(id(sock))
                sock.close()


class StartupError(RuntimeError):
    """A listen address cannot be bound: the message names it."""


def _busy(what: str, exc: OSError) -> StartupError:
    why = exc.strerror or str(exc)
    hint = " (another sipscreen or SIP server?)" if exc.errno == errno.EADDRINUSE else ""
    return StartupError(f"cannot listen on {what}: {why}{hint}")


def _check_metrics_port(config: Config) -> None:
    """Fail early, naming the address, when the metrics port is taken (the
    HTTP server binds it with SO_REUSEADDR, as this probe does)."""
    if config.metrics is None:
        return
    host, port = config.metrics
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise _busy(f"metrics http://{host}:{port}/metrics", exc) from None
