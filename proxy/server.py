"""asyncio adapters around the sans-I/O SIP core, and the worker processes.

How this works (aioquic style, see shared/STYLE.md):

* `Worker` owns one `ProxyCore`. Every input -- a UDP datagram
  (`_UDPProtocol`), a framed TCP message (`_TCPProtocol`, framed with
  `proxy.sip.message.frame_stream`), a handoff datagram from another worker,
  or the core's timer -- is handed to the core with `now` (UNIX epoch derived
  from `loop.time()` plus a fixed offset), then `_flush()` drains
  `core.datagrams_to_send()` and re-arms ONE `loop.call_at` handle from
  `core.get_timer()`.
* Outputs: `"udp"` goes out of our UDP listen socket (so the peer's answers
  come back to the address in our Via, RFC 3261 §18.2.1); `"tcp"` goes on
  the connection open to the peer (ip, port), the one a request came in on or
  one we opened. A request to a TCP peer with no connection open (the BYE
  to a caller's Contact, its listening port) opens one (RFC 3261 §18.1.1,
  `Worker._tcp_connect`): the messages wait for it (a bounded queue), the
  attempt counts against the TCP caps and gives up after
  `tcp_connect_timeout_s`; a failure is counted
  (`dropped{reason="tcp_connect_failed"}`) and logged once a minute. A
  response never opens one (§18.2.2: its connection is gone). Connection
  reuse by a Via `alias` (RFC 5923) is not honoured: RFC 5923 allows it
  only over TLS with authenticated peers, so a connection is found only
  under the address it is connected to. `"tls"`: the same, under TLS
  (`tls:` listen addresses, `[proxy] tls_cert`/`tls_key`; the connections we
  open verify the peer's certificate for its address against `tls_ca`; a
  caller's client certificate, verified against `tls_client_ca`, can name its
  trunk: `Worker.tls_client` finds the provider once at the handshake, and
  every message of that connection is screened with it, see
  `Screener.provider_override`; the softswitch may be reached over TLS too);
  `("worker", k)` / `"handoff"` goes to worker k's private 127.0.0.1 socket.
* Several workers (`--workers N`): the parent binds N UDP sockets with
  SO_REUSEPORT on the same address:port *before* forking, attaches a classic
  BPF program (SO_ATTACH_REUSEPORT_CBPF) to the group that picks a socket at
  random (`ld rand; mod #N; ret a`): SO_REUSEPORT alone hashes on the source
  address+port, and a trunk (or SIPp) sends from one. Socket k stays open in
  the parent, so a restarted worker k finds its queued datagrams. Each worker
  also gets a private handoff socket for the core's owner-worker messages. A
  TCP message that lands on a worker without the connection is relayed to
  the other workers (`_TCP_RELAY` prefix on the handoff sockets); for a
  request, the worker `_tcp_owner(peer)` opens a connection if it has none. A handoff
  datagram is taken only from a worker's handoff address (the parent binds
  them all, exclusively, before the fork, so no other local process can send
  from one; a spoofed 127/8 source from outside is a martian the kernel
  drops): anything else on that socket is ignored and counted
  (`sipscreen_dropped_total{reason="handoff_foreign"}`, one frozenset probe).
* Metrics: one process serves `/metrics` (prometheus_client's own HTTP
  thread); with workers the parent serves the multiprocess registry (see
  proxy/metrics.py).
* TCP limits (`[limits]`, `_TCPProtocol`): per-worker and per-source
  connection caps (the worker cap kept below RLIMIT_NOFILE, `_FD_RESERVE`
  descriptors left for Redis and the metrics endpoint), and one sweep task
  that closes idle connections and those holding an incomplete message
  (slow loris) past their timeouts; counted, logged at most once a minute.
* Signals: SIGTERM/SIGINT stop (the parent stops its workers, each worker
  flushes its decision records, and spools what Redis did not take for the
  next start to replay). SIGHUP reloads the configuration: the parent checks
  that it loads and signals the workers; each worker (or the single process)
  rebuilds its Screener, core limits and emergency numbers on its loop,
  between two datagrams (`Worker.reload`); a bad file is refused and logged.
  Workers set PR_SET_PDEATHSIG and check their parent pid twice a second, so
  they never outlive a killed parent.
* Any exception in a callback is logged and counted
  (`sipscreen_callback_errors_total`), never fatal.
* Replay clock (`run --clock` / `[proxy] clock`): the Screener's decision
  clock is `config.clock_start` plus the real time elapsed since the proxy
  started (`replay_clock`), anchored once in the parent so every worker (and
  a restarted one) agrees; SIP timers keep running on the loop's clock.
* uvloop when importable (`--loop auto|uvloop|asyncio`); on the stdlib loop
  `transport.max_size = 65536` (its 256 KiB per-datagram receive buffer is
  its main cost, shared/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import shlex
import signal
import socket
import ssl
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from proxy.config import Config, cert_names, client_tls_context, server_tls_context
from proxy.metrics import Metrics, enable_multiprocess, multiprocess_registry
from proxy.redis_url import async_client, is_sentinel, sync_client
from proxy.screen import DECISION_LOGGER, Screener
from proxy.sip.core import CoreConfig, ProxyCore
from proxy.sip.message import frame_stream

__all__ = [
    "SO_ATTACH_REUSEPORT_CBPF",
    "Worker",
    "WorkerSockets",
    "attach_random_cbpf",
    "bind_sockets",
    "decision_clock",
    "loop_factory",
    "replay_clock",
    "run",
    "seed_sample_data",
    "setup_logging",
]

log = logging.getLogger("sipscreen")

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h
_SKF_AD_OFF = -0x1000  # linux/filter.h
_SKF_AD_RANDOM = 56
_TCP_RELAY = b"\x00TCP "
# Before a handoff frame: the provider of the TLS connection the message came on
# (its verified client certificate, issue 14), for the screen of the owner worker
_TLS_PROVIDER = b"\x00PROV "
_UDP_RCVBUF = 4 * 1024 * 1024
_FIRST_SNAPSHOT_WAIT = 5.0  # seconds a worker waits for its first snapshot
_FD_RESERVE = 64  # descriptors kept free of TCP connections (Redis, metrics, files)
_TCP_PENDING = 32  # messages queued per outgoing TCP connection while it opens


def _tcp_owner(peer: tuple[str, int], workers: int) -> int:
    """The worker that opens the outgoing TCP connection to ``peer`` (several
    workers: one of them, the same for every message to that peer)."""
    return zlib.crc32(f"{peer[0]} {peer[1]}".encode()) % workers


# ---------------------------------------------------------------------------
# Decision clock
# ---------------------------------------------------------------------------


def replay_clock(start: float, anchor: float | None = None) -> Callable[[], float]:
    """A clock that reads `start` at real time `anchor` (default: now) and
    advances in real time from there."""
    offset = start - (time.time() if anchor is None else anchor)

    def clock() -> float:
        return time.time() + offset

    return clock


def decision_clock(config: Config) -> Callable[[], float]:
    """The Screener's clock: real time, or the replay clock of `config`."""
    if config.clock_start is None:
        return time.time
    return replay_clock(config.clock_start)


