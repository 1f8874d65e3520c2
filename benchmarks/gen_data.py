#!/usr/bin/env python3
"""Seeded test data for the side-by-side screening benchmark.

How this works: every number is a structurally valid NANP number in E.164
form (``+1NPANXXXXXX``), so sipscreen's do-not-originate rule for invalid
numbers (47 CFR 64.1200(o)) never fires and both proxies do the same job: one
exact-match lookup of the caller. Kamailio's htable is keyed by the exact From
user string and sipscreen normalises the From user to E.164, so using the
E.164 string itself as the SIPp From user makes both lookups hit the same
key (``+12025550123``).

The number space is (area code) x (exchange) x (line). Area codes come from a
fixed list of assigned geographic NPAs (no N11, no 555, no toll-free or
N9X reserved codes); exchanges are ``[2-9]XX`` minus N11, 555 (the 555-01XX
fiction range lives there), 950, 958, 959 and 976. Blocked callers use lines
0000-4999, allowed callers lines 5000-9999, so an allowed caller can never be
blocked. Blocked numbers are the images of 0..n-1 under a seeded affine
permutation of the blocked index space: distinct by construction, no set of
10 M numbers held in memory.

Outputs (in --out):
  blocklist.txt         one blocked E.164 number per line
  dbtext/blocklist      the same set as a Kamailio db_text table (htable)
  dbtext/version        db_text version table (htable table version 2)
  redis_blocklist.resp  ``redis-cli --pipe`` input: SADD <prefix>block:caller
  callers.csv           SIPp injection file, ``caller;callee;`` per line,
                        about --blocked-pct % of callers on the blocklist
"""

from __future__ import annotations

import argparse
import math
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Assigned geographic area codes (NANPA), none N11, none reserved/N9X.
# fmt: off
AREA_CODES: tuple[int, ...] = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217,
    218, 219, 224, 225, 228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254,
    256, 260, 262, 267, 269, 270, 276, 281, 301, 302, 303, 304, 305, 307, 308,
    309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 325, 330,
    334, 336, 337, 339, 347, 351, 352, 360, 361, 385, 386, 401, 402, 404, 405,
    406, 407, 408, 409, 410, 412, 413, 414, 415, 417, 419, 423, 424, 425, 430,
    432, 434, 435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504, 505,
    507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 551,
    559, 561, 562, 563, 567, 570, 571, 573, 574, 575, 580, 585, 586, 601, 602,
    603, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620,
    623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 682, 701,
    702, 703, 704, 706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720,
    724, 727, 731, 732, 734, 740, 754, 757, 760, 763, 765, 770, 772, 773, 774,
    775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812, 813, 814,
    815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857,
    858, 859, 860, 862, 863, 864, 865, 870, 903, 904, 906, 907, 908, 909, 910,
    912, 913, 914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937, 940,
    941, 949, 951, 952, 954, 956, 970, 971, 972, 973, 978, 979, 980, 985, 989,
)
# fmt: on
# Central office codes NXX: [2-9]XX, not N11, not 555, not 950/958/959/976.
EXCHANGES: tuple[int, ...] = tuple(
    x for x in range(200, 1000) if x % 100 != 11 and x not in (555, 950, 958, 959, 976)
)
LINES_PER_HALF = 5000  # blocked: lines 0000-4999; allowed: 5000-9999
SPACE = len(AREA_CODES) * len(EXCHANGES) * LINES_PER_HALF


