"""What each shape of the core's screening contract costs, in instructions per INVITE.

Three shapes of the one step, with a stub screen returning None: ``blanket`` (the
old call inside a blanket ``except``), ``protocol`` (the ``core.Screen``
Protocol: ``ScreenError`` and bugs told apart, proxy/sip/core.py) and ``event``
(the core queues an event holding the request and its routing state; the
adapter drains it, calls the screen and hands the answer back). docs/DESIGN.md
"The core's contract: screening" quotes the result. Run under callgrind:

    python3 benchmarks/bench_screen_contract.py --callgrind

prints, per shape, the difference in instructions between N and 2N calls
divided by N. Without ``--callgrind``: ``--case NAME --iters N`` runs one shape
N times (what the callgrind runs execute). Not a test: it never gates CI.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass

Addr = tuple[str, int]


class ScreenError(Exception):
    pass


def screen(req: object, src: Addr, transport: str) -> object:
    return None


class Blanket:
    def __init__(self) -> None:
        self.errors = 0
        self.out: list[tuple[object, Addr, str]] = []

    def request(self, req: object, src: Addr, transport: str, dest: Addr, out_t: str) -> None:
        try:
            screen(req, src, transport)
        except Exception:
            self.errors += 1
        self.out.append((req, dest, out_t))


class Contract(Blanket):
    def __init__(self) -> None:
        super().__init__()
        self.bugs = 0

    def request(self, req: object, src: Addr, transport: str, dest: Addr, out_t: str) -> None:
        try:
            screen(req, src, transport)
        except Exception as exc:
            self.failed(exc)
        self.out.append((req, dest, out_t))

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        if not isinstance(exc, ScreenError):
            self.bugs += 1


@dataclass(slots=True)
class ScreenEvent:
    req: object
    src: Addr
    transport: str
    dest: Addr
    out_t: str
    n_ours: int
    strip: object
    key: object


class Evented:
    def __init__(self) -> None:
        self.events: list[ScreenEvent] = []
        self.out: list[tuple[object, Addr, str]] = []

    def request(self, req: object, src: Addr, transport: str, dest: Addr, out_t: str) -> None:
        self.events.append(ScreenEvent(req, src, transport, dest, out_t, 0, None, None))

    def events_to_screen(self) -> list[ScreenEvent]:
        ev = self.events
        self.events = []
        return ev

    def screened(self, ev: ScreenEvent, answer: object, now: float) -> None:
        self.out.append((ev.req, ev.dest, ev.out_t))


def run(case: str, n: int) -> None:
    req = object()
    src = ("192.0.2.1", 5060)
    dest = ("192.0.2.2", 5060)
    if case == "event":
        ev = Evented()
        for _ in range(n):
            ev.request(req, src, "udp", dest, "udp")
            for e in ev.events_to_screen():  # the adapter's drain
                ev.screened(e, screen(e.req, e.src, e.transport), 0.0)
            ev.out.clear()
        return
    core = Blanket() if case == "blanket" else Contract()
    for _ in range(n):
        core.request(req, src, "udp", dest, "udp")
        core.out.clear()


def instructions(case: str, n: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    cmd += [sys.executable, __file__, "--case", case, "--iters", str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)
    m = re.search(r"refs:\s*([\d,]+)", out.stderr)
    if m is None:
        raise RuntimeError("no callgrind total in: " + out.stderr[-500:])
    return int(m.group(1).replace(",", ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--case", choices=("blanket", "protocol", "event"), default="protocol")
    ap.add_argument("--iters", type=int, default=20000)
    args = ap.parse_args()
    if not args.callgrind:
        run(args.case, args.iters)
        return
    n = args.iters
    for case in ("blanket", "protocol", "event"):
        per = (instructions(case, 2 * n) - instructions(case, n)) / n
        print(f"{case:10s} {per:8.0f} instructions per INVITE")


if __name__ == "__main__":
    main()
