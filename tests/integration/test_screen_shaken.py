"""[shaken] through proxy/screen.py: config, facts and the decision record.

A real SnapshotStore on the real Redis (per-test prefix), real parsed
INVITEs carrying Identity headers signed in the test (tests/unit/shaken_pki.py),
a real RecordWriter. Off by default: no verification, the facts stay None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from proxy.config import ConfigError, load_config
from proxy.metrics import Metrics
from proxy.records import RecordWriter
from proxy.screen import Screener
from proxy.shaken import cert_file_name, load_cert_dir
from proxy.sip.message import parse
from proxy.store import SnapshotStore
from rules.shaken import FAILED, NO_VALIDATION, PASSED
from tests.unit.shaken_pki import NOW, PKI, X5U, identity, passport, pem

SRC = ("10.1.2.3", 5060)
CALLER = "+12127360123"
CALLEE = "+13125557000"
BLOCKED = "+12127369999"


def _invite(caller: str = CALLER, *, ident: bytes | None = None, compact: bool = False) -> Any:
    hdrs = (
        f"INVITE sip:{CALLEE}@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKshaken1\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{caller}@10.1.2.3>;tag=1\r\n"
        f"To: <sip:{CALLEE}@127.0.0.1>\r\n"
        "Call-ID: shaken-test-1\r\n"
        "CSeq: 1 INVITE\r\n"
    )
    if ident is not None:
        hdrs += ("y: " if compact else "Identity: ") + ident.decode() + "\r\n"
    return parse((hdrs + "Content-Length: 0\r\n\r\n").encode())


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


@pytest.fixture
def shaken_files(pki: PKI, tmp_path: Path) -> Path:
    (tmp_path / "sti-ca.pem").write_bytes(pki.anchors)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / cert_file_name(X5U)).write_bytes(pki.chain)
    (tmp_path / "crl.pem").write_bytes(pki.crl(999))
    return tmp_path


def _config(tmp_path: Path, prefix: str, body: str = "") -> Any:
    p = tmp_path / "c.toml"
    p.write_text(
        f'[redis]\nkey_prefix = "{prefix}"\n'
        '[[trunk]]\ncidr = "10.1.0.0/16"\nprovider = "acme"\n' + body
    )
    return load_config(str(p), {})


ON = (
    '[shaken]\nenabled = true\ntrust_anchors = "sti-ca.pem"\ncrl = "crl.pem"\n'
    'certs = "certs"\niat_window_s = 60\n'
)


@pytest.fixture
def seeded(redis_client: Any, key_prefix: str) -> str:
    redis_client.sadd(key_prefix + "block:caller", BLOCKED)
    redis_client.hset(
        key_prefix + "provider:acme", mapping={"name": "Acme", "rmd_status": "listed"}
    )
    return key_prefix


async def _store(cfg: Any, redis_url: str) -> SnapshotStore:
    store = SnapshotStore(redis_url, cfg.key_prefix, emergency=cfg.emergency_numbers)
    await store.load_full()
    return store


async def test_off_by_default(tmp_path: Path, redis_url: str, seeded: str, pki: PKI) -> None:
    cfg = _config(tmp_path, seeded)
    assert cfg.shaken is None
    s = Screener(cfg, await _store(cfg, redis_url), Metrics(CollectorRegistry()))
    assert s._shaken is None
    facts = s.facts_for(_invite(ident=identity(passport(pki.signer_key))), SRC)
    assert (facts.verstat, facts.attest, facts.ocn) == (None, None, None)
    # and a disabled section with no paths is accepted
    assert _config(tmp_path, seeded, "[shaken]\nenabled = false\n").shaken is None


async def test_verified_facts_and_records(
    shaken_files: Path, redis_url: str, seeded: str, pki: PKI
) -> None:
    cfg = _config(shaken_files, seeded, ON)
    assert cfg.shaken is not None and cfg.shaken.iat_window_s == 60
    store = await _store(cfg, redis_url)
    client = aioredis.Redis.from_url(redis_url)
    records = RecordWriter(client, seeded, 1000, 0)
    m = Metrics(CollectorRegistry())
    s = Screener(
        cfg,
        store,
        m,
        records,
        clock=lambda: float(NOW),
        rng=lambda: 0.0,  # every allowed call recorded
    )
    good = identity(passport(pki.signer_key))
    assert s(_invite(ident=good), SRC, "udp") is None
    assert s(_invite(ident=good, compact=True), SRC, "udp") is None  # RFC 8224 §4 "y"
    assert s(_invite(), SRC, "udp") is None  # unsigned
    assert s(_invite("+12127360999", ident=good), SRC, "udp") is None  # orig.tn mismatch
    bad = identity(passport(pki.signer_key, x5u="https://unknown.test/x.pem"),
                   x5u="https://unknown.test/x.pem")  # fmt: skip
    assert s(_invite(ident=bad), SRC, "udp") is None  # certificate pending
    # a blocked caller with a verified header: blocked, and the record says who signed
    blocked = identity(passport(pki.signer_key, orig=BLOCKED[1:]))
    ans = s(_invite(BLOCKED, ident=blocked), SRC, "udp")
    assert ans is not None and ans.status == 603
    counts = {
        (k[0] or "passed", k[1] or ""): c._value.get()
        for k, c in m.shaken_children.items()
        if c._value.get()
    }
    assert counts == {
        ("passed", "A"): 3,
        ("unsigned", ""): 1,
        ("claims_mismatch", ""): 1,
        ("cert_pending", ""): 1,
    }
    try:
        assert await records.flush() == 6
        recs = [r[1] for r in await client.xrange(seeded + "records")]
        rows = [
            (r[b"verstat"].decode(), r[b"shaken_reason"].decode(), r[b"attest"].decode(),
             r[b"ocn"].decode(), r[b"action"].decode())
            for r in recs
        ]  # fmt: skip
        assert rows == [
            (PASSED, "", "A", "1234", "allow"),
            (PASSED, "", "A", "1234", "allow"),  # compact "y"
            (NO_VALIDATION, "unsigned", "", "", "allow"),
            (FAILED, "claims_mismatch", "", "", "allow"),  # a failed header names no signer
            (NO_VALIDATION, "cert_pending", "", "", "allow"),
            (PASSED, "", "A", "1234", "reject"),
        ]
    finally:
        await client.aclose()


def test_config_errors_name_the_key_and_file(shaken_files: Path, pki: PKI) -> None:
    with pytest.raises(ConfigError, match="shaken.trust_anchors: required"):
        _config(shaken_files, "p:", "[shaken]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"shaken.trust_anchors: cannot read .*nope.pem"):
        _config(shaken_files, "p:", '[shaken]\nenabled = true\ntrust_anchors = "nope.pem"\n')
    (shaken_files / "junk.pem").write_text("junk")
    with pytest.raises(ConfigError, match=r"shaken.trust_anchors: .*junk.pem: no PEM"):
        _config(shaken_files, "p:", '[shaken]\nenabled = true\ntrust_anchors = "junk.pem"\n')
    with pytest.raises(ConfigError, match=r"shaken.crl: .*junk.pem: unreadable CRL"):
        _config(shaken_files, "p:", ON.replace('"crl.pem"', '"junk.pem"'))
    with pytest.raises(ConfigError, match="shaken.colour: unknown key"):
        _config(shaken_files, "p:", ON + 'colour = "red"\n')
    with pytest.raises(ConfigError, match="shaken.iat_window_s: must be within"):
        _config(shaken_files, "p:", ON.replace("iat_window_s = 60", "iat_window_s = 0"))
    (shaken_files / "certs" / "broken").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"shaken.certs: .*broken: no certificate"):
        _config(shaken_files, "p:", ON)


def test_cert_dir_maps_file_names_back_to_x5u(shaken_files: Path, pki: PKI) -> None:
    other = "https://sti.example.net/a/b.pem?x=1"
    (shaken_files / "certs" / cert_file_name(other)).write_bytes(pem(pki.signer))
    (shaken_files / "certs" / ".hidden").write_text("ignored")
    got = load_cert_dir(str(shaken_files / "certs"))
    assert sorted(got) == sorted([X5U, other])
