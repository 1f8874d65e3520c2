"""The entry point `run(config)`: bind, prepare Redis, then serve in this
process (one worker) or fork N workers and supervise them.

The parent restarts a dead worker (at most once a second per slot), serves
the multiprocess metrics, forwards SIGHUP to the workers after checking the
configuration loads, and on SIGTERM/SIGINT stops them (SIGKILL after 5 s).
Workers set PR_SET_PDEATHSIG and check their parent pid twice a second, so
they never outlive a killed parent."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client.registry import Collector

from proxy.config import Config
from proxy.metrics import Metrics, enable_multiprocess, multiprocess_registry
from proxy.server.bootstrap import _prepare_redis, _seed, replay_spooled_records
from proxy.server.console import _banner, _iso_utc, setup_logging
from proxy.server.loops import decision_clock, loop_factory
from proxy.server.sockets import (
    StartupError,
    WorkerSockets,
    _busy,
    _check_metrics_port,
    _close_all,
    bind_sockets,
)
from proxy.server.worker import Worker, restart_only

if TYPE_CHECKING:
    from proxy.embedded_redis import EmbeddedRedis

log = logging.getLogger("sipscreen")


def _default_reloader(config: Config) -> Callable[[], Config] | None:
    if config.source_path is None:
        return None
    from proxy.config import load_config

    path = config.source_path
    return lambda: load_config(path)


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


def _start_metrics_http(config: Config, registry: Collector) -> WSGIServer | None:
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
    embedded: EmbeddedRedis | None = None,
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
    return w.store.snapshot.loaded_at


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
    embedded: EmbeddedRedis | None = None,
    reloader: Callable[[], Config] | None = None,
) -> int:
    from prometheus_client.multiprocess import mark_process_dead

    mpdir = tempfile.mkdtemp(prefix="sipscreen-metrics-")
    secret = os.urandom(16)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = mpdir
    stopping = False
    hup = False
    parent_pid = os.getpid()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def on_hup(signum: int, frame: FrameType | None) -> None:
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
