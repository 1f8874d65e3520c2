"""How a message goes through a worker: in from a socket, through the core,
out to its destination (aioquic style, see the package docstring).

Every input (a UDP datagram, a framed TCP message, a handoff datagram from
another worker, the core's timer) is handed to the core with `now`, then
`_flush()` drains `core.datagrams_to_send()` and re-arms ONE `loop.call_at`
handle from `core.get_timer()`. Batched UDP (`proxy/_udpio.c`): the UDP
sockets are read with `recvmmsg` (`_drain`) and written with `sendmmsg`
(`_send_batched`); else one transport callback per datagram
(`_UDPProtocol`). Load shedding (`_watch_overload`): above
`overload_queue_kib` queued, the core answers new INVITEs 503."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar, cast

from proxy.config.values import canonical_ip
from proxy.server.loops import _is_uvloop
from proxy.server.shedding import ShedPolicy
from proxy.server.sockets import _family, receive_queue
from proxy.server.tcp import _TCP_ALIAS, _TCP_RELAY, TcpSide, _tcp_owner
from proxy.sip.core import Out

log = logging.getLogger("sipscreen")

# Before a handoff frame: the provider of the TLS connection the message came on
# (its verified client certificate, issue 14), for the screen of the owner worker
_TLS_PROVIDER = b"\x00PROV "

try:  # built from proxy/_udpio.c by pip install (optional: no compiler, no batches)
    from proxy import _udpio
except ImportError:  # pragma: no cover
    _udpio = None  # type: ignore[assignment]
BATCHED_UDP = _udpio is not None  # recvmmsg/sendmmsg available

# Batched UDP (proxy/_udpio.c): datagrams taken per recvmmsg, and the rounds of
# it one readiness callback runs before it lets the loop serve anything else.
_BATCH = 64
_DRAIN_ROUNDS = 8

# a way out for UDP: a transport, or (batched) a socket fd (Worker._udp_route)
_Out = TypeVar("_Out")


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, worker: Datapath) -> None:
        self.worker = worker
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not an asyncio.DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)
        if not _is_uvloop(asyncio.get_running_loop()) and hasattr(transport, "max_size"):
            # PERFORMANCE.md: the stdlib loop allocates 256 KiB per datagram.
            transport.max_size = 65536

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # an IPv4 peer of a dual-stack socket by its IPv4 address (as _udpio names it)
        self.worker.on_datagram(data, (canonical_ip(addr[0]), addr[1]), "udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable etc. on a connectionless socket: not fatal.
        self.worker.metrics.drop("send_error")


class _HandoffProtocol(asyncio.DatagramProtocol):
    def __init__(self, worker: Datapath) -> None:
        self.worker = worker

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.worker.on_handoff(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.worker.metrics.drop("send_error")


class Datapath(TcpSide):
    """Inputs to the core, its outputs, its timer, load shedding."""

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
                # _take per datagram, written out (one Python call less each)
                self.metrics.datagrams_in += len(batch)
                received = self.core.datagram_received
                for data, src in batch:
                    try:
                        received(data, src, "udp", now)
                    except Exception:
                        self._callback_error("datagram_received")
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
        if data.startswith(_TCP_ALIAS):
            self._alias_in(data)
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

    def _send_batched(self, out: list[Out]) -> None:
        """Send the core's output in order, the UDP datagrams in sendmmsg batches,
        the messages for one open TCP/TLS connection in one write (one TLS
        record and one send for all of them, in their order)."""
        m = self.metrics
        items: list[tuple[bytes, str, int]] = []
        fd = -1
        workers = self.sockets.handoff_addrs
        streams: dict[asyncio.Transport, list[bytes]] | None = None
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
                if transport == "tcp" or transport == "tls":
                    conn = self.tcp_conns.get((dest[0], dest[1]))
                    if conn is not None and not conn.is_closing():
                        m.count_out(data)
                        if streams is None:
                            streams = {}
                        queued = streams.get(conn)
                        if queued is None:
                            streams[conn] = [data]
                        else:
                            queued.append(data)
                        continue
                self._send(data, dest, transport)
                continue
            if f != fd and items:
                self._send_items(fd, items)
                items = []
            fd = f
            items.append((data, dest[0], dest[1]))
        if items:
            self._send_items(fd, items)
        if streams is not None:
            for conn, chunks in streams.items():
                conn.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def _send_items(self, fd: int, items: list[tuple[bytes, str, int]]) -> None:
        send = _udpio.send_batch
        mapped = fd in self._mapped  # IPv4 hosts by a dual-stack socket: ::ffff:a.b.c.d
        while items:
            try:
                n = send(fd, items, mapped)
            except (OSError, ValueError):  # this datagram cannot go: count it, send the rest
                self.metrics.drop("send_error")
                items = items[1:]
                continue
            if n == 0:  # the socket's send buffer is full (EAGAIN): UDP, the peer retransmits
                self.metrics.drop("send_buffer_full", len(items))
                return
            items = items[n:]

    def _udp_route(
        self, dest: tuple[str, int], relay: _Out | None, by_family: dict[int, _Out]
    ) -> _Out | None:
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

    def _send(self, data: bytes, dest: tuple[str, int], transport: str) -> None:
        m = self.metrics
        if transport == "udp":
            t = self._udp_route(dest, self.relay_transport, self.udp_out)
            if t is None:
                return
            m.count_out(data)
            host = dest[0]
            if t in self._mapped and ":" not in host:
                host = "::ffff:" + host  # an IPv4 peer by a dual-stack socket
            t.sendto(data, (host, dest[1]))
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
                if request and peer in self._alias_at:  # RFC 5923: its aliased one
                    owner = self._alias_at[peer]
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

    async def _watch_overload(self) -> None:
        """Load shedding (shared/PERFORMANCE.md: shed early, before parsing).

        Every 20 ms, read how many bytes wait in the receive queues of this
        worker's UDP sockets (``_check_overload``). A standing queue, above
        ``overload_queue_kib`` for ``overload_hold_ms`` without draining
        (proxy/server/shedding.py), means the worker is behind (each queued
        datagram ages while it waits, and callers start to retransmit, which
        only adds load): the core answers new INVITEs 503 with Retry-After until
        the queue is under a quarter of that again. Calls already set up keep
        going; in-dialog requests and responses are never shed. The batched
        drain checks too, whenever a batch comes back full: a burst read in one
        readable event must not wait for the tick (the kernel queue is then
        deeper than one batch). A backlog a hiccup of the machine left behind,
        which the worker is working off, is not shed (shedding.py says why).
        """
        socks = [*self.sockets.udp]
        if self.sockets.relay is not None:
            socks.append(self.sockets.relay)
        high = self.config.overload_queue_kib * 1024
        # never above half of what the kernel would queue (a small rmem_max)
        bufs = [q[1] for q in map(receive_queue, socks) if q is not None]
        if bufs:
            high = min(high, min(bufs) // 2)
        self._overload = (socks, ShedPolicy(high, self.config.overload_hold_ms / 1000.0))
        while True:
            await asyncio.sleep(0.02)
            self._check_overload()

    def _check_overload(self) -> None:
        """Enter or leave the overloaded state from the bytes queued now
        (the policy: proxy/server/shedding.py)."""
        if self._overload is None:
            return
        socks, policy = self._overload
        try:
            queued = 0
            for sk in socks:
                q = receive_queue(sk)
                queued += q[0] if q is not None else 0
            now = time.monotonic()
            since = policy.since
            core = self.core
            was = core.overloaded
            core.overloaded = policy.update(queued, now)
            if core.overloaded and not was:
                log.warning(
                    "worker %d: overloaded (%d KiB queued for %d ms, not draining): "
                    "answering new INVITEs 503",
                    self.index,
                    queued // 1024,
                    (now - (since if since is not None else now)) * 1000,
                )
            elif was and not core.overloaded:
                log.warning("worker %d: load back to normal, shedding stopped", self.index)
        except Exception:
            self._callback_error("watch_overload")
