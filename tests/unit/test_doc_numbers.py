"""The example numbers the README, docs/REDIS.md, the sample data and the
start-up banner show are numbers that pass the NANP rules: an example of
blocking, allowing or checking a caller that the do-not-originate rule
already blocks as invalid (555-01XX, 47 CFR 64.1200(o)) demonstrates
nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.config import load_config
from rules.numbers import nanp_invalid_reason

ROOT = Path(__file__).resolve().parents[2]
E164 = re.compile(r"(?<![\d+])\+1\d{10}(?!\d)")
FILES = ["README.md", "docs/REDIS.md", "proxy/defaults/sample-data.txt"]


@pytest.mark.parametrize("name", FILES)
def test_example_numbers_pass_the_nanp_rules(name: str) -> None:
    text = (ROOT / name).read_text(encoding="utf-8")
    numbers = sorted(set(E164.findall(text)))
    assert numbers, f"{name}: no example numbers found"
    bad = {n: nanp_invalid_reason(n) for n in numbers if nanp_invalid_reason(n)}
    assert not bad, f"{name}: example numbers the DNO rule blocks as invalid: {bad}"


def test_banner_block_example_passes() -> None:
    line = load_config(None, {}).block_example()
    (number,) = E164.findall(line)
    assert nanp_invalid_reason(number) is None
