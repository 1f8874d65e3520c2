"""Which worker owns a transaction, and the kernel program that agrees (sans-I/O).

With several workers, every UDP listen address is a SO_REUSEPORT group of one
socket per worker, and the kernel picks the socket for each datagram. The
core keeps a transaction's state (its INVITE server transaction, the To tag
it minted, timer G) in ONE worker, the owner; a message the kernel gave to
another worker is handed to the owner over the workers' handoff sockets,
which costs a second parse, two system calls and a wake-up.

The owner is a function of the RFC 3261 branch of the top Via, which the
INVITE, its retransmissions, the ACK of a non-2xx answer and the CANCEL all
carry unchanged (RFC 3261 §17.1.1.3, §9.1):

    h = 0; for each byte c of the branch after "z9hG4bK", at most SPAN bytes:
        h = (h * 31 + c) mod 2**32
    h ^= h >> 16; h ^= h >> 8;  owner = h mod workers

``program(n)`` is a classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that
computes the same owner from the raw datagram: it looks for the first
"z9hG" in the first ``SCAN`` bytes and hashes the token after the 7-byte
cookie up to a byte <= 0x20, ';' or ','. So the kernel delivers the
INVITE, its ACK and its retransmissions to the worker that owns them, and
nothing is handed over. Where the two can disagree (a "z9hG" before the top
Via, an RFC 2543 branch, a cookie past ``SCAN``) the program's pick is only
a first guess: the core computes the owner from the parsed branch
(``key_owner``) and hands the message over as before. A datagram with no
cookie, or one too short for the program to read safely, is spread at random
(SKF_AD_RANDOM), as all datagrams were before.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from operator import mul

__all__ = ["COOKIE", "SCAN", "SPAN", "branch_hash", "key_owner", "program"]

COOKIE = b"z9hG4bK"  # RFC 3261 §8.1.1.7
SPAN = 16  # branch bytes after the cookie that are hashed
SCAN = 880  # the cookie is looked for at offsets 0 .. SCAN-1 of the datagram
_CHUNK = 32  # offsets per length check in the program
_MASK = 0xFFFFFFFF

# cBPF opcodes (linux/filter.h, linux/bpf_common.h)
_LD_W_ABS = 0x20
_LD_W_LEN = 0x80
_LD_B_IND = 0x50
_LD_MEM = 0x60
_LD_IMM = 0x00
_LDX_IMM = 0x01
_LDX_MEM = 0x61
_ST = 0x02
_STX = 0x03
_ALU_MUL_K = 0x24
_ALU_ADD_X = 0x0C
_ALU_RSH_K = 0x74
_ALU_XOR_X = 0xAC
_ALU_MOD_K = 0x94
_JA = 0x05
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_TAX = 0x07
_RET_A = 0x16
_SKF_AD_RANDOM = (-0x1000 + 56) & _MASK  # ld [rand]

Insn = tuple[int, int, int, int]  # code, jt, jf, k (struct sock_filter)

# 31**(n-1-i) mod 2**32 for i < n: the Horner loop as one sum of products
_POWERS = [tuple(pow(31, n - 1 - i, 1 << 32) for i in range(n)) for n in range(SPAN + 1)]


def _branch_hash_py(branch: bytes) -> int | None:
    """The owner hash of an RFC 3261 branch (module docstring); None without the cookie.
    The reference: ``branch_hash`` is its C twin in proxy/sip/_scan.c when built."""
    if not branch.startswith(COOKIE):
        return None
    tail = branch[7 : 7 + SPAN]
    # h = (h * 31 + c) mod 2**32 over the tail, without a Python-level loop
    h: int = sum(map(mul, tail, _POWERS[len(tail)])) & _MASK
    h ^= h >> 16
    h ^= h >> 8
    return h


branch_hash: Callable[[bytes], int | None] = _branch_hash_py
try:  # the same function in C (proxy/sip/_scan.c); SIPSCREEN_NO_C: this module's
    if os.environ.get("SIPSCREEN_NO_C"):
        raise ImportError("SIPSCREEN_NO_C is set")
    from ._scan import branch_hash as _c_branch_hash
except ImportError:  # pragma: no cover - no compiler at install time
    pass
else:
    branch_hash = _c_branch_hash


def key_owner(key: bytes, workers: int) -> int:
    """The owner of a transaction key (transaction.transaction_key): by the branch's
    hash when the key starts with one (``branch|sent-by``), else by CRC-32 of the key."""
    if workers <= 1:
        return 0
    if key.startswith(COOKIE):
        h = branch_hash(key[: key.rfind(b"|")])
        if h is not None:
            return h % workers
    return zlib.crc32(key) % workers


def program(workers: int) -> list[Insn]:
    """The classic BPF program that returns ``branch_hash(...) % workers`` for the
    first cookie in the datagram (module docstring)."""
    code: list[Insn] = []
    fixups: list[tuple[int, str]] = []  # (index of a ja, label)

    def ja(label: str) -> None:
        fixups.append((len(code), label))
        code.append((_JA, 0, 0, 0))

    # scan: offsets in chunks; before each chunk, the datagram must be long enough
    # for every load of the chunk and of the hash after it, else: random
    # (a load past the end would end the program with 0, always worker 0)
    need_after = 4 + 7 + SPAN  # the word at the last offset, the cookie, the branch
    for start in range(0, SCAN, _CHUNK):
        last = min(start + _CHUNK, SCAN) - 1
        code.append((_LD_W_LEN, 0, 0, 0))
        code.append((_JGE_K, 1, 0, last + need_after))
        ja("random")
        for k in range(start, last + 1):
            code.append((_LD_W_ABS, 0, 0, k))
            code.append((_JEQ_K, 0, 2, 0x7A396847))  # "z9hG"
            code.append((_LDX_IMM, 0, 0, k + 7))  # X = first byte after the cookie
            ja("found")
    ja("random")
    # found: h = 0 in M[0], X saved in M[2]
    labels = {"found": len(code)}
    code.append((_LD_IMM, 0, 0, 0))
    code.append((_ST, 0, 0, 0))
    code.append((_STX, 0, 0, 2))
    block = 11  # instructions per hashed byte below
    for i in range(SPAN):
        to_done = (SPAN - 1 - i) * block  # from the end of this block to "done"
        code.append((_LD_B_IND, 0, 0, i))  # A = byte
        code.append((_JGT_K, 0, to_done + 9, 0x20))  # <= 0x20: done
        code.append((_JEQ_K, to_done + 8, 0, ord(";")))
        code.append((_JEQ_K, to_done + 7, 0, ord(",")))
        code.append((_ST, 0, 0, 1))  # M[1] = byte
        code.append((_LD_MEM, 0, 0, 0))
        code.append((_ALU_MUL_K, 0, 0, 31))
        code.append((_LDX_MEM, 0, 0, 1))
        code.append((_ALU_ADD_X, 0, 0, 0))  # h * 31 + byte (u32)
        code.append((_ST, 0, 0, 0))
        code.append((_LDX_MEM, 0, 0, 2))  # X = base again
        assert len(code) == labels["found"] + 3 + (i + 1) * block
    # done: mix and pick
    code.append((_LD_MEM, 0, 0, 0))
    code.append((_TAX, 0, 0, 0))
    code.append((_ALU_RSH_K, 0, 0, 16))
    code.append((_ALU_XOR_X, 0, 0, 0))  # h ^= h >> 16
    code.append((_TAX, 0, 0, 0))
    code.append((_ALU_RSH_K, 0, 0, 8))
    code.append((_ALU_XOR_X, 0, 0, 0))  # h ^= h >> 8
    code.append((_ALU_MOD_K, 0, 0, workers))
    code.append((_RET_A, 0, 0, 0))
    labels["random"] = len(code)
    code.append((_LD_W_ABS, 0, 0, _SKF_AD_RANDOM))
    code.append((_ALU_MOD_K, 0, 0, workers))
    code.append((_RET_A, 0, 0, 0))
    for at, label in fixups:
        code[at] = (_JA, 0, 0, labels[label] - at - 1)
    if len(code) > 4096:  # BPF_MAXINSNS
        raise ValueError(f"steering program too long: {len(code)} instructions")
    return code
