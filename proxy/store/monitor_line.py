"""Redis MONITOR lines, parsed (pure: no I/O; tests/unit/test_monitor_line.py).

MONITOR prints each executed command as
`<epoch> [<db> <client>] "<arg>" "<arg>" ...`, every argument escaped by
Redis's `sdscatrepr` (`\\n`, `\\"`, `\\xHH` ...). `parse_monitor_line` gives
back `(db, argv)` with the escapes undone; `_repr_bytes` is the same escaping
applied to our key prefix, so the live feed can skip other traffic with one
`in` test before parsing.
"""

from __future__ import annotations

_ESCAPES = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("a"): b"\a",
    ord("b"): b"\b",
    ord("\\"): b"\\",
    ord('"'): b'"',
}


def _unrepr(tok: bytes) -> bytes:
    """Undo Redis's sdscatrepr escaping of one MONITOR argument."""
    out = bytearray()
    i, n = 0, len(tok)
    while i < n:
        c = tok[i]
        if c == 0x5C and i + 1 < n:  # backslash
            nxt = tok[i + 1]
            if nxt == ord("x") and i + 3 < n:
                out.append(int(tok[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, bytes((nxt,)))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _split_args(body: bytes) -> list[bytes]:
    """`"a" "b\\"c"` -> [b"a", b'b"c'] (MONITOR argument list)."""
    if b"\\" not in body:
        # No escape means no quote inside any argument: split exactly.
        inner = body.strip()
        if len(inner) < 2:
            return []
        return inner[1:-1].split(b'" "')
    args: list[bytes] = []
    i, n = 0, len(body)
    while i < n:
        if body[i] != 0x22:  # '"'
            i += 1
            continue
        j = i + 1
        while j < n and body[j] != 0x22:
            j += 2 if body[j] == 0x5C else 1
        args.append(_unrepr(body[i + 1 : j]))
        i = j + 1
    return args


# The commands proxy/records/ sends with a `records*` key first.
_RECORD_WRITES = frozenset((b"xadd", b"xtrim", b"zadd", b"zremrangebyscore", b"pexpire", b"expire"))


def parse_monitor_line(line: bytes) -> tuple[int, list[bytes]] | None:
    """`1339518083.107412 [0 127.0.0.1:60866] "sadd" "k" "m"` -> (0, argv)."""
    lb = line.find(b" [")
    rb = line.find(b"] ", lb)
    if lb < 0 or rb < 0:
        return None
    sp = line.find(b" ", lb + 2)
    try:
        db = int(line[lb + 2 : sp])
    except ValueError:
        return None
    argv = _split_args(line[rb + 2 :])
    return (db, argv) if argv else None


def _repr_bytes(b: bytes) -> bytes:
    """Redis's sdscatrepr of a key prefix, as MONITOR prints it."""
    out = bytearray()
    for c in b:
        if c in (0x5C, 0x22):
            out += b"\\" + bytes((c,))
        elif 0x20 <= c < 0x7F:
            out.append(c)
        else:
            out += b"\\x%02x" % c
    return bytes(out)
