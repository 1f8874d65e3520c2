"""Sans-I/O SIP: parsing and building (message), proxy core (core), transactions.

Nothing in this package does I/O or reads the clock; callers pass ``now``.
"""

from __future__ import annotations

from .core import Answer, CoreConfig, CoreStats, ProxyCore, wrap_handoff
from .message import (
    NameAddr,
    Request,
    Response,
    SIPError,
    Via,
    build_response,
    frame_stream,
    parse,
)

__all__ = [
    "Answer",
    "CoreConfig",
    "CoreStats",
    "ProxyCore",
    "wrap_handoff",
    "NameAddr",
    "Request",
    "Response",
    "SIPError",
    "Via",
    "build_response",
    "frame_stream",
    "parse",
]
