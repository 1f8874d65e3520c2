"""Outside ``proxy/sip/message.py`` a message is read through its public API only.

Checked on the source with ``ast``: no module of ``proxy/``, ``rules/`` or
``benchmarks/`` other than message.py imports an underscore name from it, reads
an underscore attribute of the ``message`` module, or touches a private slot or
method of the message classes (``req._all``, ``req._spans`` ...); the spans are
read with ``indexed``, ``spans()``, ``header_spans()``, ``header_block`` and
``headers_start``. ``self._x`` is a module's own attribute and is not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from proxy.sip.message import parse

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = ROOT / "proxy" / "sip" / "message.py"
MESSAGE_CLASSES = {"_Message", "Request", "Response", "Via", "NameAddr"}
FILES = [
    p
    for d in ("proxy", "rules", "benchmarks")
    for p in sorted((ROOT / d).rglob("*.py"))
    if p != MESSAGE
]


def private_members() -> set[str]:
    """Underscore slots and methods of the message classes (``__dunder__`` aside)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(MESSAGE.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.ClassDef) and node.name in MESSAGE_CLASSES):
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                names.add(item.name)
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                value = item.value
                if isinstance(value, ast.Tuple):
                    names.update(
                        e.value
                        for e in value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    )
    return {n for n in names if n.startswith("_") and not n.endswith("__")}


PRIVATE = private_members()


def escapes(source: str, private: set[str]) -> list[str]:
    """Every reach into message.py's private names in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("message"):
            found += [
                f"line {node.lineno}: import {a.name}" for a in node.names if a.name[:1] == "_"
            ]
        elif isinstance(node, ast.Attribute) and node.attr[:1] == "_":
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id == "self":
                continue
            if isinstance(owner, ast.Name) and owner.id == "message":
                found.append(f"line {node.lineno}: message.{node.attr}")
            elif node.attr in private:
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_the_private_names_are_found() -> None:
    assert {"_all", "_cache", "_spans", "_from_span"} <= PRIVATE


def test_checker_sees_escapes() -> None:
    src = (
        "from proxy.sip.message import parse, _parse\n"
        "from . import message\n"
        "x = message._c_via\n"
        "y = req._all.get(b'route')\n"
        "self._all = {}\n"
        "z = req.spans(b'route')\n"
    )
    assert escapes(src, PRIVATE) == [
        "line 1: import _parse",
        "line 3: message._c_via",
        "line 4: ._all",
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_reaches_into_message(path: Path) -> None:
    assert escapes(path.read_text(encoding="utf-8"), PRIVATE) == []


def test_public_span_api() -> None:
    raw = (
        b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
        b"Route: <sip:p;lr>,\r\n <sip:q;lr>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:1@h>\r\n"
        b"Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 9\r\nX-Odd: v\r\n\r\n"
    )
    req = parse(raw)
    assert req.headers_start == raw.index(b"Via:")
    assert len(req.header_block) == req.headers_end
    (s, e) = (req.spans(b"route") or [(0, 0)])[0]
    assert req.header_block[s:e].strip() == b"<sip:p;lr>,   <sip:q;lr>"  # folding joined
    assert req.spans(b"x-odd") == req.header_spans(b"X-Odd")
    assert req.spans(b"proxy-require") is None and b"proxy-require" not in req.indexed
    assert req.indexed[b"route"] == req.spans(b"route")
    mf = req.spans(b"max-forwards") or [(0, 0)]
    assert raw[mf[0][0] : mf[0][1]] == b" 9"
