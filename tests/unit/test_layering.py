"""The import direction of docs/DESIGN.md, checked on the source with ``ast``.

``proxy/sip/*`` and ``rules/*`` are sans-I/O: they import no asyncio, socket,
redis, time, prometheus_client, uvloop or logging handlers (the caller passes
``now``); ``rules/*`` imports nothing from ``proxy``; ``proxy/sip/*`` imports
nothing from ``proxy`` outside ``proxy/sip``; ``rules/*`` does no file I/O
(no ``open()``, no path or file methods, no filesystem modules, no ``io``
but its in-memory buffers): it parses the text proxy/commands reads for it;
no module of ``proxy`` but the CLI entry imports ``proxy/commands``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "asyncio",
    "socket",
    "redis",
    "time",
    "prometheus_client",
    "uvloop",
    "logging.handlers",
}
PURE_FILES = sorted((ROOT / "proxy" / "sip").glob("*.py")) + sorted((ROOT / "rules").glob("*.py"))
RULES_FILES = sorted((ROOT / "rules").glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative ones resolved)."""
    package = path.parent.relative_to(ROOT).parts
    return modules_in(path.read_text(encoding="utf-8"), package)


def modules_in(source: str, package: tuple[str, ...]) -> set[str]:
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _hits(names: set[str], banned: set[str]) -> set[str]:
    return {n for n in names for b in banned if n == b or n.startswith(b + ".")}


def test_the_pure_layers_exist() -> None:
    assert RULES_FILES, "rules/ has no modules"


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_layers_do_no_io(path: Path) -> None:
    assert _hits(imported_modules(path), FORBIDDEN) == set()


