"""`sipscreen redis confirm-empty`: accept what Redis holds after a data loss.

How this works: the proxies refuse to load a Redis that came back without
the generation stamp they knew (REDIS DATA LOST, proxy/store/); a new
`confirmed-` stamp tells them to load what it holds now.
"""

from __future__ import annotations

import argparse
import os

from proxy.commands.common import Client, Clock, Subparsers, wrap
from proxy.store.keys import CONFIRMED, K_GENERATION


async def _redis_confirm_empty(args: argparse.Namespace, r: Client, prefix: str, now: Clock) -> int:
    """Accept what Redis holds now under the prefix after the proxy reported
    REDIS DATA LOST (proxy/store/): a new `confirmed-` generation stamp."""
    stamp = f"{CONFIRMED}{int(now())}-{os.urandom(4).hex()}"
    await r.set(prefix + K_GENERATION, stamp)
    n = 0
    async for _k in r.scan_iter(match=_glob(prefix) + "*", count=1000):
        n += 1
    print(f"{prefix}{K_GENERATION} = {stamp}: the proxies load what Redis holds ({n} keys)")
    return 0


def _glob(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def register(sub: Subparsers) -> None:
    rd = sub.add_parser("redis", help="Redis state").add_subparsers(
        dest="redis_command", required=True
    )
    p = rd.add_parser(
        "confirm-empty",
        help="accept what Redis holds now after a REDIS DATA LOST alarm (restart without data)",
    )
    p.set_defaults(handler=wrap(_redis_confirm_empty))
