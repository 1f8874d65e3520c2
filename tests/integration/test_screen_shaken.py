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
from proxy.shaken import cert_file_name, load_cert_dir, load_verifier
from proxy.sip.message import parse
from proxy.store.snapshot_store import SnapshotStore
from rules.shaken import FAILED, NO_VALIDATION, PASSED
from rules.verdict import Rule
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
    # as proxy/server/worker.py _make_store builds it: with the attestation policy
    store = SnapshotStore(
        redis_url,
        cfg.key_prefix,
        emergency=cfg.emergency_numbers,
        shaken_policy=cfg.shaken_policy,
    )
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


async def test_attestation_policy_blocks_with_the_deterministic_answer(
    shaken_files: Path, redis_url: str, seeded: str, pki: PKI
) -> None:
    cfg = _config(
        shaken_files,
        seeded,
        ON + '[shaken.provider.acme]\nunsigned = "block"\nfailed = "block"\n'
        '[answer.deterministic]\nkind = "608"\njcard_url = "https://jc.example/j"\n',
    )
    assert cfg.shaken is not None and set(cfg.shaken.policy) == {"", "acme"}
    store = await _store(cfg, redis_url)
    assert store.snapshot.shaken_policy is cfg.shaken.policy
    client = aioredis.Redis.from_url(redis_url)
    records = RecordWriter(client, seeded, 1000, 0)
    m = Metrics(CollectorRegistry())
    s = Screener(cfg, store, m, records, clock=lambda: float(NOW), rng=lambda: 1.0)
    good = identity(passport(pki.signer_key))
    assert s(_invite(ident=good), SRC, "udp") is None  # A-attested, verified: passes
    ans = s(_invite(), SRC, "udp")  # unsigned from acme: blocked by the operator's policy
    assert ans is not None and ans.status == 608
    ans = s(_invite("+12127360999", ident=good), SRC, "udp")  # failed (claims)
    assert ans is not None and ans.status == 608
    # another trunk's provider keeps the default (pass and count)
    assert s(_invite(), ("10.2.0.1", 5060), "udp") is None
    assert m.invites_blocked[Rule.SHAKEN_POLICY]._value.get() == 2
    try:
        assert await records.flush() == 2
        recs = [r[1] for r in await client.xrange(seeded + "records")]
        got = [
            (r[b"rule"].decode(), r[b"citation"].decode(), r[b"detail"].decode(),
             r[b"verstat"].decode(), r[b"status"].decode())
            for r in recs
        ]  # fmt: skip
        assert got == [
            ("shaken_policy", "operator policy", "unsigned", NO_VALIDATION, "608"),
            ("shaken_policy", "operator policy", "failed:claims_mismatch", FAILED, "608"),
        ]
    finally:
        await client.aclose()


def test_policy_config_errors(shaken_files: Path) -> None:
    with pytest.raises(ConfigError, match=r"shaken.unsigned: must be one of|shaken.unsigned"):
        _config(shaken_files, "p:", ON + 'unsigned = "drop"\n')
    with pytest.raises(ConfigError, match=r"shaken.provider.acme.colour: unknown key"):
        _config(shaken_files, "p:", ON + '[shaken.provider.acme]\ncolour = "red"\n')
    # pass everywhere: no policy reaches the snapshot (the engine skips the rule)
    cfg = _config(shaken_files, "p:", ON + '[shaken.provider.acme]\nunsigned = "pass"\n')
    assert cfg.shaken is not None and cfg.shaken.policy == {} and cfg.shaken_policy == {}


