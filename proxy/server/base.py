"""What a worker holds: its configuration, sockets, metrics, transports,
connection tables and timer, and the helpers every part of it uses (clock,
rate-limited warnings, background tasks, callback errors).

`WorkerBase` is the base the worker's parts build on (tcp.py, datapath.py);
`worker.Worker` puts them together."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from proxy.config import Config
from proxy.metrics import Metrics
from proxy.records import RecordWriter
from proxy.screen import Screener
from proxy.server.loops import decision_clock
from proxy.server.shedding import ShedPolicy
from proxy.server.sockets import WorkerSockets
from proxy.sip.core import ProxyCore
from proxy.store.snapshot_store import SnapshotStore

if TYPE_CHECKING:
    from proxy.server.tcp import _TCPProtocol

log = logging.getLogger("sipscreen")


class WorkerBase:
    """One event loop, one ProxyCore, its listeners and background tasks."""

    # Built by Worker._build when serve() starts, before any input can reach the
    # worker (the loop callbacks that read it are registered after it).
    core: ProxyCore

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
        # the IPv6 sockets (fds, or transports when not batched) that also carry
        # IPv4 (sockets.carries_ipv4): an IPv4 destination leaves them IPv4-mapped
        self._mapped: set[Any] = set()
        self._readers: list[int] = []
        self._softswitch = (config.softswitch[0], int(config.softswitch[1]))
        self.tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # (sockets, the shedding policy) for _check_overload, set by _watch_overload
        self._overload: tuple[list[socket.socket], ShedPolicy] | None = None
        self._offset = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.Server] = []
        self._stop: asyncio.Event | None = None
        # Built by serve() with the core; None before (a metrics scrape may come first)
        self.store: SnapshotStore | None = None
        self.records: RecordWriter | None = None
        self.screener: Screener | None = None
        self._records_dropped: dict[str, int] = {}  # by reason, as last synced
        # The handoff sockets of the workers (bound by the parent before the
        # fork): the only sources a handoff datagram is taken from (issue 10.5).
        self._handoff_peers = frozenset((h, p) for h, p in sockets.handoff_addrs)
        # TCP connections (issue 10.6): the open ones, their count per source IP,
        # the per-worker cap in force (config, clipped below RLIMIT_NOFILE by serve)
        self._tcp_protos: set[_TCPProtocol] = set()
        self._tcp_per_ip: dict[str | bytes, int] = {}  # source_key -> open connections
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
        # RFC 5923 aliases other workers hold: address -> that worker
        self._alias_at: dict[tuple[str, int], int] = {}

    def loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _warn_limited(self, key: str, msg: str, *args: Any) -> None:
        """A warning logged at most once a minute per ``key``."""
        t = time.monotonic()
        if t >= self._log_at.get(key, 0.0):
            self._log_at[key] = t + 60.0
            log.warning(msg + " (logged at most once a minute)", *args)

    # -- clock -------------------------------------------------------------------

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time() + self._offset

    def _callback_error(self, where: str) -> None:
        self.metrics.callback_errors.inc()
        log.exception("unhandled exception in %s (worker %d)", where, self.index)

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
