"""The spool (issue 10.9): records still queued at exit go to a JSON lines
file (`spool`), written back into the stream by the next start before any
worker runs (`replay_spool`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from proxy.records.schema import STREAM

log = logging.getLogger("sipscreen.records")


def default_spool_dir() -> str:
    """The spool directory when ``[records] spool_dir`` is not set: systemd's
    ``$STATE_DIRECTORY/spool`` (``StateDirectory=sipscreen``), else
    ``$XDG_STATE_HOME/sipscreen/spool`` (``~/.local/state/...``)."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return os.path.join(state.split(":")[0], "spool")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "sipscreen", "spool")


def spool_name(redis_url: str, prefix: str) -> str:
    """File name stem of the spool files of one Redis URL and key prefix."""
    tag = hashlib.blake2s(f"{redis_url}\n{prefix}".encode(), digest_size=8).hexdigest()
    return f"records-{tag}"


def spool(records: list[dict[str, str]], directory: str, redis_url: str, prefix: str) -> str:
    """Write ``records`` to a new spool file (JSON lines, renamed into place once
    complete); returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"{spool_name(redis_url, prefix)}-{os.getpid()}-{time.time_ns()}"
    tmp = d / f".{stem}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    final = d / f"{stem}.jsonl"
    os.replace(tmp, final)
    return str(final)


def replay_spool(redis: Any, prefix: str, directory: str, redis_url: str, max_len: int = 0) -> int:
    """XADD every spooled record of ``redis_url``/``prefix`` found in ``directory``
    with the synchronous client ``redis``, deleting each file once written.
    Returns the number of records replayed."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    key = prefix + STREAM
    total = 0
    for path in sorted(d.glob(spool_name(redis_url, prefix) + "-*.jsonl")):
        recs = []
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    log.warning("records: %s line %d: not JSON, skipped", path, n)
                    continue
                if isinstance(rec, dict):
                    recs.append({str(k): str(v) for k, v in rec.items()})
        pipe = redis.pipeline(transaction=False)
        for rec in recs:
            if max_len > 0:
                pipe.xadd(key, rec, maxlen=max_len, approximate=True)
            else:
                pipe.xadd(key, rec)
        pipe.execute()
        path.unlink()
        total += len(recs)
    return total
