"""The import direction of docs/DESIGN.md, checked on the source with ``ast``.

``proxy/sip/*`` and ``rules/*`` are sans-I/O: they import no asyncio, socket,
redis, time, prometheus_client, uvloop or logging handlers (the caller passes
``now``); ``rules/*`` imports nothing from ``proxy``.
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
