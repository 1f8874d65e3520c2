"""The C header-name cache (proxy/sip/_scan.c) stays bounded under made-up names.

Traffic that sends a new made-up header name on every message must neither
grow the cache nor crowd the common names out of it: the table has a fixed
size, init() pins the common spellings message.py seeds ``_FAST`` with, and
a later name evicts an unpinned one (so new names keep being cached too).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from proxy.sip import message

needs_c = pytest.mark.skipif(message._C_PARSE is None, reason="proxy/sip/_scan.c not loaded")
FLOOD = 100_000
PER_BLOCK = 100


def _init(fast: dict[bytes, bytes]) -> None:
    """Point the C parser at ``fast`` (message.py does the same with ``_FAST``)."""
    m = message
    m._built.init(m.Request, m.Response, m.Via, m.NameAddr, fast, m._CSEQ_MAX, m._MF_MAX, m._CL_MAX)


@pytest.fixture
def flooded_fast() -> Iterator[dict[bytes, bytes]]:
    """A names dict as message._FAST, the common names first, plus FLOOD made-up
    ones it answers too (the worst case: every made-up name is cacheable);
    message's own dict is put back afterwards."""
    fast = dict(message._FAST)
    for i in range(FLOOD):
        fast[b"X-Made-Up-%d" % i] = b""
    _init(fast)
    try:
        yield fast
    finally:
        _init(message._FAST)


def _scan_all(fast: dict[bytes, bytes], names: list[bytes]) -> None:
    scan = message._built.scan_headers
    for i in range(0, len(names), PER_BLOCK):
        block = b"\r\n".join(n + b": v" for n in names[i : i + PER_BLOCK])
        assert scan(block, 0, len(block), fast) is not None


@needs_c
def test_made_up_names_leave_the_cache_bounded(flooded_fast: dict[bytes, bytes]) -> None:
    cache = message._built._name_cache
    slots, used, pinned = cache()
    assert pinned > 0 and cache(b"Refer-To") and cache(b"via")  # the seeded names
    made_up = [b"X-Made-Up-%d" % i for i in range(FLOOD)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _scan_all(flooded_fast, made_up)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown  # nothing kept per name
    slots_after, used_after, pinned_after = cache()
    assert slots_after == slots == 1024 and used_after <= slots
    assert pinned_after == pinned  # no common name was evicted
    for common in (b"Refer-To", b"Via", b"call-id", b"CSEQ", b"Content-Length"):
        assert cache(common), common
    # the newest made-up names took the unpinned places: new names are still cached
    assert sum(cache(n) for n in made_up[-PER_BLOCK:]) > PER_BLOCK // 2
    # and a common name still parses to its canonical form through the table
    block = b"Refer-To: <sip:a@b>\r\nvia: SIP/2.0/UDP h"
    got = message._built.scan_headers(block, 0, len(block), flooded_fast)
    assert got == {message._FAST[b"Via"]: [(block.index(b"via:") + 4, len(block))]}