def test_fetch_keys(shaken_files: Path, pki: PKI) -> None:
    cfg = _config(
        shaken_files,
        "p:",
        ON + 'fetch = true\nfetch_hosts = ["Certs.Example.org"]\nfetch_timeout_s = 1\n'
        "cert_ttl_min_s = 30\ncert_ttl_max_s = 3600\n",
    )
    s = cfg.shaken
    assert s.fetch and s.fetch_hosts == ("certs.example.org",)
    assert (s.fetch_timeout_s, s.cert_ttl_min_s, s.cert_ttl_max_s) == (1.0, 30, 3600)
    v = load_verifier(s, redis_url=cfg.redis_url, prefix="p:")
    assert v.fetcher is not None
    assert v.fetcher.get(X5U) == pki.chain  # the certs directory is preloaded
    assert load_verifier(_config(shaken_files, "p:", ON).shaken).fetcher is None
    for bad, msg in [
        ("fetch_hosts = [1]", r"shaken.fetch_hosts\[0\]: must be a host name"),
        ('fetch_hosts = "x"', "shaken.fetch_hosts: must be list"),
        ("fetch_timeout_s = 0", "shaken.fetch_timeout_s: must be within"),
        ("fetch_max_bytes = 10", "shaken.fetch_max_bytes: must be within"),
        ("cert_ttl_min_s = 100\ncert_ttl_max_s = 50", "cert_ttl_max_s: must be at least"),
        ('fetch_ca = "nope.pem"', r"shaken.fetch_ca: cannot read .*nope.pem"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            _config(shaken_files, "p:", ON + "fetch = true\n" + bad + "\n")


def _forwarded(req: Any, fwd: Any) -> bytes:
    """req.raw with the screen's edits applied (as ProxyCore applies them)."""
    raw, out, pos = req.raw, [], 0
    for s, e, rep in sorted(fwd.edits, key=lambda t: t[0]):
        out += [raw[pos:s], rep]
        pos = e
    return b"".join(out) + raw[pos:]


async def test_attestation_policy_marks_never_blocks_and_strips_forged_marks(
    shaken_files: Path, redis_url: str, seeded: str, pki: PKI
) -> None:
    cfg = _config(
        shaken_files,
        seeded,
        ON + '[shaken.provider.acme]\nunsigned = "mark"\nfailed = "mark"\nc_attested = "mark"\n',
    )
    assert cfg.shaken is not None and cfg.shaken.mark_header == "X-Sipscreen-Mark"
    store = await _store(cfg, redis_url)
    client = aioredis.Redis.from_url(redis_url)
    records = RecordWriter(client, seeded, 1000, 0)
    m = Metrics(CollectorRegistry())
    s = Screener(cfg, store, m, records, clock=lambda: float(NOW), rng=lambda: 1.0)
    # unsigned from acme: forwarded (never blocked) with the mark
    req = _invite()
    fwd = s(req, SRC, "udp")
    assert fwd is not None and not hasattr(fwd, "status")
    out = _forwarded(req, fwd)
    mark = b"\r\nX-Sipscreen-Mark: shaken-policy;case=unsigned;verstat=No-TN-Validation;"
    assert mark + b"provider=acme\r\n\r\n" in out and out.count(b"X-Sipscreen-Mark") == 1
    # failed verification (claims): the reason is in the mark
    req = _invite("+12127360999", ident=identity(passport(pki.signer_key)))
    out = _forwarded(req, s(req, SRC, "udp"))
    assert b"X-Sipscreen-Mark: shaken-policy;case=failed;reason=claims_mismatch;" in out
    # C-attested, verified
    req = _invite(ident=identity(passport(pki.signer_key, attest="C")))
    out = _forwarded(req, s(req, SRC, "udp"))
    assert b"case=c_attested;verstat=TN-Validation-Passed;provider=acme" in out
    # an attacker pre-sets the mark (any case, twice) on an A-attested call:
    # both copies are stripped and no mark is added
    forged = _invite(ident=identity(passport(pki.signer_key))).raw.replace(
        b"CSeq: 1 INVITE\r\n",
        b"CSeq: 1 INVITE\r\nx-sipscreen-MARK: shaken-policy;case=none\r\n"
        b"X-Sipscreen-Mark: trusted\r\n",
    )
    req = parse(forged)
    out = _forwarded(req, s(req, SRC, "udp"))
    assert b"sipscreen-mark" not in out.lower() and b"CSeq: 1 INVITE\r\nIdentity:" in out
    # a forged mark on an unsigned call is replaced by ours
    req = parse(
        _invite().raw.replace(b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nX-Sipscreen-Mark: ok\r\n")
    )
    out = _forwarded(req, s(req, SRC, "udp"))
    assert out.count(b"X-Sipscreen-Mark") == 1 and b"X-Sipscreen-Mark: ok" not in out
    # another trunk keeps the default policy: no mark
    req = _invite()
    assert s(req, ("10.2.0.1", 5060), "udp") is None
    assert m.shaken_marked_children["unsigned"]._value.get() == 2
    assert m.shaken_marked_children["failed"]._value.get() == 1
    assert m.shaken_marked_children["c_attested"]._value.get() == 1
    m.flush_counts()
    assert m.invites_allowed[Rule.SHAKEN_POLICY].child._value.get() == 4
    assert m.invites_blocked[Rule.SHAKEN_POLICY]._value.get() == 0
    try:
        assert await records.flush() == 4
        recs = [r[1] for r in await client.xrange(seeded + "records")]
        got = [(r[b"action"], r[b"rule"], r[b"detail"], r[b"status"]) for r in recs]
        assert got == [
            (b"mark", b"shaken_policy", b"mark:unsigned", b""),
            (b"mark", b"shaken_policy", b"mark:failed:claims_mismatch", b""),
            (b"mark", b"shaken_policy", b"mark:c_attested", b""),
            (b"mark", b"shaken_policy", b"mark:unsigned", b""),
        ]
        assert b"attestation policy for it is unsigned = mark" in recs[0][b"reason"]
    finally:
        await client.aclose()


def test_mark_header_config(shaken_files: Path) -> None:
    cfg = _config(shaken_files, "p:", ON + 'mark_header = "X-Robo-Label"\nunsigned = "mark"\n')
    assert cfg.shaken is not None and cfg.shaken.mark_header == "X-Robo-Label"
    assert cfg.shaken_policy[""].unsigned == "mark"
    with pytest.raises(ConfigError, match=r"shaken.mark_header: 'Via' is a header the proxy"):
        _config(shaken_files, "p:", ON + 'mark_header = "Via"\n')
    with pytest.raises(ConfigError, match=r"shaken.mark_header: must be a SIP header name"):
        _config(shaken_files, "p:", ON + 'mark_header = "X Mark: 1"\n')
    with pytest.raises(ConfigError, match=r"shaken.failed: must be one of"):
        _config(shaken_files, "p:", ON + 'failed = "label"\n')