@pytest.mark.parametrize("path", RULES_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rules_do_not_import_proxy(path: Path) -> None:
    assert _hits(imported_modules(path), {"proxy"}) == set()


def test_checker_sees_forbidden_imports() -> None:
    src = (
        "import time\n"
        "import os.path\n"
        "from redis import asyncio\n"
        "from ..proxy import screen\n"
        "from . import numbers\n"
        "import logging.handlers\n"
        "from asyncio.events import AbstractEventLoop\n"
    )
    names = modules_in(src, ("rules",))
    assert {"rules.numbers", "proxy.screen", "os.path"} <= names
    assert _hits(names, FORBIDDEN) == {
        "time",
        "redis",
        "redis.asyncio",
        "logging.handlers",
        "asyncio.events",
        "asyncio.events.AbstractEventLoop",
    }
    assert _hits(names, {"proxy"}) == {"proxy", "proxy.screen"}


SIP_FILES = sorted((ROOT / "proxy" / "sip").glob("*.py"))


def outside_sip(names: set[str]) -> set[str]:
    """Modules of ``proxy`` outside ``proxy.sip`` (a bare ``proxy`` is the
    package itself, named by ``from proxy import sip``: its members are checked)."""
    return {
        n
        for n in names
        if n.startswith("proxy.") and not (n == "proxy.sip" or n.startswith("proxy.sip."))
    }


@pytest.mark.parametrize("path", SIP_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_sip_imports_nothing_else_from_proxy(path: Path) -> None:
    """The SIP core is the bottom layer of proxy/: it imports only itself."""
    assert outside_sip(imported_modules(path)) == set()


# rules/ parses text it is handed; the caller (proxy/commands) reads the files.
FILE_MODULES = {"pathlib", "os", "shutil", "glob", "tempfile", "fileinput", "mmap", "codecs"}
IN_MEMORY_IO = {"StringIO", "BytesIO"}  # io's in-memory buffers: text already read
FILE_METHODS = {
    "open",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "iterdir",
    "glob",
    "rglob",
    "mkdir",
    "unlink",
    "touch",
}


def file_io_in(source: str) -> list[str]:
    """Every file access in ``source``: an ``open()`` call, a call of a
    path/file method (``.read_text()``, ``.open()`` ...), an import of a
    filesystem module, or an ``io`` name other than the in-memory buffers."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "open":
                found.append(f"line {node.lineno}: open()")
            elif isinstance(f, ast.Attribute) and f.attr in FILE_METHODS:
                found.append(f"line {node.lineno}: .{f.attr}()")
        elif isinstance(node, ast.Attribute):
            v = node.value
            if isinstance(v, ast.Name) and v.id == "io" and node.attr not in IN_MEMORY_IO:
                found.append(f"line {node.lineno}: io.{node.attr}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FILE_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if top in FILE_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import")
            elif top == "io":
                found += [
                    f"line {node.lineno}: from io import {a.name}"
                    for a in node.names
                    if a.name not in IN_MEMORY_IO
                ]
    return found


@pytest.mark.parametrize("path", RULES_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_rules_do_no_file_io(path: Path) -> None:
    assert file_io_in(path.read_text(encoding="utf-8")) == []


def test_checkers_see_sip_escapes_and_file_io() -> None:
    sip = modules_in(
        "from proxy.sip import message\nfrom .. import store\nimport proxy.screen\n",
        ("proxy", "sip"),
    )
    assert outside_sip(sip) == {"proxy.store", "proxy.screen"}
    src = (
        "import io\n"
        "import csv\n"
        "from pathlib import Path\n"
        "from io import StringIO, TextIOWrapper\n"
        "rows = csv.reader(io.StringIO(text))\n"
        "data = open(name).read()\n"
        "text = Path(name).read_text()\n"
        "with io.open(name) as f: pass\n"
        "p.write_bytes(b'')\n"
    )
    assert sorted(file_io_in(src)) == [
        "line 3: from pathlib import",
        "line 4: from io import TextIOWrapper",
        "line 6: open()",
        "line 7: .read_text()",
        "line 8: .open()",
        "line 8: io.open",
        "line 9: .write_bytes()",
    ]


ADAPTER_FILES = [
    p
    for p in sorted((ROOT / "proxy").rglob("*.py"))
    if "commands" not in p.relative_to(ROOT).parts and p.name != "cli.py"
]


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_cli_entry_uses_the_commands(path: Path) -> None:
    """proxy/commands (the data subcommands) sits on top: proxy/cli.py loads
    it, nothing in the proxy imports it."""
    assert _hits(imported_modules(path), {"proxy.commands"}) == set()


STORE_PURE = [ROOT / "proxy" / "store" / "keys.py", ROOT / "proxy" / "store" / "monitor_line.py"]
STORE_FILES = sorted((ROOT / "proxy" / "store").glob("*.py"))


@pytest.mark.parametrize("path", STORE_PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_store_schema_and_monitor_parser_are_pure(path: Path) -> None:
    """The key schema and the MONITOR-line parser are pure (tested without
    Redis in tests/unit): no sockets, no event loop, no clock."""
    assert _hits(imported_modules(path), FORBIDDEN) == set()


@pytest.mark.parametrize("path", STORE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_store_does_not_reach_up_into_the_server(path: Path) -> None:
    """proxy/store sits under the server and the screening glue, never above."""
    assert _hits(imported_modules(path), {"proxy.server", "proxy.screen"}) == set()


UNDER_SERVER_FILES = sorted((ROOT / "proxy" / "config").glob("*.py")) + sorted(
    (ROOT / "proxy" / "records").glob("*.py")
)
ABOVE_CONFIG_AND_RECORDS = {
    "proxy.server",
    "proxy.screen",
    "proxy.store",
    "proxy.commands",
    "proxy.cli",
}


def test_config_and_records_packages_exist() -> None:
    assert UNDER_SERVER_FILES, "proxy/config and proxy/records have no modules"


@pytest.mark.parametrize("path", UNDER_SERVER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_and_records_sit_under_the_server(path: Path) -> None:
    """proxy/config and proxy/records are read by the server, the screening
    glue and the CLI; they never reach up into them (or into the store)."""
    assert _hits(imported_modules(path), ABOVE_CONFIG_AND_RECORDS) == set()


def test_record_schema_is_pure() -> None:
    """The record's columns and `clip` (used on the screening path) need no
    event loop, socket, Redis or clock."""
    path = ROOT / "proxy" / "records" / "schema.py"
    assert _hits(imported_modules(path), FORBIDDEN) == set()
