"""README.md lists every `sipscreen` command the CLI has (issue 10 item 19:
the README lists every command), and every option of `records export` (the
evidence queries), so a command added to proxy/commands/ without a line in
the README fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from proxy import commands
from proxy.commands import records as records_cmd
from proxy.commands.common import when_arg

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _leaves(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[str, ...]]:
    for a in parser._actions:  # noqa: SLF001
        if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
            out: list[tuple[str, ...]] = []
            for name, sub in a.choices.items():
                out += _leaves(sub, [*path, name])
            return out
    return [tuple(path)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sipscreen")
    commands.add_subcommands(p.add_subparsers(dest="command"))
    return p


def test_readme_lists_every_command() -> None:
    missing = [
        " ".join(leaf)
        for leaf in _leaves(_parser(), [])
        if not re.search(r"sipscreen " + re.escape(" ".join(leaf)) + r"\b", README)
    ]
    assert not missing, f"README.md does not list: {missing}"


def test_readme_names_every_records_export_option() -> None:
    sub = next(
        a
        for a in _parser()._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    )
    records = sub.choices["records"]
    export = next(
        a
        for a in records._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    ).choices["export"]
    opts = [
        o
        for a in export._actions  # noqa: SLF001
        for o in a.option_strings
        if o.startswith("--") and o not in ("--help", "--config", "--redis", "--key-prefix")
    ]
    missing = [o for o in opts if o not in README]
    assert not missing, f"README.md does not name records export {missing}"


def test_readme_metrics_are_the_exported_ones() -> None:
    """Every metric the README names exists, and every metric family the
    proxy exports is in the README's Observability list."""
    from prometheus_client import CollectorRegistry

    from proxy.metrics import Metrics

    m = Metrics(CollectorRegistry())
    samples = {s.name for fam in m.registry.collect() for s in fam.samples}
    families = {fam.name for fam in m.registry.collect()}
    named = {n for n, star in re.findall(r"(sipscreen_[a-z_]*[a-z])(_\*)?", README) if not star}
    counters = {f + "_total" for f in families}
    assert named <= samples | families | counters, named - (samples | families | counters)
    missing = {f for f in families if f not in named and f + "_total" not in named}
    assert not missing, f"README.md Observability does not list {sorted(missing)}"


def test_records_export_day_is_a_us_eastern_day() -> None:
    """`records export --day D` reads D in US Eastern Time like `--since D`
    and every other date-only input (issue 9, "Deadlines to the day"): a
    provider's day of records is not shifted by the UTC offset."""
    from datetime import UTC, datetime

    since, until = records_cmd._et_day_range("2026-11-28")  # noqa: SLF001
    assert since == datetime(2026, 11, 28, 5, 0, tzinfo=UTC).timestamp()  # 00:00 EST
    assert until == datetime(2026, 11, 29, 5, 0, tzinfo=UTC).timestamp() - 0.001
    assert since == when_arg("2026-11-28", "--since")  # noqa: SLF001
    s, u = records_cmd._et_day_range("2026-03-08")  # noqa: SLF001  (DST starts: 23 hours)
    assert round(u + 0.001 - s) == 23 * 3600
