"""RFC 4475 torture messages over real UDP through the running proxy.

Each of the 49 messages (tests/data/rfc4475/*.dat) is sent to a proxy
subprocess with a stand-in softswitch (a bare UDP socket recording what
arrives) behind it. Malformed requests are answered locally (4xx/505) and
never reach the softswitch; responses that must be dropped are dropped;
valid requests are relayed; the proxy still answers OPTIONS afterwards and
printed no traceback.

These messages name addresses off this machine (192.0.2.x, example.com,
255.255.255.255 in bcast.dat). The test only runs inside a network namespace
that has nothing but loopback (SIPSCREEN_NETNS=1, set by scripts/test:
`unshare --net sh -c 'ip link set lo up; SIPSCREEN_NETNS=1 exec python -m
pytest tests/conformance'`), where anything aimed elsewhere fails with
"Network is unreachable". Redis on 6379 is outside the namespace, so the
test starts its own redis-server inside it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from sipscreen_testlib import options_ping, stays, wait_for

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.environ.get("SIPSCREEN_NETNS") != "1",
        reason="needs an isolated network namespace (SIPSCREEN_NETNS=1, see scripts/test)",
    ),
]

DATA = Path(__file__).resolve().parents[1] / "data" / "rfc4475"

# RFC 4475 verdict per message, as a proxy in front of one softswitch sees it:
# "forward" (relayed to the softswitch; an INVITE may instead be screened and
# refused with a 6xx), an int (answered locally with that status, never
# relayed) or "drop" (neither relayed nor answered).
EXPECTED: dict[str, str | int] = {
    # §3.1.1 valid messages
    "wsinv": "forward",
    "intmeth": "forward",
    "esc01": "forward",
    "escnull": "forward",
    "esc02": "forward",
    "lwsdisp": "forward",
    "longreq": "forward",
    "dblreq": "forward",
    "semiuri": "forward",
    "transports": "forward",
    "mpart01": "forward",
    "unreason": "drop",  # a valid response whose top Via is not ours (RFC 3261 §16.7)
    "noreason": "drop",
    # §3.1.2 invalid messages
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": "drop",  # no usable Via to answer
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "lwsstart": 400,
    "trws": 400,
    "escruri": 400,
    "baddate": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,
    "bigcode": "drop",  # a response: never answered
    # §3.2 transaction layer
    "badbranch": "forward",
    # §3.3 application layer
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": "forward",
    "bext01": 420,
    "invut": "forward",
    "regaut01": "forward",
    "multi01": 400,
    "mcl01": 400,
    "bcast": "drop",  # never sent to 255.255.255.255
    "zeromf": 483,
    "cparam01": "forward",
    "cparam02": "forward",
    "regescrt": "forward",
    "sdp01": "forward",
    # §3.4 backward compatibility
    "inv2543": "forward",
}


def _drain(sock: socket.socket) -> list[bytes]:
    got: list[bytes] = []
    sock.setblocking(False)
    while True:
        try:
            got.append(sock.recvfrom(70000)[0])
        except BlockingIOError:
            return got


def _counters(proxy: Any) -> tuple[dict[str, float], float]:
    """The local answers by status, and the datagrams the workers took in."""
    from prometheus_client.parser import text_string_to_metric_families

    answers: dict[str, float] = {}
    datagrams = 0.0
    for fam in text_string_to_metric_families(proxy.metrics_text()):
        for s in fam.samples:
            ev = s.labels.get("event", "")
            if s.name == "sipscreen_core_events_total" and ev.startswith("local_responses_"):
                answers[ev.rsplit("_", 1)[1]] = s.value
            elif s.name == "sipscreen_worker_datagrams_total":
                datagrams += s.value
    return answers, datagrams


def _outcome(
    proxy: Any, ss: socket.socket, before: tuple[dict[str, float], float], want: str | int
) -> tuple[list[bytes], dict[int, float]]:
    """What one message sent came to: the datagrams relayed to the softswitch
    and the local answers by status. Polls (core counters are exported twice
    a second) until the message is counted in and, unless it must be dropped,
    relayed or answered (at most 5 s); a drop is then watched 0.3 s more for
    a late relay or answer."""
    forwarded: list[bytes] = []
    answered: dict[int, float] = {}

    def settled() -> bool:
        forwarded.extend(_drain(ss))
        answers, datagrams = _counters(proxy)
        answered.clear()
        for k, v in answers.items():
            if v > before[0].get(k, 0.0):
                answered[int(k)] = v - before[0].get(k, 0.0)
        return datagrams > before[1] and (want == "drop" or bool(forwarded or answered))

    def quiet() -> bool:
        settled()  # the latest relays and answers
        return not (forwarded or answered)

    wait_for(settled, timeout=5.0, interval=0.05)
    if want == "drop":
        stays(quiet, 0.3)
    return forwarded, answered


def test_table_covers_every_message() -> None:
    assert sorted(p.stem for p in DATA.glob("*.dat")) == sorted(EXPECTED)


def test_torture_over_udp(private_redis: Any, start_proxy: Any) -> None:
    ss = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ss.bind(("127.0.0.1", 0))
    ss_port = ss.getsockname()[1]
    ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ua.bind(("127.0.0.1", 0))
    try:
        proxy = start_proxy(ss_port, private_redis.url, "sipscreen-torture:", loop="uvloop")
        failures: list[str] = []
        for name in sorted(EXPECTED):
            want = EXPECTED[name]
            data = (DATA / f"{name}.dat").read_bytes()
            before = _counters(proxy)
            _drain(ss)
            ua.sendto(data, ("127.0.0.1", proxy.port))
            forwarded, answered = _outcome(proxy, ss, before, want)
            if want == "forward":
                refused = [s for s in answered if 600 <= s < 700]
                if not forwarded and not refused:
                    failures.append(f"{name}: not relayed (answered {answered})")
                if any(400 <= s < 600 for s in answered):
                    failures.append(f"{name}: answered {answered}, expected relay")
            elif want == "drop":
                if forwarded or answered:
                    failures.append(f"{name}: relayed={len(forwarded)} answered={answered}")
            else:
                if forwarded:
                    failures.append(f"{name}: relayed to the softswitch, expected {want}")
                if want not in answered:
                    failures.append(f"{name}: answered {answered}, expected {want}")
        assert not failures, "\n".join(failures)
        # Still alive and answering.
        resp = options_ping("127.0.0.1", proxy.port, timeout=2.0)
        assert resp is not None and resp.startswith(b"SIP/2.0 200")
        assert proxy.proc is not None and proxy.proc.poll() is None
    finally:
        ss.close()
        ua.close()
