"""`Worker`: one event loop, one ProxyCore with its Screener, SnapshotStore and
RecordWriter, the listeners and the background tasks; built and served by
`serve()`, reconfigured by `reload()` (SIGHUP), closed by `stop()` (the
decision records Redis did not take are spooled for the next start)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace

from proxy.config import Config, server_tls_context
from proxy.config.values import canonical_ip
from proxy.metrics import Metrics
from proxy.records import RecordWriter
from proxy.redis_url import async_client
from proxy.screen import Screener
from proxy.server.datapath import BATCHED_UDP, Datapath, _HandoffProtocol, _UDPProtocol
from proxy.server.sockets import carries_ipv4
from proxy.server.tcp import _TCPProtocol
from proxy.sip.core import CoreConfig
from proxy.store.snapshot_store import SnapshotStore
from rules.snapshot import Snapshot

log = logging.getLogger("sipscreen")

_FIRST_SNAPSHOT_WAIT = 5.0  # seconds a worker waits for its first snapshot


# The collector's first generation is collected every GC_GEN0 allocations of
# container objects (CPython's default: 700, a few INVITEs here).
GC_GEN0 = 20_000


def _settle_gc() -> None:
    """Before the first datagram: what start-up made (modules, configuration, the
    first snapshot) moves to the collector's permanent generation (``gc.freeze``),
    so a full collection walks only what serving allocates (the INVITE server
    transactions, a few seconds' worth); and the first generation is collected
    every GC_GEN0 allocations instead of 700 (messages are freed by reference
    counting; the collector's walks cost, RESULTS.md seventh session)."""
    gc.collect()
    gc.freeze()
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0, g1, g2)


class Worker(Datapath):
    """One event loop, one ProxyCore, its listeners and background tasks."""

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

    def _build(self) -> tuple[SnapshotStore, RecordWriter]:
        cfg = self.config
        store = self.store = _make_store(cfg, self.metrics)
        records = self.records = _make_records(cfg, self.metrics)
        self.screener = Screener(cfg, store, self.metrics, records, clock=self.clock)
        from proxy.redirect import make_core  # inline: ProxyCore; redirect: RedirectCore

        self.core = make_core(cfg, self._core_config(), self.screener, self.metrics)
        return store, records

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
        store = self.store
        assert store is not None  # serve() builds it before the loop runs a signal handler
        try:
            new = self.reloader()
            screener = Screener(new, store, self.metrics, self.records, clock=self.clock)
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
        self.core.screen = screener
        self.core.set_limits(self._core_config())
        store.emergency = new.emergency_numbers
        store.emergency_callers = frozenset(int(n[1:]) for n in new.emergency_callers)
        store.unmapped_provider_policy = new.unmapped_provider_policy
        store.shaken_policy = new.shaken_policy
        snap = store.snapshot
        snap.emergency = new.emergency_numbers
        snap.emergency_caller_config = store.emergency_callers
        snap.unmapped_provider_policy = new.unmapped_provider_policy
        snap.shaken_policy = new.shaken_policy
        log.info("worker %d: configuration reloaded from %s", self.index, new.source_path)
        return True

    def _parent_gone(self) -> bool:
        """A forked worker whose supervisor died (it is then re-parented)."""
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    async def _sync_metrics(self, store: SnapshotStore, records: RecordWriter) -> None:
        while True:
            try:
                self.metrics.sync_core_stats(self.core.stats)
                if store.loaded:
                    snap = store.snapshot
                    self.metrics.set_snapshot(snap.entries(), snap.loaded_at)
                self.metrics.redis_up.set(1 if store.connected else 0)
                by_reason = records.dropped_by_reason
                for reason, dropped in by_reason.items():
                    seen = self._records_dropped.get(reason, 0)
                    if dropped > seen:
                        self.metrics.records_dropped_children[reason].inc(dropped - seen)
                        self._records_dropped[reason] = dropped
                self.metrics.redis_data_lost.set(1 if store.data_lost else 0)
                if self._parent_gone():
                    log.error("worker %d: the supervisor is gone; stopping", self.index)
                    self.stop()
            except Exception:
                self._callback_error("sync_metrics")
            await asyncio.sleep(0.5)

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._offset = time.time() - loop.time()
        loop.set_exception_handler(self._exception_handler)
        self._stop = asyncio.Event()
        store, records = self._build()
        self._spawn(store.run(), "store")
        self._spawn(records.run(), "records")
        self._spawn(self._sync_metrics(store, records), "metrics")
        if self.config.overload_queue_kib > 0:
            self._spawn(self._watch_overload(), "overload")
        # Screen the first call on real data: the sockets are bound already,
        # so datagrams wait in the kernel while the first snapshot loads. If
        # Redis does not answer in time, no_snapshot_policy applies.
        try:
            async with asyncio.timeout(_FIRST_SNAPSHOT_WAIT):  # not wait_for: writer.run
                await store.synced.wait()
        except TimeoutError:
            log.warning(
                "worker %d: no snapshot after %.0f s; serving with no_snapshot_policy=%s",
                self.index,
                _FIRST_SNAPSHOT_WAIT,
                self.config.no_snapshot_policy,
            )
        _settle_gc()
        self._batched = self.config.batched_udp and BATCHED_UDP
        for s in self.sockets.udp:
            if self._batched:
                loop.add_reader(s.fileno(), self._drain, s.fileno())
                self._readers.append(s.fileno())
                self._udp_fd.setdefault(s.family, s.fileno())
                continue
            _t, up = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=s)
            assert up.transport is not None
            self.udp_out.setdefault(s.family, up.transport)
        for s in self.sockets.udp:
            # an IPv6 listen socket that IPv4 reaches too (``[::]``) is the way out
            # to IPv4 peers when no IPv4 socket is
            if carries_ipv4(s):
                out = s.fileno() if self._batched else self.udp_out[s.family]
                self._mapped.add(out)
                if self._batched:
                    self._udp_fd.setdefault(socket.AF_INET, s.fileno())
                else:
                    self.udp_out.setdefault(socket.AF_INET, self.udp_out[s.family])
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
            if carries_ipv4(self.sockets.relay):
                self._mapped.add(self._relay_fd if self._batched else self.relay_transport)
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
        file that the next start replays (proxy/records/)."""
        records = self.records
        if records is None or not len(records):
            return
        from proxy.records import default_spool_dir, spool

        recs = records.take_all()
        directory = self.config.spool_dir or default_spool_dir()
        try:
            path = spool(recs, directory, self.config.records_url, self.config.key_prefix)
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
            self.metrics.sync_core_stats(self.core.stats)
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
        # the store's connections close with its task (cancelled above)
        if self.records is not None:
            with contextlib.suppress(Exception):
                await self.records.redis.aclose()
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
        # a listen address written IPv4-mapped serves IPv4 peers: our Via and
        # Record-Route name its IPv4 address, the one they reach us by
        listen_host=canonical_ip(host),
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
        on_screen_bug=_log_screen_bug,
        strip_header=config.shaken.mark_header if config.shaken else None,
        strip_identity=config.strip_identity_headers,
    )


def _log_screen_bug(exc: Exception) -> None:
    """An exception out of the screen other than ScreenError (core.Screen's
    contract): a bug; the core counted it (screen_bugs) and forwarded the call."""
    log.error("screen bug (the call was forwarded): %r", exc, exc_info=exc)


def _make_store(config: Config, metrics: Metrics) -> SnapshotStore:
    def on_state(up: bool) -> None:
        metrics.redis_up.set(1 if up else 0)

    def on_change(snap: Snapshot) -> None:
        metrics.set_snapshot(snap.entries(), snap.loaded_at)

    return SnapshotStore(
        config.redis_url,
        config.key_prefix,
        emergency=config.emergency_numbers,
        emergency_callers=config.emergency_callers,
        unmapped_provider_policy=config.unmapped_provider_policy,
        shaken_policy=config.shaken_policy,
        on_change=on_change,
        on_state=on_state,
    )


def _make_records(config: Config, metrics: Metrics) -> RecordWriter:
    client = async_client(config.records_url, socket_timeout=5)
    return RecordWriter(
        client,
        config.key_prefix,
        config.records_max_len,
        config.records_max_age_s,
        queue_max=config.records_buffer_max,
        queue_max_bytes=config.records_buffer_max_bytes,
    )


# What the sockets, the Redis connections and the processes were set up with: a
# reload keeps these (they need a restart).
_RESTART_ONLY = (
    "listen",
    "softswitch",
    "softswitch_transport",
    "redis_url",
    "records_redis_url",
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
    "mode",
    "redirect_target",
    "redirect_allow_status",
    "redirect_allow_reason",
    "redirect_verdict_headers",
)


def restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the settings only a restart can change taken from ``old``,
    and the names of those that differed."""
    kept = [n for n in _RESTART_ONLY if getattr(new, n) != getattr(old, n)]
    if kept:
        new = replace(new, **{n: getattr(old, n) for n in kept})
    return new, kept
