"""SIP over TCP and TLS (RFC 3261 §18.3): the stream protocol and the worker's
connection handling.

* `_TCPProtocol`: one connection, a stream buffer framed by Content-Length
  (`proxy.sip.message.frame_stream`); every message goes to the worker.
* Limits (`[limits]`): per-worker and per-source connection caps (the worker
  cap kept below RLIMIT_NOFILE, `_FD_RESERVE` descriptors left for Redis and
  the metrics endpoint), and one sweep task that closes idle connections and
  those holding an incomplete message (slow loris); counted, logged at most
  once a minute. TLS client certificates name a trunk (`tls_client`).
* Outgoing connections (RFC 3261 §18.1.1): a request for a peer with no
  connection open opens one (`_tcp_connect`), the messages queued behind it;
  with several workers a message relayed by another worker (`_TCP_RELAY`) is
  written on our connection, or opened by its owner (`_tcp_owner`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import zlib
from typing import cast

from proxy.config import cert_names, client_tls_context
from proxy.config.values import canonical_ip
from proxy.server.base import WorkerBase
from proxy.sip.alias import alias_target, cert_identities
from proxy.sip.core import source_key
from proxy.sip.framing import frame_common
from proxy.sip.message import frame_stream

log = logging.getLogger("sipscreen")

_TCP_RELAY = b"\x00TCP "
# RFC 5923 alias: "host port k" (worker k holds a connection aliased to host:port,
# k = -1: no longer), so a request to host:port is relayed to worker k
_TCP_ALIAS = b"\x00ALIAS "
_FD_RESERVE = 64  # descriptors kept free of TCP connections (Redis, metrics, files)
_TCP_PENDING = 32  # messages queued per outgoing TCP connection while it opens


def _tcp_owner(peer: tuple[str, int], workers: int) -> int:
    """The worker that opens the outgoing TCP connection to ``peer`` (several
    workers: one of them, the same for every message to that peer)."""
    return zlib.crc32(f"{peer[0]} {peer[1]}".encode()) % workers


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
        "identities",
        "alias",
    )

    def __init__(self, worker: TcpSide, kind: str = "tcp") -> None:
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
        # RFC 5923: set on a TLS connection whose client certificate was verified
        # (tls_verify_client optional/required): the identities an ;alias Via may
        # name; the address it is registered under once one did
        self.identities: frozenset[str] | None = None
        self.alias: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = (canonical_ip(peer[0]), peer[1])  # as a UDP peer is named
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
                # the common shape without reading every header line (proxy/sip/framing.py)
                got = frame_common(self.buffer)
                msg, consumed = got if got is not None else frame_stream(bytes(self.buffer))
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
            if self.identities is not None and self.alias is None:
                self.worker.tcp_alias(self, msg)
            self.worker.on_datagram(msg, self.peer, self.kind, self.provider)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.worker.tcp_conns.get(self.peer) is self.transport:
            del self.worker.tcp_conns[self.peer]
        if self.alias is not None:
            self.worker.tcp_unalias(self)
        self.worker.tcp_release(self)


class TcpSide(WorkerBase):
    """The worker's TCP/TLS connections: limits, client certificates, outgoing."""

    def on_datagram(
        self, data: bytes, src: tuple[str, int], transport: str, provider: str | None = None
    ) -> None:
        """One message into the core (datapath.py); a framed TCP message comes here."""
        raise NotImplementedError

    def _to_worker(self, data: bytes, addr: tuple[str, int]) -> None:
        """One datagram to another worker's handoff socket (datapath.py)."""
        raise NotImplementedError

    def tcp_admit(self, proto: _TCPProtocol) -> bool:
        """A new connection: False (refused, counted, logged) when it is over the
        worker's cap or its source's (``[limits] tcp_max_*``)."""
        ip = proto.peer[0]
        key = source_key(ip)  # an IPv6 peer: its /64
        n_ip = self._tcp_per_ip.get(key, 0)
        per_source = self.config.tcp_max_per_source
        if len(self._tcp_protos) >= self._tcp_cap:
            reason = "worker_cap"
        elif per_source and n_ip >= per_source:
            reason = "source_cap"
        else:
            self._tcp_per_ip[key] = n_ip + 1
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
            proto.identities = cert_identities(cert)  # RFC 5923 alias: mutual TLS
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

    def tcp_alias(self, proto: _TCPProtocol, msg: bytes) -> None:
        """RFC 5923: a request with ``;alias`` on a mutually authenticated TLS
        connection (``proto.identities`` set by ``tls_client``) whose Via sent-by
        is one of its certificate's identities: requests to that address go on
        this connection (the other workers are told) instead of a new one."""
        target = alias_target(msg, cast(frozenset[str], proto.identities))
        if target is None or proto.transport is None:
            return
        old = self.tcp_conns.get(target)
        if old is not None and not old.is_closing():
            return  # an open connection to that address already serves it
        proto.alias = target
        self.tcp_conns[target] = proto.transport
        self._alias_at.pop(target, None)
        self._alias_note(target, self.index)
        log.info(
            "worker %d: TLS connection from %s:%d aliased to %s:%d (RFC 5923)",
            self.index,
            proto.peer[0],
            proto.peer[1],
            target[0],
            target[1],
        )

    def tcp_unalias(self, proto: _TCPProtocol) -> None:
        target = cast(tuple[str, int], proto.alias)
        proto.alias = None
        if self.tcp_conns.get(target) is proto.transport:
            del self.tcp_conns[target]
            self._alias_note(target, -1)

    def _alias_note(self, target: tuple[str, int], k: int) -> None:
        """Tell the other workers that worker k (-1: none) holds ``target``'s alias."""
        if len(self.sockets.handoff_addrs) > 1 and self.sockets.handoff is not None:
            note = _TCP_ALIAS + f"{target[0]} {target[1]} {k}".encode("ascii")
            for i, addr in enumerate(self.sockets.handoff_addrs):
                if i != self.index:
                    self._to_worker(note, addr)

    def _alias_in(self, data: bytes) -> None:
        try:
            host, port_s, k_s = data[len(_TCP_ALIAS) :].decode("ascii").split(" ")
            target, k = (host, int(port_s)), int(k_s)
        except ValueError:
            return
        if k < 0:
            self._alias_at.pop(target, None)
        else:
            self._alias_at[target] = k

    def tcp_release(self, proto: _TCPProtocol) -> None:
        if not proto.counted:
            return
        proto.counted = False
        self._tcp_protos.discard(proto)
        key = source_key(proto.peer[0])
        n = self._tcp_per_ip.get(key, 1) - 1
        if n > 0:
            self._tcp_per_ip[key] = n
        else:
            self._tcp_per_ip.pop(key, None)
        self.metrics.tcp_open.dec()

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
        if per_source and self._tcp_per_ip.get(source_key(peer[0]), 0) >= per_source:
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
            async with asyncio.timeout(timeout):  # not wait_for: records/writer.py run
                transport, proto = await coro
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
