"""proxy/config/: TOML + CLI overrides, validation naming the key, the
trunk map's longest-prefix match, and the precomputed block answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import (
    ConfigError,
    TrunkMap,
    build_answer,
    default_config_path,
    load_config,
)
from proxy.config.values import canonical_ip


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def test_packaged_default_config_loads() -> None:
    cfg = load_config(None, {})
    assert cfg.source_path == default_config_path()
    assert ("udp", "127.0.0.1", 5060) in cfg.listen
    assert cfg.softswitch == ("127.0.0.1", 5080)
    assert cfg.redis_url == "redis://127.0.0.1:6379/0"
    assert cfg.key_prefix == "sipscreen:"
    assert cfg.metrics == ("127.0.0.1", 9060)
    assert cfg.sample_data is not None and Path(cfg.sample_data).is_file()
    assert {"911", "933"} <= cfg.emergency_numbers
    assert cfg.block_example() == "redis-cli SADD sipscreen:block:caller +12127364800"


def test_cli_overrides_win(tmp_path: Path) -> None:
    path = _write(tmp_path, '[proxy]\nworkers = 1\nlisten = ["udp:127.0.0.1:5999"]\n')
    cfg = load_config(
        path,
        {
            "listen": ["udp:127.0.0.1:6000", "tcp:127.0.0.1:6000"],
            "softswitch": "udp:127.0.0.1:6080",
            "redis_url": "redis://127.0.0.1:6390/2",
            "metrics": "127.0.0.1:9999",
            "workers": 3,
            "monitor": True,
            "loop": "asyncio",
            "log_level": "debug",
            "key_prefix": None,  # not given: the file's value stays
        },
    )
    assert cfg.listen == (("udp", "127.0.0.1", 6000), ("tcp", "127.0.0.1", 6000))
    assert cfg.softswitch == ("127.0.0.1", 6080)
    assert cfg.metrics == ("127.0.0.1", 9999)
    assert cfg.workers == 3 and cfg.monitor and cfg.loop == "asyncio"
    assert cfg.log_level == "DEBUG"
    assert cfg.key_prefix == "sipscreen:"
    assert cfg.block_example() == "redis-cli -p 6390 -n 2 SADD sipscreen:block:caller +12127364800"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[proxy]\nworkers = 0\n", "proxy.workers"),
        ('[proxy]\nworkers = "two"\n', "proxy.workers"),
        ('[proxy]\nno_snapshot_policy = "maybe"\n', "proxy.no_snapshot_policy"),
        ('[proxy]\nlisten = ["udp:127.0.0.1:notaport"]\n', "proxy.listen[0]"),
        ('[proxy]\nsoftswitch = "tcp:127.0.0.1:5080"\n', "proxy.softswitch"),
        ('[proxy]\nemergency_numbers = ["91x"]\n', "proxy.emergency_numbers[0]"),
        ('[proxy]\nemergency_callers = ["911"]\n', "proxy.emergency_callers[0]"),
        ('[proxy]\nemergency_callers = "+13015550100"\n', "proxy.emergency_callers"),
        ('[proxy]\nunmapped_provider_policy = "allow"\n', "proxy.unmapped_provider_policy"),
        ("[proxy]\nunmapped_provider_policy = 1\n", "proxy.unmapped_provider_policy"),
        ('[redis]\nurl = "http://x"\n', "redis.url"),
        ('[answer.analytics]\nkind = "486"\n', "answer.analytics.kind"),
        ('[answer.deterministic]\nkind = "608"\n', "answer.deterministic.jcard_url"),
        (
            '[answer.analytics]\nkind = "603+"\nreason_text = "a\\"b"\n',
            "answer.analytics.reason_text",
        ),
        ('[answer.spam]\nkind = "603"\n', "answer.spam"),
        # Obsolete since issue 9 (both k4 triggers apply): refused by name.
        ('[notices]\nk4_deadline = "report"\n', "notices.k4_deadline: obsolete"),
        ('[notices]\nk4_deadline = "mitigation"\n', "notices.k4_deadline: obsolete"),
        ("[notices]\nwindow = 2\n", "notices.window"),
        ('[proxy]\nstrip_identity_headers = "Remote-Party-ID"\n', "proxy.strip_identity_headers"),
        ('[proxy]\nstrip_identity_headers = ["From"]\n', "proxy.strip_identity_headers.0."),
        ('[proxy]\nstrip_identity_headers = ["RPID", "a b"]\n', "proxy.strip_identity_headers.1."),
        (
            '[proxy]\nstrip_identity_headers = ["P-Asserted-Identity"]\n',
            "proxy.strip_identity_headers.0.: 'P-Asserted-Identity' is a header the proxy",
        ),
        ("[proxy]\noverload_hold_ms = -1\n", "proxy.overload_hold_ms"),
        ('[proxy]\noverload_hold_ms = "100"\n', "proxy.overload_hold_ms"),
        ("[records]\nsample_allowed = 1.5\n", "records.sample_allowed"),
        ("[records]\nmax_call_id = -1\n", "records.max_call_id"),
        ('[records]\nmax_header = "512"\n', "records.max_header"),
        ("[records]\nbuffer_max_bytes = 1000\n", "records.buffer_max_bytes"),
        ("[records]\nbuffer_max = 0\n", "records.buffer_max"),
        ('[[trunk]]\ncidr = "10.0.0.0/33"\nprovider = "x"\n', "trunk[0].cidr"),
        ('[[trunk]]\ncidr = "10.0.0.0/8"\n', "trunk[0]"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[proxy\n", "invalid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(_write(tmp_path, text), {})


def test_bad_override_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--workers"):
        load_config(_write(tmp_path, ""), {"workers": "many"})
    with pytest.raises(ConfigError, match="--listen"):
        load_config(_write(tmp_path, ""), {"listen": ["udp:127.0.0.1:x"]})


def test_trunk_map_longest_prefix_wins() -> None:
    tm = TrunkMap(
        [
            ("10.0.0.0/8", "wide"),
            ("10.1.0.0/16", "narrow"),
            ("10.1.2.3/32", "exact"),
            ("2001:db8::/32", "v6"),
        ]
    )
    assert tm.lookup("10.1.2.3") == "exact"
    assert tm.lookup("10.1.9.9") == "narrow"
    assert tm.lookup("10.200.0.1") == "wide"
    assert tm.lookup("2001:db8::5") == "v6"
    assert tm.lookup("192.0.2.1") is None
    assert tm.lookup("not-an-ip") is None
    # Second lookups come from the per-IP cache and agree.
    assert tm.lookup("10.1.9.9") == "narrow"
    assert len(tm) == 4


def test_trunk_cache_is_bounded() -> None:
    tm = TrunkMap([("10.0.0.0/8", "wide")], cache_max=4)
    for i in range(20):
        assert tm.lookup(f"10.0.0.{i}") == "wide"
    assert len(tm._cache) <= 4


REDRESS = "https://robocall-redress.sipscreen-carrier.net/"


def test_answers_are_precomputed() -> None:
    # ATIS-1000099 603+, byte for byte: version and redress contact in the
    # quoted text, then the RFC 8606 location of the blocking network.
    plus = build_answer("603+", redress_url=REDRESS)
    assert (plus.status, plus.reason) == (603, b"Network Blocked")
    assert plus.extra_headers == (
        b"Reason: SIP;cause=603;"
        b'text="v=analytics1;url=https://robocall-redress.sipscreen-carrier.net/";'
        b"location=RLN\r\n"
    )
    transit = build_answer("603+", redress_url=REDRESS, location="TN")
    assert transit.extra_headers.endswith(b'/";location=TN\r\n')
    r608 = build_answer("608", jcard_url="https://example.com/jcard.json")
    assert r608.reason == b"Rejected"
    assert r608.extra_headers == b"Call-Info: <https://example.com/jcard.json>;purpose=jwscard\r\n"
    assert build_answer("603").reason == b"Decline"
    assert build_answer("603").extra_headers == b""


@pytest.mark.parametrize(
    "url",
    [
        "https://redress.example/",
        "https://example.com/redress",
        "https://www.example.org/",
        "http://redress.test/",
        "https://localhost/",
        "ftp://redress.carrier.net/",
    ],
)
def test_603plus_refuses_placeholder_redress(url: str) -> None:
    with pytest.raises(ConfigError, match="redress URL .* placeholder"):
        build_answer("603+", redress_url=url)


def test_603plus_reason_text_is_checked() -> None:
    with pytest.raises(ConfigError, match="v=analytics1"):
        build_answer("603+", reason_text=f"url={REDRESS}")
    with pytest.raises(ConfigError, match="redress contact"):
        build_answer("603+", reason_text="v=analytics1;note=call us")
    ok = build_answer("603+", reason_text="v=analytics1;tel=+12127365000")
    assert b'text="v=analytics1;tel=+12127365000";location=RLN' in ok.extra_headers
    with pytest.raises(ConfigError, match="location"):
        build_answer("603+", redress_url=REDRESS, location="XX")


def test_default_answers_are_plain_603(tmp_path: Path) -> None:
    # Notice-based and list-based blocks get the deterministic answer by
    # default: the packaged config and an empty one alike.
    for cfg in (load_config(None, {}), load_config(_write(tmp_path, ""), {})):
        for cls in ("analytics", "deterministic"):
            spec = cfg.answer_for(cls)
            assert (spec.kind, spec.status, spec.reason, spec.extra_headers) == (
                "603",
                603,
                b"Decline",
                b"",
            )


def test_answer_classes_from_toml(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'[answer.analytics]\nkind = "603+"\nredress_url = "{REDRESS}"\nlocation = "TN"\n'
        '[answer.deterministic]\nkind = "608"\njcard_url = "https://op.example/jc"\n',
    )
    cfg = load_config(path, {})
    assert cfg.answer_for("analytics").status == 603
    assert cfg.answer_for("analytics").extra_headers.endswith(b";location=TN\r\n")
    assert cfg.answer_for("deterministic").status == 608
    assert cfg.answer_for("none").status == 608  # unknown class -> deterministic


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # 607 is the called user's own rejection (RFC 8197), not a network block.
        ('[answer.deterministic]\nkind = "607"\n', 'answer.deterministic.kind: "607"'),
        ('[answer.analytics]\nkind = "607"\n', 'answer.analytics.kind: "607"'),
        # 603+ is for analytics-based blocking only.
        (
            f'[answer.deterministic]\nkind = "603+"\nredress_url = "{REDRESS}"\n',
            "analytics-based blocking only",
        ),
        # 603+ with the sample's placeholder redress contact.
        (
            '[answer.analytics]\nkind = "603+"\nredress_url = "https://redress.example/"\n',
            "answer.analytics.redress_url: redress URL 'https://redress.example/' is a placeholder",
        ),
        ('[answer.analytics]\nkind = "603+"\n', "placeholder"),
    ],
)
def test_answer_config_refusals(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, body), {})
    assert message in str(exc.value)


def test_trusted_sources_and_emergency(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[trusted_header]\nname = "X-Upstream"\nsources = ["10.9.0.0/16"]\n'
        '[proxy]\nemergency_numbers = ["2025550100", "+13125550111"]\n',
    )
    cfg = load_config(path, {})
    assert cfg.trusted_provider_header == "X-Upstream"
    assert cfg.is_trusted_source("10.9.3.4")
    assert not cfg.is_trusted_source("10.8.3.4")
    # 911 and 933 are always there (47 CFR 64.1200(k)); 10-digit -> E.164.
    assert cfg.emergency_numbers == {"911", "933", "+12025550100", "+13125550111"}


def test_unmapped_policy_and_emergency_callers(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""), {})
    assert cfg.unmapped_provider_policy == "monitor" and cfg.emergency_callers == frozenset()
    text = '[proxy]\nunmapped_provider_policy = "block"\nemergency_callers = ["3015550100"]\n'
    cfg = load_config(_write(tmp_path, text), {})
    assert cfg.unmapped_provider_policy == "block"
    assert cfg.emergency_callers == frozenset({"+13015550100"})
    # The packaged sample config says which policy it uses (explicitly).
    from proxy.config import default_config_path

    assert 'unmapped_provider_policy = "monitor"' in Path(default_config_path()).read_text()
    assert load_config(None, {}).unmapped_provider_policy == "monitor"


def test_an_ipv4_mapped_source_is_its_ipv4_address(tmp_path: Path) -> None:
    """A dual-stack listen socket's IPv4 peers may reach the trunk map and the
    trusted sources as ``::ffff:a.b.c.d``; an entry written mapped is its IPv4
    network. Either spelling finds the same trunk."""
    assert canonical_ip("::ffff:10.1.2.3") == "10.1.2.3"
    assert canonical_ip("::FFFF:10.1.2.3") == "10.1.2.3"
    assert canonical_ip("::ffff:a01:203") == "10.1.2.3"
    assert canonical_ip("::ffff:zz") == "::ffff:zz"  # not an address: as it is
    for ip in ("10.1.2.3", "2001:db8::1", "::1", "::"):
        assert canonical_ip(ip) == ip
    tm = TrunkMap(
        [
            ("10.1.0.0/16", "narrow"),
            ("10.1.2.3/32", "exact"),
            ("::ffff:192.0.2.0/120", "mapped-net"),
            ("::ffff:198.51.100.7/128", "mapped-exact"),
            ("2001:db8::1/128", "v6"),
        ]
    )
    assert tm.lookup("::ffff:10.1.2.3") == "exact"
    assert tm.lookup("::ffff:10.1.9.9") == "narrow"
    assert tm.lookup("192.0.2.44") == "mapped-net"
    assert tm.lookup("::ffff:192.0.2.44") == "mapped-net"
    assert tm.lookup("198.51.100.7") == "mapped-exact"
    assert tm.lookup("2001:0db8:0::1") == "v6"  # another spelling of the /128
    assert tm.lookup("::ffff:203.0.113.1") is None
    cfg = load_config(
        _write(
            tmp_path,
            '[trusted_header]\nname = "X-Upstream"\n'
            'sources = ["::ffff:10.9.0.0/112", "10.8.0.0/16"]\n'
            '[proxy]\nsoftswitch = "udp:[::ffff:127.0.0.1]:5080"\n',
        ),
        {},
    )
    assert cfg.softswitch == ("127.0.0.1", 5080)  # as its datagrams name it
    assert cfg.is_trusted_source("10.9.1.1") and cfg.is_trusted_source("::ffff:10.9.1.1")
    assert cfg.is_trusted_source("::ffff:10.8.0.1")
    assert not cfg.is_trusted_source("::ffff:10.7.0.1")
