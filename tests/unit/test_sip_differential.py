"""Both parsers on the same bytes: the RFC 4475 set and seeded random mutations of it.

A fixed, bounded corpus (the seed and the count are constants, so a failure
reproduces): every RFC 4475 torture message, a SIPp INVITE, a 200 OK relayed
through us and an in-dialog ACK, each mutated MUTATIONS times (octets
inserted, written over or cut, lines doubled or dropped, the message cut
short). For each: the C parse and the pure-Python parse give the same message
or the same error, the C header scan the Python one's index, and the C
response scan the Python one's answer, wherever C does not decline; the lean
forward of an in-dialog request (C only) never raises and cuts inside the
message. CI also runs this file under AddressSanitizer and
UndefinedBehaviorSanitizer (scripts/test), which turns any read outside a
buffer on the way into a failure.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_sip_csafe import ACK, OK, OUR_VIA, ROUTE
from test_sip_cscan import check_parse, check_scan
from wire_samples import SIPP_INVITE

from proxy.sip import message, relay

SEED = 4475
MUTATIONS = 100
DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
BASES = [*(p.read_bytes() for p in sorted(DATA.glob("*.dat"))), SIPP_INVITE, OK, ACK]
JUNK = [
    b"\r\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"=",
    b"<",
    b">",
    b'"',
    b"\x00",
    b"\xff",
    b"0",
    b"9",
]

needs_c = pytest.mark.skipif(
    message._C_PARSE is None, reason="proxy/sip/_scan.c not built or disabled"
)


def _mutate(rng: random.Random, base: bytes) -> bytes:
    pos = rng.randrange(len(base) + 1)
    op = rng.randrange(6)
    if op == 0:  # insert
        junk = b"".join(rng.choices(JUNK, k=rng.randint(1, 3)))
        return base[:pos] + junk + base[pos:]
    if op == 1:  # write over
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        return base[:pos] + junk + base[pos + len(junk) :]
    if op == 2:  # cut a few octets
        return base[:pos] + base[pos + rng.randint(1, 8) :]
    if op == 3:  # cut short
        return base[:pos]
    lines = base.split(b"\r\n")
    k = rng.randrange(len(lines))
    if op == 4:  # a line twice
        return b"\r\n".join(lines[: k + 1] + lines[k:])
    return b"\r\n".join(lines[:k] + lines[k + 1 :])  # a line dropped


def corpus() -> list[bytes]:
    rng = random.Random(SEED)
    out = list(BASES)
    for base in BASES:
        out += [_mutate(rng, base) for _ in range(MUTATIONS)]
    return out


def _response_agrees(data: bytes) -> bool:
    """The C response scan gives the Python one's answer, or declines; True when it answered."""
    c = message._C_RESPONSE
    assert c is not None
    got = c(data, OUR_VIA)
    if got is None:
        return False
    want = relay._scan_response(data, OUR_VIA)
    assert want is not None, data
    assert (got[0], got[2]) == (want[0], want[2]), data
    slots = type(got[1]).__slots__
    assert [getattr(got[1], n) for n in slots] == [getattr(want[1], n) for n in slots], data
    return True


def _lean_forward_is_sane(data: bytes) -> bool:
    c = message._C_REQUEST
    assert c is not None
    got = c(data, "127.0.0.3", 5061, ROUTE)
    if got is None:
        return False
    material, hstart, tail = got
    assert 0 < hstart < len(data) and data[hstart - 2 : hstart] == b"\r\n", data
    assert material.startswith(b"z9hG4bK") and tail.endswith(b"\r\n\r\n"), data
    return True


@needs_c
def test_c_and_python_agree_on_the_corpus() -> None:
    msgs = corpus()
    assert len(msgs) == len(BASES) * (MUTATIONS + 1)
    parsed = scanned = relayed = forwarded = 0
    for data in msgs:
        parsed += check_parse(data)
        scanned += check_scan(data)
        relayed += _response_agrees(data)
        forwarded += _lean_forward_is_sane(data)
    # C answers (does not just decline) for a real share of the corpus
    assert parsed > 200 and scanned > 2000, (parsed, scanned)
    assert relayed >= 10 and forwarded >= 10, (relayed, forwarded)
    print(
        f"{len(msgs)} messages, C answered: parse {parsed}, scan {scanned}, "
        f"response {relayed}, forward {forwarded}"
    )