# ---------------------------------------------------------------------------
# Event loop selection
# ---------------------------------------------------------------------------


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """`uvloop.new_event_loop` for "uvloop" (or "auto" when importable)."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.startswith("uvloop")


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


def attach_random_cbpf(sock: socket.socket, n: int) -> None:
    """Spread a SO_REUSEPORT group's datagrams at random over its n sockets.

    Classic BPF: A = random u32 (SKF_AD_RANDOM); A %= n; return A (the
    index of the socket in the group, in bind order).
    """
    prog = (_SockFilter * 3)(
        _SockFilter(0x20, 0, 0, (_SKF_AD_OFF + _SKF_AD_RANDOM) & 0xFFFFFFFF),  # ld [rand]
        _SockFilter(0x94, 0, 0, n),  # BPF_ALU|BPF_MOD|BPF_K: mod #n
        _SockFilter(0x16, 0, 0, 0),  # BPF_RET|BPF_A: ret a
    )
    fprog = _SockFprog(3, ctypes.cast(prog, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


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


try:  # built from proxy/_udpio.c by pip install (optional: no compiler, no batches)
    from proxy import _udpio
except ImportError:  # pragma: no cover
    _udpio = None  # type: ignore[assignment]

# Batched UDP (proxy/_udpio.c): datagrams taken per recvmmsg, and the rounds of
# it one readiness callback runs before it lets the loop serve anything else.
_BATCH = 64
_DRAIN_ROUNDS = 8

# a way out for UDP: a transport, or (batched) a socket fd (Worker._udp_route)
_Out = TypeVar("_Out")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


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

    UDP: one SO_REUSEPORT socket per worker per address (plus the random
    CBPF spreader when workers > 1). TCP: one listening socket per address
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
                attach_random_cbpf(per[0].udp[-1], n)
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


# ---------------------------------------------------------------------------
# Protocols
# ---------------------------------------------------------------------------


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)
        if not _is_uvloop(asyncio.get_running_loop()) and hasattr(transport, "max_size"):
            # PERFORMANCE.md: the stdlib loop allocates 256 KiB per datagram.
            transport.max_size = 65536

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.worker.on_datagram(data, (addr[0], addr[1]), "udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable etc. on a connectionless socket: not fatal.
        self.worker.metrics.drop("send_error")


class _HandoffProtocol(asyncio.DatagramProtocol):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.worker.on_handoff(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.worker.metrics.drop("send_error")


class _TCPProtocol(asyncio.Protocol):
    """One TCP connection: a stream buffer framed by Content-Length
    (RFC 3261 §18.3).

    Limits (issue 10.6, ``[limits]``): the worker refuses a connection over its
    per-worker or per-source cap (closed at once, counted, logged once a
    minute); ``Worker._sweep_tcp`` closes a connection idle for
    ``tcp_idle_timeout_s`` or holding a message whose header and body have
    not all arrived ``tcp_header_timeout_s`` after its first byte (slow loris).
    """

    _MAX_BUFFER = 256 * 1024

    __slots__ = (
        "worker",
        "kind",
        "buffer",
        "peer",
        "transport",
        "last",
        "partial_since",
        "counted",
        "provider",
    )

    def __init__(self, worker: Worker, kind: str = "tcp") -> None:
        self.worker = worker
        self.kind = kind  # "tcp", or "tls" (the same stream, under TLS)
        self.buffer = bytearray()
        self.peer: tuple[str, int] = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.last = 0.0  # loop time of the last bytes received
        self.partial_since: float | None = None  # loop time an incomplete message began
        self.counted = False  # in the worker's connection counts
        # TLS: the trunk whose tls_subject the verified client certificate names,
        # found once at the handshake; it overrides the screen's provider lookup
        self.provider: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        if self.kind == "tls" and not self.worker.tls_client(self, transport):
            self.transport.abort()
            return
        if not self.worker.tcp_admit(self):
            self.transport.abort()
            return
        self.worker.tcp_conns[self.peer] = self.transport

    def data_received(self, data: bytes) -> None:
        now = self.worker.loop_time()
        self.last = now
        if not self.buffer:
            self.partial_since = now
        self.buffer += data
        self._frame()
        if not self.buffer:
            self.partial_since = None

    def _frame(self) -> None:
        while self.buffer:
            try:
                msg, consumed = frame_stream(bytes(self.buffer))
            except Exception:
                # Unframeable stream: nothing can be resynchronised (§18.3).
                self.worker.metrics.parse_error("stream")
                if self.transport is not None:
                    self.transport.close()
                self.buffer.clear()
                return
            if consumed:
                del self.buffer[:consumed]
            if msg is None:
                if len(self.buffer) > self._MAX_BUFFER:
                    self.worker.metrics.parse_error("stream")
                    if self.transport is not None:
                        self.transport.close()
                    self.buffer.clear()
                return
            if self.buffer:  # the next message has begun with these bytes
                self.partial_since = self.last
            self.worker.on_datagram(msg, self.peer, self.kind, self.provider)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker.tcp_conns.get(self.peer) is self.transport:
            del self.worker.tcp_conns[self.peer]
        self.worker.tcp_release(self)


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------


class Worker:
    """One event loop, one ProxyCore, its listeners and background tasks."""

    def __init__(
        self,
        config: Config,
        sockets: WorkerSockets,
        *,
        index: int = 0,
        metrics: Metrics | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] | None = None,
        reloader: Callable[[], Config] | None = None,
        parent_pid: int | None = None,
    ) -> None:
        self.config = config
        # SIGHUP: reads the configuration again (None: nothing to read)
        self.reloader = reloader
        # A forked worker: the supervisor it must not outlive (checked twice a second)
        self.parent_pid = parent_pid
        # The decision clock (time.time unless a replay clock is configured).
        self.clock = clock if clock is not None else decision_clock(config)
        # Shared by all workers: the core's branch and To-tag MACs must agree.
        self.secret = secret if secret is not None else os.urandom(16)
        self.sockets = sockets
        self.index = index
        self.metrics = metrics if metrics is not None else Metrics(worker=index)
        self.tcp_conns: dict[tuple[str, int], asyncio.Transport] = {}
        self.udp_out: dict[int, asyncio.DatagramTransport] = {}
        self.handoff_transport: asyncio.DatagramTransport | None = None
        self.relay_transport: asyncio.DatagramTransport | None = None
        # Batched UDP (config batched_udp, proxy/_udpio.c): socket fds read by
        # _drain and written by _send_items, instead of the transports above.
        self._batched = False
        self._udp_fd: dict[int, int] = {}  # family -> fd of a listen socket
        self._relay_fd: int | None = None
        self._handoff_fd: int | None = None
        self._readers: list[int] = []
        self._softswitch = (config.softswitch[0], int(config.softswitch[1]))
        self.tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # (sockets, high, low) for _check_overload, set by _watch_overload
        self._overload: tuple[list[socket.socket], int, int] | None = None
        self._offset = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._stop: asyncio.Event | None = None
        self.store: Any = None
        self.records: Any = None
        self.core: Any = None
        self.screener: Screener | None = None
        self._records_dropped: dict[str, int] = {}  # by reason, as last synced
        # The handoff sockets of the workers (bound by the parent before the
        # fork): the only sources a handoff datagram is taken from (issue 10.5).
        self._handoff_peers = frozenset((h, p) for h, p in sockets.handoff_addrs)
        self.reloads = 0
        # TCP connections (issue 10.6): the open ones, their count per source IP,
        # the per-worker cap in force (config, clipped below RLIMIT_NOFILE by serve)
        self._tcp_protos: set[_TCPProtocol] = set()
        self._tcp_per_ip: dict[str, int] = {}
        self._tcp_cap = config.tcp_max_connections
        self._log_at: dict[str, float] = {}  # rate-limited warnings: key -> next allowed
        # Outgoing TCP connections being opened: peer -> the messages waiting for it
        self._tcp_pending: dict[tuple[str, int], list[bytes]] = {}
        self._tls_client: ssl.SSLContext | None = None  # made at the first TLS connect
        # TLS trunks by certificate name (config tls_trunks, see config.cert_names)
        self._tls_subjects = dict(config.tls_trunks)
        # The provider of the TLS connection whose message is being taken (and
        # flushed): the screen's override, and what a handoff carries along
        self._provider: str | None = None

    # -- construction ----------------------------------------------------------

    def _core_config(self) -> CoreConfig:
        udp = [ls for ls in self.config.listen if ls[0] == "udp"]
        first = udp[0] if udp else self.config.listen[0]
        port = self.sockets.udp[0].getsockname()[1] if self.sockets.udp else first[2]
        relay = self.sockets.relay
        tcp_port = self.sockets.tcp[0].getsockname()[1] if self.sockets.tcp else None
        tls_port = self.sockets.tls[0].getsockname()[1] if self.sockets.tls else None
        return _make_core_config(
            self.config,
            first[1],
            port,
            self.index,
            self.sockets.handoff_addrs,
            self.secret,
            relay.getsockname()[1] if relay is not None else None,
            tcp_port,
            tls_port,
        )

    def _build(self) -> None:
        from proxy.records import RecordWriter
        from proxy.store.snapshot_store import SnapshotStore

        cfg = self.config
        self.store = _make_store(SnapshotStore, cfg, self.metrics)
        self.records = _make_records(RecordWriter, cfg, self.metrics)
        self.screener = Screener(cfg, self.store, self.metrics, self.records, clock=self.clock)
        self.core = ProxyCore(self._core_config(), self.screener)

    # -- configuration reload (SIGHUP) ---------------------------------------------

    def reload(self) -> bool:
        """Read the configuration again and apply what a worker builds from it: the
        screener (trunk map, trusted header, answers, monitor, records sampling,
        no-snapshot policy), the emergency numbers and callers and the
        unmapped-provider policy of the store and its snapshot, the core's
        per-source limits and the trusted header it cuts from untrusted sources.
        Runs on the loop, between two datagrams. A configuration that does not
        load is refused (logged), the one in force is kept. Returns True when applied."""
        if self.reloader is None:
            log.warning("worker %d: SIGHUP: no configuration file to reload", self.index)
            return False
        try:
            new = self.reloader()
            screener = Screener(new, self.store, self.metrics, self.records, clock=self.clock)
        except Exception as exc:
            log.error(
                "worker %d: configuration reload refused, the old one stays in force: %s",
                self.index,
                exc,
            )
            return False
        new, kept = restart_only(self.config, new)
        if kept:
            log.warning(
                "worker %d: reload: %s changed, applied only at the next restart",
                self.index,
                ", ".join(kept),
            )
        self.config = new
        self._tls_subjects = dict(new.tls_trunks)  # for connections from now on
        self._tcp_cap = new.tcp_max_connections
        if self.sockets.tcp or self.sockets.tls:
            self._clip_tcp_cap()
        self.screener = screener
        if self.core is not None:
            self.core.screen = screener
            self.core.set_limits(self._core_config())
        store = self.store
        if store is not None:
            store.emergency = new.emergency_numbers
            store.emergency_callers = frozenset(int(n[1:]) for n in new.emergency_callers)
            store.unmapped_provider_policy = new.unmapped_provider_policy
            store.shaken_policy = new.shaken_policy
            snap = getattr(store, "snapshot", None)
            if snap is not None:
                snap.emergency = new.emergency_numbers
                snap.emergency_caller_config = store.emergency_callers
                snap.unmapped_provider_policy = new.unmapped_provider_policy
                snap.shaken_policy = new.shaken_policy
        self.reloads += 1
        log.info("worker %d: configuration reloaded from %s", self.index, new.source_path)
        return True

    # -- TCP limits -----------------------------------------------------------------

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def tcp_admit(self, proto: _TCPProtocol) -> bool:
        """A new connection: False (refused, counted, logged) when it is over the
        worker's cap or its source's (``[limits] tcp_max_*``)."""
        ip = proto.peer[0]
        n_ip = self._tcp_per_ip.get(ip, 0)
        per_source = self.config.tcp_max_per_source
        if len(self._tcp_protos) >= self._tcp_cap:
            reason = "worker_cap"
        elif per_source and n_ip >= per_source:
            reason = "source_cap"
        else:
            self._tcp_per_ip[ip] = n_ip + 1
            self._tcp_protos.add(proto)
            proto.counted = True
            proto.last = self.loop_time()
            self.metrics.tcp_open.inc()
            return True
        self.metrics.tcp_refused_children[reason].inc()
        self._warn_limited(
            reason,
            "worker %d: TCP connection from %s refused: %s reached (%d open, %d from it)",
            self.index,
            ip,
            reason,
            len(self._tcp_protos),
            n_ip,
        )
        return False

    def tls_client(self, proto: _TCPProtocol, transport: asyncio.BaseTransport) -> bool:
        """A TLS connection after its handshake (a client certificate presented has
        been verified against tls_client_ca by then): its provider from the
        certificate's names (``config.cert_names``), once for the connection.
        False (refused, counted, logged) when tls_verify_client is "required"
        and no certificate was presented. Our own outgoing connections (the
        protocol has no server side there) are not asked."""
        mode = self.config.tls_verify_client
        if mode == "none" or transport.get_extra_info("sslcontext") is self._tls_client:
            return True
        cert = transport.get_extra_info("peercert")
        if cert:
            subjects = self._tls_subjects
            if subjects:
                for name in cert_names(cert):
                    hit = subjects.get(name)
                    if hit is not None:
                        proto.provider = hit
                        break
            return True
        if mode != "required":
            return True
        self.metrics.tcp_refused_children["tls_client_cert"].inc()
        self._warn_limited(
            "tls_client_cert",
            "worker %d: TLS connection from %s refused: no client certificate "
            "(tls_verify_client = required)",
            self.index,
            proto.peer[0],
        )
        return False

    def tcp_release(self, proto: _TCPProtocol) -> None:
        if not proto.counted:
            return
        proto.counted = False
        self._tcp_protos.discard(proto)
        ip = proto.peer[0]
        n = self._tcp_per_ip.get(ip, 1) - 1
        if n > 0:
            self._tcp_per_ip[ip] = n
        else:
            self._tcp_per_ip.pop(ip, None)
        self.metrics.tcp_open.dec()

    def _warn_limited(self, key: str, msg: str, *args: Any) -> None:
        """A warning logged at most once a minute per ``key``."""
        t = time.monotonic()
        if t >= self._log_at.get(key, 0.0):
            self._log_at[key] = t + 60.0
            log.warning(msg + " (logged at most once a minute)", *args)

    async def _sweep_tcp(self) -> None:
        """Close the TCP connections idle for ``tcp_idle_timeout_s``, or holding a
        message begun ``tcp_header_timeout_s`` ago and still incomplete (header or
        body: slow loris). One pass over the connections every ``step`` seconds."""
        while True:
            cfg = self.config
            idle, partial = cfg.tcp_idle_timeout_s, cfg.tcp_header_timeout_s
            step = min([t / 4 for t in (idle, partial) if t > 0] + [1.0])
            await asyncio.sleep(max(step, 0.05))
            try:
                now = self.loop_time()
                for proto in list(self._tcp_protos):
                    t = proto.transport
                    if t is None or t.is_closing():
                        continue
                    since = proto.partial_since
                    if partial > 0 and since is not None and now - since > partial:
                        kind = "incomplete"
                    elif idle > 0 and now - proto.last > idle:
                        kind = "idle"
                    else:
                        continue
                    self.metrics.tcp_timeout_children[kind].inc()
                    self._warn_limited(
                        "timeout_" + kind,
                        "worker %d: TCP connection from %s:%d closed: %s timeout",
                        self.index,
                        proto.peer[0],
                        proto.peer[1],
                        kind,
                    )
                    t.abort()
            except Exception:
                self._callback_error("sweep_tcp")

    def _clip_tcp_cap(self) -> None:
        """Keep the per-worker TCP cap below RLIMIT_NOFILE, with room for the other
        descriptors (listen sockets, Redis, the metrics endpoint's own)."""
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return
        try:
            in_use = len(os.listdir("/proc/self/fd"))
        except OSError:
            in_use = 64
        room = max(0, soft - in_use - _FD_RESERVE)
        if room < self._tcp_cap:
            log.warning(
                "worker %d: at most %d TCP connections (limits.tcp_max_connections = %d, "
                "but RLIMIT_NOFILE is %d and %d descriptors are kept for the rest)",
                self.index,
                room,
                self.config.tcp_max_connections,
                soft,
                in_use + _FD_RESERVE,
            )
            self._tcp_cap = room

    def _parent_gone(self) -> bool:
        """A forked worker whose supervisor died (it is then re-parented)."""
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    # -- clock -------------------------------------------------------------------

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() + self._offset

    # -- inputs ------------------------------------------------------------------

    def on_datagram(
        self, data: bytes, src: tuple[str, int], transport: str, provider: str | None = None
    ) -> None:
        if provider is None:
            self._take(data, src, transport, self.now())
            self._flush()
            return
        # a TLS trunk's connection: its provider for the screen (and any handoff)
        self._provider = self.screener.provider_override = provider  # type: ignore[union-attr]
        try:
            self._take(data, src, transport, self.now())
            self._flush()
        finally:
            self._provider = self.screener.provider_override = None  # type: ignore[union-attr]

    def _take(self, data: bytes, src: tuple[str, int], transport: str, now: float) -> None:
        """One message into the core; what it answers waits for ``_flush``."""
        self.metrics.datagrams_in += 1  # exported by the periodic _sync_metrics
        try:
            self.core.datagram_received(data, src, transport, now)
        except Exception:
            self._callback_error("datagram_received")

    def _drain(self, fd: int, handoff: bool = False) -> None:
        """The socket ``fd`` is readable: run its waiting datagrams through the core in
        batches, sending what each batch produced before taking the next. ``handoff``:
        the socket other workers hand messages to (see on_handoff)."""
        recv = _udpio.recv_batch
        for _ in range(_DRAIN_ROUNDS):  # bounded: then timers and other sockets get a turn
            try:
                batch = recv(fd, _BATCH)
            except OSError:  # an ICMP error reported on the socket: not fatal
                self.metrics.drop("recv_error")
                continue
            if not batch:
                break
            now = self.now()
            if handoff:
                peers = self._handoff_peers
                for data, src in batch:
                    if src in peers:
                        self._take_handoff(data, now)
                    else:
                        self._foreign_handoff(src)
            else:
                for data, src in batch:
                    self._take(data, src, "udp", now)
            self._flush()
            if len(batch) < _BATCH:
                break
            self._check_overload()  # a full batch: more waits behind it

    def on_handoff(self, data: bytes, src: tuple[str, int]) -> None:
        if src not in self._handoff_peers:
            self._foreign_handoff(src)
            return
        self._take_handoff(data, self.now())
        self._flush()

    def _foreign_handoff(self, src: tuple[str, int]) -> None:
        """A datagram on the handoff socket that no worker sent: ignored, counted
        (``sipscreen_dropped_total{reason="handoff_foreign"}``), logged at most
        once a minute. Only a worker's own handoff socket (bound by the parent,
        exclusively, on 127.0.0.1) can send from a worker's handoff address."""
        self.metrics.drop("handoff_foreign")
        self._warn_limited(
            "handoff_foreign",
            "worker %d: ignored a datagram on the worker handoff socket from %s:%d (not a worker)",
            self.index,
            src[0],
            src[1],
        )

    def _take_handoff(self, data: bytes, now: float) -> None:
        """A message another worker handed here: for the core, or for a TCP connection
        of ours (sent at once)."""
        if data.startswith(_TCP_RELAY):
            self._relay_tcp_in(data)
            return
        if data.startswith(_TLS_PROVIDER):
            nl = data.find(b"\n")
            provider = data[len(_TLS_PROVIDER) : nl].decode("utf-8", "replace")
            screener = self.screener
            assert screener is not None
            screener.provider_override = provider
            try:
                self.core.datagram_received_handoff(data[nl + 1 :], now)
            except Exception:
                self._callback_error("datagram_received_handoff")
            finally:
                screener.provider_override = None
            return
        try:
            self.core.datagram_received_handoff(data, now)
        except Exception:
            self._callback_error("datagram_received_handoff")

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.core.handle_timer(self.now())
        except Exception:
            self._callback_error("handle_timer")
        self._flush()

    def _callback_error(self, where: str) -> None:
        self.metrics.callback_errors.inc()
        log.exception("unhandled exception in %s (worker %d)", where, self.index)

    # -- outputs -----------------------------------------------------------------

    def _flush(self) -> None:
        try:
            out = self.core.datagrams_to_send()
            if self._batched:
                self._send_batched(out)
            else:
                for data, dest, transport in out:
                    self._send(data, dest, transport)
        except Exception:
            self._callback_error("datagrams_to_send")
        self._arm_timer()

    def _send_batched(self, out: list[Any]) -> None:
        """Send the core's output in order, the UDP datagrams in sendmmsg batches."""
        m = self.metrics
        items: list[tuple[bytes, str, int]] = []
        fd = -1
        workers = self.sockets.handoff_addrs
        for data, dest, transport in out:
            if transport == "udp":
                f = self._udp_route(dest, self._relay_fd, self._udp_fd)
                if f is None:
                    continue
                m.count_out(data)
            elif transport == "handoff" and self._handoff_fd is not None:
                f = self._handoff_fd
                k = dest[1]
                if not 0 <= k < len(workers):
                    m.drop("no_route")
                    continue
                dest = workers[k]
                if self._provider is not None and data[:1] == b"S":  # see _send
                    data = b"%s%s\n%s" % (_TLS_PROVIDER, self._provider.encode(), data)
            else:
                self._send(data, dest, transport)
                continue
            if f != fd and items:
                self._send_items(fd, items)
                items = []
            fd = f
            items.append((data, dest[0], dest[1]))
        if items:
            self._send_items(fd, items)

    def _send_items(self, fd: int, items: list[tuple[bytes, str, int]]) -> None:
        send = _udpio.send_batch
        while items:
            try:
                n = send(fd, items)
            except (OSError, ValueError):  # this datagram cannot go: count it, send the rest
                self.metrics.drop("send_error")
                items = items[1:]
                continue
            if n == 0:  # the socket's send buffer is full (EAGAIN): UDP, the peer retransmits
                self.metrics.drop("send_buffer_full", len(items))
                return
            items = items[n:]

    def _udp_route(self, dest: Any, relay: _Out | None, by_family: dict[int, _Out]) -> _Out | None:
        """What a UDP datagram to ``dest`` leaves by (a transport, or a socket fd when
        batched): the relay socket towards the softswitch, so that its responses
        come back to this worker; else the listen socket of its address family.
        None, counted as no_route: there is none."""
        out = relay if dest == self._softswitch else None
        if out is None:
            out = by_family.get(_family(dest[0]))
            if out is None:
                self.metrics.drop("no_route")
        return out

    def _send(self, data: bytes, dest: Any, transport: str) -> None:
        m = self.metrics
        if transport == "udp":
            t = self._udp_route(dest, self.relay_transport, self.udp_out)
            if t is None:
                return
            m.count_out(data)
            t.sendto(data, (dest[0], dest[1]))
        elif transport == "tcp" or transport == "tls":
            peer = (dest[0], dest[1])
            conn = self.tcp_conns.get(peer)
            if conn is not None and not conn.is_closing():
                m.count_out(data)
                conn.write(data)
                return
            # A request may open a connection (RFC 3261 §18.1.1); a response
            # goes only on the connection it belongs to (§18.2.2).
            request = data[:4] != b"SIP/"
            n = len(self.sockets.handoff_addrs)
            if n > 1 and self.sockets.handoff is not None:
                # The connection may live in another worker: relay to all; the
                # worker that owns the destination opens one if it has none.
                owner = _tcp_owner(peer, n) if request else -1
                head = _TCP_RELAY + f"{dest[0]} {dest[1]} {owner} {transport}\n".encode("ascii")
                for k, addr in enumerate(self.sockets.handoff_addrs):
                    if k != self.index:
                        self._to_worker(head + data, addr)
                if owner == self.index:
                    self._tcp_connect(peer, data, transport)
            elif request:
                self._tcp_connect(peer, data, transport)
            else:
                m.drop("tcp_no_connection")
                self._warn_limited(
                    "tcp_no_connection",
                    "worker %d: response to %s:%d dropped: its TCP connection is closed",
                    self.index,
                    dest[0],
                    dest[1],
                )
        else:  # "handoff" to ("worker", k)
            k = dest[1]
            if self.sockets.handoff is None or not 0 <= k < len(self.sockets.handoff_addrs):
                m.drop("no_route")
                return
            if self._provider is not None and data[:1] == b"S":  # a handoff frame
                data = b"%s%s\n%s" % (_TLS_PROVIDER, self._provider.encode(), data)
            self._to_worker(data, self.sockets.handoff_addrs[k])

    def _to_worker(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram to another worker's handoff socket."""
        if self.handoff_transport is not None:
            self.handoff_transport.sendto(data, addr)
            return
        assert self.sockets.handoff is not None
        try:  # batched mode: no transport on the socket (drained by _drain)
            self.sockets.handoff.sendto(data, addr)
        except OSError:
            self.metrics.drop("send_error")

    def _relay_tcp_in(self, data: bytes) -> None:
        """A TCP message another worker could not send: written on our connection to
        its destination; else, when we own the destination (``_tcp_owner``), sent on
        a new connection."""
        nl = data.find(b"\n")
        try:
            host, port_s, owner_s, kind = data[len(_TCP_RELAY) : nl].decode("ascii").split(" ")
            peer = (host, int(port_s))
            owner = int(owner_s)
        except ValueError:
            return
        conn = self.tcp_conns.get(peer)
        payload = data[nl + 1 :]
        if conn is not None and not conn.is_closing():
            self.metrics.count_out(payload)
            conn.write(payload)
        elif owner == self.index:
            self._tcp_connect(peer, payload, "tls" if kind == "tls" else "tcp")

    # -- outgoing TCP connections (RFC 3261 §18.1.1) ----------------------------------

    def _tcp_connect(self, peer: tuple[str, int], data: bytes, kind: str = "tcp") -> None:
        """Send ``data`` (a request) on a new connection to ``peer``: queued while
        the connection is being opened (one attempt per peer at a time, at most
        ``_TCP_PENDING`` messages each), refused when the worker's or the peer's
        connection cap is reached; a failure is counted and logged."""
        pending = self._tcp_pending.get(peer)
        if pending is not None:
            if len(pending) < _TCP_PENDING:
                pending.append(data)
            else:
                self._tcp_send_failed(peer, "queue_full", 1)
            return
        per_source = self.config.tcp_max_per_source
        if len(self._tcp_protos) + len(self._tcp_pending) >= self._tcp_cap:
            self._tcp_send_failed(peer, "worker_cap", 1)
            return
        if per_source and self._tcp_per_ip.get(peer[0], 0) >= per_source:
            self._tcp_send_failed(peer, "source_cap", 1)
            return
        self._tcp_pending[peer] = [data]
        self._spawn(self._open_tcp(peer, kind), "tcp_connect")

    async def _open_tcp(self, peer: tuple[str, int], kind: str = "tcp") -> None:
        loop = asyncio.get_running_loop()
        timeout = self.config.tcp_connect_timeout_s or None
        why = "refused"
        transport: asyncio.BaseTransport | None = None
        proto: _TCPProtocol | None = None
        try:
            if kind == "tls":
                # the peer's certificate is verified for its address (tls_ca)
                coro = loop.create_connection(
                    lambda: _TCPProtocol(self, "tls"),
                    peer[0],
                    peer[1],
                    ssl=self._client_tls(),
                    server_hostname=peer[0],
                )
            else:
                coro = loop.create_connection(lambda: _TCPProtocol(self), peer[0], peer[1])
            transport, proto = await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            why = "timeout"
        except ssl.SSLError as exc:
            why = "tls: " + str(exc.reason or exc).lower()
        except OSError as exc:
            why = errno.errorcode.get(exc.errno or 0, "error").lower()
        msgs = self._tcp_pending.pop(peer, [])
        if proto is None or transport is None or not proto.counted or transport.is_closing():
            self._tcp_send_failed(peer, why if proto is None else "cap", len(msgs))
            return
        tr = cast(asyncio.Transport, transport)
        for msg in msgs:
            self.metrics.count_out(msg)
            tr.write(msg)

    def _client_tls(self) -> ssl.SSLContext:
        ctx = self._tls_client
        if ctx is None:
            ctx = self._tls_client = client_tls_context(self.config)
        return ctx

    def _tcp_send_failed(self, peer: tuple[str, int], why: str, n: int) -> None:
        self.metrics.drop("tcp_connect_failed", n)
        self._warn_limited(
            "tcp_connect_" + why,
            "worker %d: TCP connection to %s:%d failed (%s): %d message(s) dropped",
            self.index,
            peer[0],
            peer[1],
            why,
            n,
        )

    def _arm_timer(self) -> None:
        # One timer handle per core (STYLE.md §4), re-armed after each input.
        try:
            at = self.core.get_timer()
        except Exception:
            self._callback_error("get_timer")
            return
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            assert self._loop is not None
            self._timer = self._loop.call_at(at - self._offset, self._on_timer)

    # -- lifecycle ---------------------------------------------------------------

    def _exception_handler(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        self.metrics.callback_errors.inc()
        exc = ctx.get("exception")
        log.error(
            "event loop error (worker %d): %s",
            self.index,
            ctx.get("message"),
            exc_info=exc if isinstance(exc, BaseException) else None,
        )

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics.callback_errors.inc()
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def _sync_metrics(self) -> None:
        while True:
            try:
                self.metrics.sync_core_stats(getattr(self.core, "stats", None))
                snap = getattr(self.store, "snapshot", None) if self.store.loaded else None
                if snap is not None:
                    self.metrics.set_snapshot(_snapshot_entries(snap), _loaded_at(snap))
                self.metrics.redis_up.set(1 if getattr(self.store, "connected", False) else 0)
                by_reason = getattr(self.records, "dropped_by_reason", None) or {}
                for reason, dropped in by_reason.items():
                    seen = self._records_dropped.get(reason, 0)
                    if dropped > seen:
                        self.metrics.records_dropped_children[reason].inc(dropped - seen)
                        self._records_dropped[reason] = dropped
                self.metrics.redis_data_lost.set(
                    1 if getattr(self.store, "data_lost", False) else 0
                )
                if self._parent_gone():
                    log.error("worker %d: the supervisor is gone; stopping", self.index)
                    self.stop()
            except Exception:
                self._callback_error("sync_metrics")
            await asyncio.sleep(0.5)

    async def _watch_overload(self) -> None:
        """Load shedding (shared/PERFORMANCE.md: shed early, before parsing).

        Every 20 ms, read how many bytes wait in the receive queues of this
        worker's UDP sockets (``_check_overload``). Above ``overload_queue_kib``
        the worker is behind (each queued datagram ages while it waits, and
        callers start to retransmit, which only adds load): the core answers new
        INVITEs 503 with Retry-After until the queue is under a quarter of that
        again. Calls already set up keep going; in-dialog requests and responses
        are never shed. The batched drain checks too, whenever a batch comes
        back full: a burst read in one readable event must not wait for the
        tick (the kernel queue is then deeper than one batch).
        """
        socks = [*self.sockets.udp]
        if self.sockets.relay is not None:
            socks.append(self.sockets.relay)
        high = self.config.overload_queue_kib * 1024
        # never above half of what the kernel would queue (a small rmem_max)
        bufs = [q[1] for q in map(receive_queue, socks) if q is not None]
        if bufs:
            high = min(high, min(bufs) // 2)
        self._overload = (socks, high, high // 4)
        while True:
            await asyncio.sleep(0.02)
            self._check_overload()

    def _check_overload(self) -> None:
        """Enter or leave the overloaded state from the bytes queued now."""
        if self._overload is None:
            return
        socks, high, low = self._overload
        try:
            queued = 0
            for sk in socks:
                q = receive_queue(sk)
                queued += q[0] if q is not None else 0
            core = self.core
            if not core.overloaded and queued > high:
                core.overloaded = True
                log.warning(
                    "worker %d: overloaded (%d KiB queued): answering new INVITEs 503",
                    self.index,
                    queued // 1024,
                )
            elif core.overloaded and queued < low:
                core.overloaded = False
                log.warning("worker %d: load back to normal, shedding stopped", self.index)
        except Exception:
            self._callback_error("watch_overload")

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._offset = time.time() - loop.time()
        loop.set_exception_handler(self._exception_handler)
        self._stop = asyncio.Event()
        self._build()
        self._spawn(self.store.run(), "store")
        if hasattr(self.records, "run"):
            self._spawn(self.records.run(), "records")
        self._spawn(self._sync_metrics(), "metrics")
        if self.config.overload_queue_kib > 0:
            self._spawn(self._watch_overload(), "overload")
        # Screen the first call on real data: the sockets are bound already,
        # so datagrams wait in the kernel while the first snapshot loads. If
        # Redis does not answer in time, no_snapshot_policy applies.
        try:
            await asyncio.wait_for(self.store.synced.wait(), _FIRST_SNAPSHOT_WAIT)
        except TimeoutError:
            log.warning(
                "worker %d: no snapshot after %.0f s; serving with no_snapshot_policy=%s",
                self.index,
                _FIRST_SNAPSHOT_WAIT,
                self.config.no_snapshot_policy,
            )
        self._batched = self.config.batched_udp and _udpio is not None
        for s in self.sockets.udp:
            if self._batched:
                loop.add_reader(s.fileno(), self._drain, s.fileno())
                self._readers.append(s.fileno())
                self._udp_fd.setdefault(s.family, s.fileno())
                continue
            _t, up = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=s)
            assert up.transport is not None
            self.udp_out.setdefault(s.family, up.transport)
        if self.sockets.relay is not None:
            if self._batched:
                fd = self.sockets.relay.fileno()
                loop.add_reader(fd, self._drain, fd)
                self._readers.append(fd)
                self._relay_fd = fd
            else:
                _t, rp = await loop.create_datagram_endpoint(
                    lambda: _UDPProtocol(self), sock=self.sockets.relay
                )
                self.relay_transport = rp.transport
        if self.sockets.handoff is not None:
            if self._batched:
                fd = self.sockets.handoff.fileno()
                loop.add_reader(fd, self._drain, fd, True)
                self._readers.append(fd)
                self._handoff_fd = fd
            else:
                ht, _ = await loop.create_datagram_endpoint(
                    lambda: _HandoffProtocol(self), sock=self.sockets.handoff
                )
                self.handoff_transport = ht
        if self.sockets.tcp or self.sockets.tls:
            self._clip_tcp_cap()
            self._spawn(self._sweep_tcp(), "tcp_timeouts")
        for s in self.sockets.tcp:
            srv = await loop.create_server(lambda: _TCPProtocol(self), sock=s)
            self._servers.append(srv)
        if self.sockets.tls:
            ctx = server_tls_context(self.config)
            hs = self.config.tcp_header_timeout_s or None
            for s in self.sockets.tls:
                srv = await loop.create_server(
                    lambda: _TCPProtocol(self, "tls"), sock=s, ssl=ctx, ssl_handshake_timeout=hs
                )
                self._servers.append(srv)
        if ready is not None:
            ready()
        await self._stop.wait()
        await self._close()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def _spool_records(self) -> None:
        """Decision records the last flush could not write (Redis down): to the spool
        file that the next start replays (proxy/records.py)."""
        take = getattr(self.records, "take_all", None)
        if take is None or not len(self.records):
            return
        from proxy.records import default_spool_dir, spool

        recs = take()
        directory = self.config.spool_dir or default_spool_dir()
        try:
            path = spool(recs, directory, self.config.redis_url, self.config.key_prefix)
        except OSError as exc:
            log.error(
                "worker %d: %d decision records lost: cannot write the spool in %s: %s",
                self.index,
                len(recs),
                directory,
                exc,
            )
            return
        log.warning(
            "worker %d: Redis did not take %d decision records; spooled to %s "
            "(replayed into Redis at the next start)",
            self.index,
            len(recs),
            path,
        )

    async def _close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for srv in self._servers:
            srv.close()
        for conn in list(self.tcp_conns.values()):
            conn.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        # the last counts since the periodic _sync_metrics
        with contextlib.suppress(Exception):
            self.metrics.sync_core_stats(getattr(self.core, "stats", None))
        self._spool_records()
        for t in list(self.udp_out.values()):
            t.close()
        if self._readers and self._loop is not None:
            for fd in self._readers:
                self._loop.remove_reader(fd)
            self._readers = []
            for sock in [*self.sockets.udp, self.sockets.relay, self.sockets.handoff]:
                if sock is not None:
                    sock.close()
        if self.handoff_transport is not None:
            self.handoff_transport.close()
        if self.relay_transport is not None:
            self.relay_transport.close()
        close = getattr(self.store, "close", None) or getattr(self.store, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                res = close()
                if asyncio.iscoroutine(res):
                    await res
        client = getattr(self.records, "redis", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()
        await asyncio.sleep(0)


# ---------------------------------------------------------------------------
# Glue to the other layers (kept in one place: their constructors)
# ---------------------------------------------------------------------------


def _make_core_config(
    config: Config,
    host: str,
    port: int,
    index: int,
    handoff_addrs: list[tuple[str, int]],
    secret: bytes,
    relay_port: int | None = None,
    tcp_port: int | None = None,
    tls_port: int | None = None,
) -> CoreConfig:
    return CoreConfig(
        listen_host=host,
        listen_port=port,
        softswitch=config.softswitch,
        softswitch_transport=config.softswitch_transport,
        record_route=config.record_route,
        advertised_host=config.advertised_host,
        worker_index=index,
        workers=max(1, len(handoff_addrs)),
        secret=secret,
        relay_port=relay_port,
        tcp_port=tcp_port,
        tls_port=tls_port,
        invite_limit=config.invites_per_source,
        invite_window=config.invite_window_s,
        trunk_invite_limit=config.trunk_invites_per_source,
        trunk_of=config.trunks.lookup,
        over_limit_503=config.over_limit == "503",
        unacked_per_source=config.unacked_per_source,
        no_ack_hold=config.no_ack_hold_s,
        trusted_header=config.trusted_provider_header,
        is_trusted_source=config.is_trusted_source,
    )


def _make_store(cls: Any, config: Config, metrics: Metrics) -> Any:
    def on_state(up: bool) -> None:
        metrics.redis_up.set(1 if up else 0)

    def on_change(snap: Any) -> None:
        metrics.set_snapshot(_snapshot_entries(snap), _loaded_at(snap))

    return cls(
        config.redis_url,
        config.key_prefix,
        emergency=config.emergency_numbers,
        emergency_callers=config.emergency_callers,
        unmapped_provider_policy=config.unmapped_provider_policy,
        shaken_policy=config.shaken_policy,
        on_change=on_change,
        on_state=on_state,
    )


def _make_records(cls: Any, config: Config, metrics: Metrics) -> Any:

    client = async_client(config.redis_url, socket_timeout=5)
    return cls(
        client,
        config.key_prefix,
        config.records_max_len,
        config.records_max_age_s,
        queue_max=config.records_buffer_max,
        queue_max_bytes=config.records_buffer_max_bytes,
    )


def _snapshot_entries(snap: Any) -> int | None:
    for name in ("entries", "size", "__len__"):
        v = getattr(snap, name, None)
        if v is None:
            continue
        v = v() if callable(v) else v
        if isinstance(v, int):
            return v
    return None


def _loaded_at(snap: Any) -> float | None:
    v = getattr(snap, "loaded_at", None)
    return float(v) if isinstance(v, (int, float)) else None


# ---------------------------------------------------------------------------
# Redis preparation (parent, before any worker)
# ---------------------------------------------------------------------------


def seed_sample_data(config: Config) -> int:
    """Run the sample-data commands into a Redis that holds no key under the
    prefix (a fresh embedded one, or an explicitly empty prefix).

    Returns the number of commands run: 0 when the file is unset or empty,
    or when any key under the prefix exists (an operator's data, or the
    sample already seeded and since edited: never overwritten or put back).
    """
    if not config.sample_data:
        return 0

    cmds: list[list[str]] = []
    with open(config.sample_data, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = shlex.split(line)
            if len(parts) < 2:
                continue
            parts[1] = config.key_prefix + parts[1]
            cmds.append(parts)
    if not cmds:
        return 0
    r = sync_client(config.redis_url, socket_timeout=5)
    try:
        pattern = _glob_escape(config.key_prefix) + "*"
        for _key in r.scan_iter(match=pattern, count=1000):
            return 0  # not empty under the prefix: leave the operator's data alone
        pipe = r.pipeline(transaction=True)
        for c in cmds:
            pipe.execute_command(*c)  # type: ignore[no-untyped-call]
        pipe.execute()
        return len(cmds)
    finally:
        r.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at ``url`` within a second."""

    r = sync_client(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(r.ping())
    except Exception:
        return False
    finally:
        r.close()


def _prepare_redis(config: Config) -> tuple[Config, Any]:
    """Start the embedded redis-server when nothing answers at the URL; the
    returned Config names its URL and data directory."""
    if is_sentinel(config.redis_url):  # Sentinel: never an embedded server
        return config, None
    if redis_answers(config.redis_url) or not config.redis_embedded:
        return config, None
    from proxy.embedded_redis import default_data_dir, ensure_redis

    data_dir = config.redis_data_dir or default_data_dir()
    handle = asyncio.run(ensure_redis(config.redis_url, data_dir=data_dir))
    if handle is None:
        return config, None
    log.warning(
        "no Redis at %s; started the embedded redis-server at %s, data in %s (AOF on)",
        config.redis_url,
        handle.url,
        handle.workdir,
    )
    return replace(config, redis_url=handle.url, redis_data_dir=handle.workdir), handle


# ---------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------


def setup_logging(level: str) -> None:
    """Handlers set once: decisions as bare JSON lines, the rest prefixed."""
    root = logging.getLogger()
    if getattr(root, "_sipscreen", False):
        root.setLevel(level)
        return
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(h)
    root.setLevel(level)
    dec = logging.getLogger(DECISION_LOGGER)
    dh = logging.StreamHandler(sys.stdout)
    dh.setFormatter(logging.Formatter("%(message)s"))
    dec.addHandler(dh)
    dec.propagate = False
    root._sipscreen = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Entry point: one process, or a parent with N forked workers
# ---------------------------------------------------------------------------


def monitor_only_providers(config: Config, timeout: float = 1.0) -> list[str] | str:
    """Provider ids whose `provider:<id>` hash has monitor_only = 1, read from
    Redis once at start (for the banner); a str says why it could not be read.

    Read directly rather than from a worker's snapshot so the parent of
    several workers prints the same list; a later `provider set
    --monitor-only` shows in `sipscreen check` and the records, not here.
    """
    import redis

    r = sync_client(
        config.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        pfx = config.key_prefix + "provider:"
        out: list[str] = []
        for key in r.scan_iter(match=pfx.replace("*", "\\*") + "*", count=1000):
            pid = str(key)[len(pfx) :]
            if ":" in pid:
                continue
            try:
                if r.hget(key, "monitor_only") == "1":
                    out.append(pid)
            except redis.ResponseError:
                continue  # not a hash: the store warns about it
        return sorted(out)
    except Exception as exc:
        return f"not read ({type(exc).__name__}: {exc})"
    finally:
        r.close()


def _policy_lines(config: Config, monitored: list[str] | str) -> list[str]:
    """Banner lines for the decision policies an operator must know are in force."""
    lines = []
    if config.unmapped_provider_policy == "block":
        what = "BLOCKED (rule unmapped_provider, 47 CFR 64.6305(g))"
    else:
        what = (
            'passed and counted (sipscreen_unmapped_provider_total{action="passed"}, '
            "47 CFR 64.6305(g))"
        )
    lines.append(
        f"sipscreen: unmapped_provider_policy = {config.unmapped_provider_policy}: calls "
        "from a source no trunk maps, or from a provider with no RMD identity, are " + what
    )
    psap = ", ".join(sorted(config.emergency_numbers))
    lines.append(
        f"sipscreen: emergency (47 CFR 64.1200(k)(5)-(6)): calls to {psap}, urn:service:sos[.*]; "
        f"{len(config.emergency_callers)} configured emergency caller(s) + Redis emergency:caller"
    )
    if isinstance(monitored, str):
        lines.append(f"sipscreen: monitor_only providers: {monitored}")
    elif monitored:
        lines.append(
            "sipscreen: monitor_only providers (RMD gate, FDO, notices only counted as "
            f"would_block): {', '.join(monitored)}"
        )
    else:
        lines.append("sipscreen: monitor_only providers: none")
    return lines


def _banner(config: Config, per: list[WorkerSockets], embedded: Any = None) -> str:

    lines = []
    ws = per[0]
    for s in ws.udp:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on udp:{h}:{p} ({config.workers} worker(s))")
    for s in ws.tcp:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on tcp:{h}:{p}")
    for s in ws.tls:
        h, p = s.getsockname()[:2]
        lines.append(f"sipscreen: listening on tls:{h}:{p}")
    sh, sp = config.softswitch
    lines.append(f"sipscreen: forwarding to softswitch {config.softswitch_transport}:{sh}:{sp}")
    if config.metrics is not None:
        mh, mp = config.metrics
        lines.append(f"sipscreen: metrics at http://{mh}:{mp}/metrics")
    lines.append(f"sipscreen: redis {config.redis_url} prefix {config.key_prefix!r}")
    if embedded is not None:
        if getattr(embedded, "persistent", False):
            lines.append(
                f"sipscreen: embedded redis-server, data kept in {embedded.workdir} "
                "(append-only file on; --data-dir to move it)"
            )
        else:
            lines.append("sipscreen: embedded redis-server, data NOT kept (temporary)")
    lines.append(f"sipscreen: block a number with: {config.block_example()}")
    if config.monitor:
        lines.append("sipscreen: MONITOR mode: nothing is blocked, would-blocks are counted")
    if config.clock_start is not None:
        lines.append(f"sipscreen: REPLAY CLOCK from {_iso_utc(config.clock_start)}")
    lines.extend(_policy_lines(config, monitor_only_providers(config)))
    return "\n".join(lines)


def _iso_utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _default_reloader(config: Config) -> Callable[[], Config] | None:
    if config.source_path is None:
        return None
    from proxy.config import load_config

    path = config.source_path
    return lambda: load_config(path)


def replay_spooled_records(config: Config) -> int:
    """Write the decision records spooled by an earlier run back to Redis (before
    any worker starts); a failure is logged and the files wait for the next start."""
    from proxy.records import default_spool_dir, replay_spool

    directory = config.spool_dir or default_spool_dir()

    r = sync_client(config.redis_url, socket_timeout=5)
    try:
        n = replay_spool(r, config.key_prefix, directory, config.redis_url, config.records_max_len)
    except Exception as exc:
        log.warning("spooled decision records in %s not replayed yet: %s", directory, exc)
        return 0
    finally:
        r.close()
    if n:
        log.warning("replayed %d spooled decision records from %s into Redis", n, directory)
    return n


def run(config: Config, reloader: Callable[[], Config] | None = None) -> int:
    """Run the proxy until SIGTERM/SIGINT; SIGHUP reloads the configuration
    (``reloader``, default: the config file again). Returns the exit status."""
    # SIGHUP's default action kills: ignored until the loops install their handlers
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if reloader is None:
        reloader = _default_reloader(config)
    setup_logging(config.log_level)
    clock = decision_clock(config)  # anchored here, once, before any fork
    if config.clock_start is not None:
        log.warning(
            "replay clock in force: screening decisions see %s advancing in real time "
            "(real time now %s); notice deadlines are judged at the replayed time",
            _iso_utc(config.clock_start),
            _iso_utc(time.time()),
        )
    # Bind first: a busy address ends here, naming it, before any Redis is
    # started or written to.
    try:
        _check_metrics_port(config)
        per = bind_sockets(config)
    except StartupError as exc:
        print(f"sipscreen: {exc}", file=sys.stderr)
        return 1
    try:
        config, embedded = _prepare_redis(config)
    except Exception as exc:  # EmbeddedRedisError, a data dir we cannot create
        _close_all(per)
        print(f"sipscreen: cannot start the embedded Redis: {exc}", file=sys.stderr)
        return 1
    try:
        _seed(config)
        replay_spooled_records(config)
        if config.workers == 1:
            return _run_single(config, per[0], clock, embedded, reloader)
        return _run_parent(config, per, clock, embedded, reloader)
    except StartupError as exc:  # the metrics port taken since the check
        print(f"sipscreen: {exc}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            with contextlib.suppress(Exception):
                embedded.stop()


def _seed(config: Config) -> None:
    """Seed the sample data when the Redis is empty under the prefix, and say so."""
    try:
        n = seed_sample_data(config)
    except Exception as exc:  # Redis down now: the store will retry
        log.warning("sample data not seeded: %s", exc)
        return
    if n:
        print(
            f"sipscreen: seeded {n} sample-data commands from {config.sample_data} into "
            f"{config.redis_url} (it held no key under prefix {config.key_prefix!r})",
            flush=True,
        )
    elif config.sample_data:
        log.info(
            "sample data not seeded: %s already holds keys under %r",
            config.redis_url,
            config.key_prefix,
        )


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


def _start_metrics_http(config: Config, registry: Any) -> Any:
    if config.metrics is None:
        return None
    from prometheus_client import start_http_server

    host, port = config.metrics
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise _busy(f"metrics http://{host}:{port}/metrics", exc) from None
    return server


def _run_single(
    config: Config,
    sockets: WorkerSockets,
    clock: Callable[[], float] | None = None,
    embedded: Any = None,
    reloader: Callable[[], Config] | None = None,
) -> int:
    holder: dict[str, Worker] = {}
    worker = Worker(
        config,
        sockets,
        index=0,
        metrics=Metrics(worker=0, snapshot_loaded_at=lambda: _loaded_at_of(holder)),
        clock=clock,
        reloader=reloader,
    )
    holder["w"] = worker
    http = _start_metrics_http(config, worker.metrics.registry)

    def ready() -> None:
        print(_banner(config, [sockets], embedded), flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        loop.add_signal_handler(signal.SIGHUP, worker.reload)
        await worker.serve(ready)

    try:
        with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
            runner.run(main())
    finally:
        if http is not None:
            http.shutdown()
    return 0


# What the sockets, the Redis connections and the processes were set up with: a
# reload keeps these (they need a restart).
_RESTART_ONLY = (
    "listen",
    "softswitch",
    "softswitch_transport",
    "redis_url",
    "key_prefix",
    "metrics",
    "loop",
    "workers",
    "batched_udp",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_client_ca",
    "tls_verify_client",
    "spool_dir",
    "clock_start",
)


def restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the settings only a restart can change taken from ``old``,
    and the names of those that differed."""
    kept = [n for n in _RESTART_ONLY if getattr(new, n) != getattr(old, n)]
    if kept:
        new = replace(new, **{n: getattr(old, n) for n in kept})
    return new, kept


def _forward_reload(
    reloader: Callable[[], Config] | None, pids: dict[int, int], current: Config
) -> Config | None:
    """SIGHUP in the parent: check that the configuration loads, then have every
    worker reload it (each between two of its datagrams); a configuration that
    does not load is refused here, with a log line, and the workers keep theirs.
    Returns the new configuration (for the workers started later), or None."""
    if reloader is None:
        log.warning("SIGHUP: no configuration file to reload")
        return None
    try:
        new = reloader()
    except Exception as exc:
        log.error("configuration reload refused, the old one stays in force: %s", exc)
        return None
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    log.info("configuration reload sent to %d worker(s)", len(pids))
    return restart_only(current, new)[0]


def _loaded_at_of(holder: dict[str, Worker]) -> float | None:
    w = holder.get("w")
    if w is None or w.store is None or not w.store.loaded:
        return None
    return _loaded_at(w.store.snapshot)


def _worker_main(
    config: Config,
    sockets: WorkerSockets,
    index: int,
    mpdir: str,
    secret: bytes,
    clock: Callable[[], float] | None = None,
    reloader: Callable[[], Config] | None = None,
    parent_pid: int | None = None,
) -> int:
    """Body of a forked worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop's handler (reload)
    if parent_pid is not None:
        # The kernel sends SIGTERM when the parent dies (even by SIGKILL); a parent
        # that died before this call has already re-parented us: leave at once.
        _set_pdeathsig(signal.SIGTERM)
        if os.getppid() != parent_pid:
            return 1
    enable_multiprocess(mpdir)
    worker = Worker(
        config,
        sockets,
        index=index,
        metrics=Metrics(worker=index, multiprocess=True),
        secret=secret,
        clock=clock,
        reloader=reloader,
        parent_pid=parent_pid,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        loop.add_signal_handler(signal.SIGHUP, worker.reload)
        await worker.serve()

    with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
        runner.run(main())
    return 0


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _set_pdeathsig(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG, sig): this process gets ``sig`` when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:  # not Linux: the getppid check remains
        log.warning("PR_SET_PDEATHSIG not set (%s); relying on the parent pid check", exc)


def _run_parent(
    config: Config,
    per: list[WorkerSockets],
    clock: Callable[[], float] | None = None,
    embedded: Any = None,
    reloader: Callable[[], Config] | None = None,
) -> int:
    from prometheus_client.multiprocess import mark_process_dead

    mpdir = tempfile.mkdtemp(prefix="sipscreen-metrics-")
    secret = os.urandom(16)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = mpdir
    stopping = False
    hup = False
    parent_pid = os.getpid()

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    def on_hup(signum: int, frame: Any) -> None:
        nonlocal hup
        hup = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)

    def spawn(k: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for j, other in enumerate(per):
                    if j != k:
                        for s in other.udp:
                            s.close()
                        if other.handoff is not None:
                            other.handoff.close()
                        if other.relay is not None:
                            other.relay.close()
                status = _worker_main(config, per[k], k, mpdir, secret, clock, reloader, parent_pid)
            except BaseException:
                log.exception("worker %d crashed", k)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        return pid

    pids: dict[int, int] = {spawn(k): k for k in range(config.workers)}
    http = None
    restarts: dict[int, float] = {}
    try:
        http = _start_metrics_http(config, multiprocess_registry(mpdir))
        print(_banner(config, per, embedded), flush=True)
        while not stopping:
            if hup:
                hup = False
                config = _forward_reload(reloader, pids, config) or config
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                time.sleep(0.1)
                continue
            k = pids.pop(pid, None)
            if k is None:
                continue
            mark_process_dead(pid, mpdir)  # type: ignore[no-untyped-call]
            if stopping:
                break
            # Restart a dead worker, at most once a second per slot.
            wait = restarts.get(k, 0.0) + 1.0 - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            restarts[k] = time.monotonic()
            log.error("worker %d (pid %d) exited with status %d; restarting", k, pid, status)
            pids[spawn(k)] = k
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while pids and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                pids.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if http is not None:
            http.shutdown()
        import shutil

        shutil.rmtree(mpdir, ignore_errors=True)
    return 0
