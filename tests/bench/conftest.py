"""The benchmark smoke tests' shared set-up: benchmarks/ importable, and the
peers every side-by-side run needs (SIPp, Kamailio, a runnable sipscreen)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import harness  # noqa: E402


@pytest.fixture
def side_by_side_peers() -> None:
    """Skip unless SIPp, Kamailio and sipscreen can all run here."""
    if shutil.which("sipp") is None or harness.which_kamailio() is None:
        pytest.skip("sipp or kamailio not installed")
    if harness.sipscreen_available() is not None:
        pytest.skip("sipscreen cannot start")
