"""Micro-benchmark of STIR/SHAKEN verification per call (rules/shaken.py).

Times, with a throw-away STI PKI built at start (tests/unit/shaken_pki.py:
root -> intermediate -> signer with TNAuthList, P-256):

- ``parse``: ``parse_identity`` alone (base64url + JSON + claim checks);
- ``signature``: the ES256 check alone (``cryptography``), the ~70 µs part;
- ``verify miss``: the whole first verification of a header value (parse,
  chain to the anchor with validity dates, CRL, TNAuthList, signature,
  claims), every header value distinct so the result cache never hits;
- ``verify hit``: the same header value again (a retransmission or a
  repeated header within its iat window): a dict probe and the claim checks;
- ``unsigned``: an INVITE with no Identity header.

Each line gives the median and p99 wall-clock µs per operation over bounded
batches, and the thread-CPU median. Not a test: it never gates CI.

    python3 benchmarks/bench_shaken.py [--seconds 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from rules.shaken import Verifier, parse_identity  # noqa: E402
from tests.unit.shaken_pki import NOW, PKI, X5U, identity, passport  # noqa: E402

CALLER, CALLEE = "+12127360123", "+13125557000"


def bench(name: str, fn: Callable[[int], None], seconds: float, batch: int) -> float:
    fn(0)  # warm
    wall: list[float] = []
    cpu: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline and len(wall) < 10_000:
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(batch):
            fn(i)
            i += 1
        wall.append((time.perf_counter() - t0) / batch * 1e6)
        cpu.append((time.thread_time() - c0) / batch * 1e6)
    wall.sort()
    med = statistics.median(wall)
    p99 = wall[min(len(wall) - 1, int(len(wall) * 0.99))]
    print(
        f"{name:<14} median {med:8.1f} µs  p99 {p99:8.1f} µs  "
        f"cpu median {statistics.median(cpu):8.1f} µs  ({len(wall) * batch} ops)"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per case (bounded)")
    args = ap.parse_args()
    secs = min(max(args.seconds, 0.1), 10.0)

    pki = PKI()
    crl = pki.crl(999)
    # Distinct header values (origid differs) so the miss case never hits the cache.
    n_distinct = 4000
    values = [
        identity(passport(pki.signer_key, payload={"origid": f"bench-{k}"}))
        for k in range(n_distinct)
    ]
    one = values[0]
    pp = parse_identity(one)
    key = pki.signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der_sig = encode_dss_signature(
        int.from_bytes(pp.signature[:32], "big"), int.from_bytes(pp.signature[32:], "big")
    )

    def new_verifier() -> Verifier:
        return Verifier(pki.anchors, {X5U: pki.chain}.get, crl=crl, cache_size=n_distinct * 2)

    miss_v = [new_verifier()]

    def miss(i: int) -> None:
        k = i % n_distinct
        if k == 0 and i:
            miss_v[0] = new_verifier()  # a fresh cache each round of distinct values
        res = miss_v[0].verify([values[k]], CALLER, CALLEE, NOW)
        assert res.reason == "", res

    hit_v = new_verifier()
    assert hit_v.verify([one], CALLER, CALLEE, NOW).reason == ""

    def hit(_i: int) -> None:
        hit_v.verify([one], CALLER, CALLEE, NOW)

    def unsigned(_i: int) -> None:
        hit_v.verify([], CALLER, CALLEE, NOW)

    def parse(_i: int) -> None:
        parse_identity(one)

    def signature(_i: int) -> None:
        key.verify(der_sig, pp.signing_input, ec.ECDSA(hashes.SHA256()))

    print(f"rules.shaken verification, Identity header {len(one)} bytes, chain of 3, CRL loaded")
    bench("parse", parse, secs, 200)
    sig = bench("signature", signature, secs, 50)
    m = bench("verify miss", miss, secs, 20)
    h = bench("verify hit", hit, secs, 1000)
    bench("unsigned", unsigned, secs, 1000)
    print(f"verify miss / signature alone: {m / sig:.2f}; miss / hit: {m / h:.0f}")


if __name__ == "__main__":
    main()