def _number(index: int, allowed: bool) -> str:
    """E.164 string of the index-th number of the blocked or allowed half."""
    line = index % LINES_PER_HALF + (LINES_PER_HALF if allowed else 0)
    rest = index // LINES_PER_HALF
    nxx = EXCHANGES[rest % len(EXCHANGES)]
    npa = AREA_CODES[rest // len(EXCHANGES)]
    return f"+1{npa:03d}{nxx:03d}{line:04d}"


@dataclass(frozen=True, slots=True)
class Permutation:
    """Affine permutation i -> (a*i + b) mod SPACE (a coprime with SPACE)."""

    a: int
    b: int

    @classmethod
    def seeded(cls, seed: int) -> Permutation:
        rnd = random.Random(seed)
        while True:
            a = rnd.randrange(SPACE // 3, SPACE)
            if math.gcd(a, SPACE) == 1:
                return cls(a, rnd.randrange(SPACE))

    def __call__(self, i: int) -> int:
        return (self.a * i + self.b) % SPACE


def blocked_numbers(n: int, seed: int) -> Iterator[str]:
    """The n distinct blocked callers, deterministic for a seed."""
    if n > SPACE:
        raise ValueError(f"at most {SPACE} blocked numbers")
    perm = Permutation.seeded(seed)
    for i in range(n):
        yield _number(perm(i), allowed=False)


def resp(*args: str) -> str:
    """One Redis command in RESP (the redis-cli --pipe input format)."""
    out = [f"*{len(args)}\r\n"]
    for a in args:
        out.append(f"${len(a.encode())}\r\n{a}\r\n")
    return "".join(out)


def write_resp(path: str, numbers: Iterable[str], prefix: str) -> None:
    """SADD the numbers to ``<prefix>block:caller`` (DESIGN.md key schema)."""
    key = f"{prefix}block:caller"
    with open(path, "w") as f:
        f.write(resp("DEL", key))
        batch: list[str] = []
        for n in numbers:
            batch.append(n)
            if len(batch) == 1000:
                f.write(resp("SADD", key, *batch))
                batch.clear()
        if batch:
            f.write(resp("SADD", key, *batch))


def generate(
    out: str,
    blocked: int = 100_000,
    calls: int = 200_000,
    blocked_pct: float = 5.0,
    seed: int = 20240601,
    prefix: str = "sipscreen:",
) -> dict[str, int]:
    """Write every output file; returns counts (for the harness and tests)."""
    dbt = os.path.join(out, "dbtext")
    os.makedirs(dbt, exist_ok=True)
    perm = Permutation.seeded(seed)

    with open(os.path.join(out, "blocklist.txt"), "w") as f:
        for num in blocked_numbers(blocked, seed):
            f.write(num + "\n")

    # db_text table for htable: key_type 0 = plain key, value_type 1 = int.
    with open(os.path.join(dbt, "blocklist"), "w") as f:
        f.write(
            "id(int,auto) key_name(string) key_type(int) value_type(int) "
            "key_value(string) expires(int) \n"
        )
        for i, num in enumerate(blocked_numbers(blocked, seed), 1):
            f.write(f"{i}:{num}:0:1:1:0\n")
    with open(os.path.join(dbt, "version"), "w") as f:
        f.write("table_name(string) table_version(int) \nblocklist:2\n")

    write_resp(os.path.join(out, "redis_blocklist.resp"), blocked_numbers(blocked, seed), prefix)

    rnd = random.Random(seed + 1)
    n_blk = 0
    with open(os.path.join(out, "callers.csv"), "w") as f:
        f.write("SEQUENTIAL\n")
        for _ in range(calls):
            if blocked and rnd.random() * 100.0 < blocked_pct:
                caller = _number(perm(rnd.randrange(blocked)), allowed=False)
                n_blk += 1
            else:
                caller = _number(rnd.randrange(SPACE), allowed=True)
            callee = _number(rnd.randrange(SPACE), allowed=rnd.random() < 0.5)
            f.write(f"{caller};{callee};\n")
    return {"blocked": blocked, "calls": calls, "blocked_calls": n_blk}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/sipscreen-bench-data", help="output directory")
    ap.add_argument("--blocked", type=int, default=100_000, help="blocklist size")
    ap.add_argument("--calls", type=int, default=200_000, help="callers.csv lines")
    ap.add_argument("--blocked-pct", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--prefix", default="sipscreen:", help="Redis key prefix")
    a = ap.parse_args()
    c = generate(a.out, a.blocked, a.calls, a.blocked_pct, a.seed, a.prefix)
    print(
        f"blocklist={c['blocked']} csv_lines={c['calls']} blocked_lines={c['blocked_calls']} "
        f"({100.0 * c['blocked_calls'] / max(c['calls'], 1):.2f}%) out={a.out}"
    )


if __name__ == "__main__":
    main()
