"""A bounded fuzz run (atheris/libFuzzer) over both SIP parsers.

Every input goes through ``parse`` (C and pure Python: the same message or
the same error), the C header scan against the Python one, ``scan_response``
(C against Python wherever C answers) and ``scan_request`` (the C-only lean
forward: never raises, cuts inside the message): the checks of
tests/unit/test_sip_differential.py, so a disagreement fails here as there.
The seeds are that file's bases (RFC 4475, a SIPp INVITE, a relayed 200 OK,
an in-dialog ACK).

    python tests/fuzz/fuzz_sip.py [--seconds N] [--runs N] [--seed N]
                                  [--corpus DIR] [--artifacts PREFIX]
    python tests/fuzz/fuzz_sip.py --replay DIR [--seconds N] [--seed N]

The first form fuzzes for a bounded time and count, coverage-guided by the
pure-Python reference (``proxy.sip`` is instrumented), growing ``--corpus``.
Under AddressSanitizer (scripts/test-c, asan leg) the coverage feedback is
lost (gcc's libasan provides the symbols libFuzzer's coverage needs), so the
leg fuzzes with the plain build first and ``--replay``s the grown corpus
through the sanitized one, followed by seeded random mutations of it.

Exits 0 when the run ends clean, non-zero (libFuzzer saves the input as
PREFIX crash-*) on a failure; 2 when atheris or the C parser is missing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

UNIT = Path(__file__).resolve().parent.parent / "unit"
sys.path.insert(0, str(UNIT))

try:
    import atheris
except ImportError:  # pragma: no cover - the test extras pin it
    print("fuzz_sip: atheris is not installed (pip install -c constraints.txt -e '.[test]')")
    sys.exit(2)

# coverage feedback from the pure-Python reference (the SIP layer only: the
# test helpers pull in Hypothesis, which is not worth instrumenting)
with atheris.instrument_imports(include=["proxy.sip"]):
    from proxy.sip import message, relay  # noqa: F401

from test_sip_cscan import check_parse, check_scan  # noqa: E402
from test_sip_differential import (  # noqa: E402
    BASES,
    _lean_forward_is_sane,
    _mutate,
    _response_agrees,
)


def one_input(data: bytes) -> None:
    check_parse(data)
    check_scan(data)
    _response_agrees(data)
    _lean_forward_is_sane(data)


def replay(corpus: Path, seconds: float, seed: int) -> int:
    """Every seed and every file of ``corpus`` through the checks once, then
    (``seconds`` > 0) seeded random mutations of them (the differential
    test's: octets inserted, written over or cut, lines doubled or dropped)
    until the time is up: the fuzzing where libFuzzer's coverage is lost."""
    inputs = [*BASES, *(p.read_bytes() for p in sorted(corpus.glob("*")) if p.is_file())]
    for data in inputs:
        one_input(data)
    rng = random.Random(seed)
    mutated = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = rng.choice(inputs)
        for _ in range(rng.randint(1, 4)):
            data = _mutate(rng, data) if data else data
        one_input(data)
        mutated += 1
    print(f"fuzz_sip: {len(inputs)} inputs from {corpus} and {mutated} mutations of them: clean")
    return 0


def fuzz(args: argparse.Namespace, corpus: str) -> None:
    for i, base in enumerate(BASES):
        Path(corpus, f"seed{i:03d}").write_bytes(base)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={args.seconds}",
            f"-runs={args.runs}",
            f"-seed={args.seed}",
            "-max_len=4096",
            "-print_final_stats=1",
            f"-artifact_prefix={args.artifacts}",
            corpus,
        ],
        one_input,
    )
    atheris.Fuzz()  # exits the process when the run ends


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=int, default=30, help="time bound (default 30)")
    ap.add_argument("--runs", type=int, default=500_000, help="input bound (default 500000)")
    ap.add_argument("--seed", type=int, default=4475, help="libFuzzer's seed (default 4475)")
    ap.add_argument("--corpus", default=None, help="the corpus to grow (default: a temp dir)")
    ap.add_argument(
        "--replay",
        default=None,
        help="run this corpus through the checks, then --seconds of "
        "seeded mutations of it (no libFuzzer)",
    )
    ap.add_argument("--artifacts", default="", help="libFuzzer's prefix for a failing input")
    args = ap.parse_args()
    if message._C_PARSE is None:
        print("fuzz_sip: proxy/sip/_scan.c is not loaded: nothing to compare")
        return 2
    if args.replay:
        return replay(Path(args.replay), args.seconds, args.seed)
    if args.corpus:
        Path(args.corpus).mkdir(parents=True, exist_ok=True)
        fuzz(args, args.corpus)
    else:
        with tempfile.TemporaryDirectory(prefix="fuzz_sip.") as corpus:
            fuzz(args, corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
