"""The Redis MONITOR-line parser (proxy/store/monitor_line.py): pure, no Redis."""

from __future__ import annotations

from proxy.store.monitor_line import _repr_bytes, parse_monitor_line


def test_parse_monitor_line_plain_and_escaped() -> None:
    line = b'1339518083.107412 [0 127.0.0.1:60866] "SADD" "sipscreen:block:caller" "+1202"'
    assert parse_monitor_line(line) == (0, [b"SADD", b"sipscreen:block:caller", b"+1202"])
    esc = b'1.0 [3 lua] "hset" "k" "f" "a\\"b\\\\c\\x01 d"'
    assert parse_monitor_line(esc) == (3, [b"hset", b"k", b"f", b'a"b\\c\x01 d'])
    assert parse_monitor_line(b"OK") is None


def test_prefix_escaped_as_monitor_prints_it() -> None:
    # the feed skips other traffic by looking for b'"' + _repr_bytes(prefix)
    prefix = b'odd"pfx\\\x01:'
    quoted = b'"' + _repr_bytes(prefix) + b'block:caller"'
    line = b'1.0 [0 127.0.0.1:1] "sadd" ' + quoted + b' "+1202"'
    assert parse_monitor_line(line) == (0, [b"sadd", prefix + b"block:caller", b"+1202"])
