"""RFC 5923 ``;alias`` (proxy/sip/alias.py): the address a mutually authenticated
TLS peer's request asks its connection to be reused for, and when it gets none."""

from __future__ import annotations

import pytest

from proxy.sip.alias import alias_target, cert_identities

CERT = {
    "subject": ((("commonName", "edge1"),),),
    "subjectAltName": (("DNS", "SBC.Carrier-B.example."), ("IP Address", "127.0.0.1")),
}
IDS = cert_identities(CERT)


def _req(via: bytes, first: bytes = b"INVITE sip:bob@127.0.0.1 SIP/2.0") -> bytes:
    return (
        first + b"\r\nVia: " + via + b"\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )


def test_identities_are_the_subject_alt_names_else_the_common_name() -> None:
    assert IDS == frozenset({"sbc.carrier-b.example", "127.0.0.1"})  # CN left out
    assert cert_identities({"subject": ((("commonName", "Edge1.Example"),),)}) == {"edge1.example"}
    assert cert_identities({"subjectAltName": (("IP Address", "::0001"),)}) == {"::1"}


@pytest.mark.parametrize(
    ("via", "want"),
    [
        (b"SIP/2.0/TLS 127.0.0.1:5071;branch=z9hG4bK1;alias", ("127.0.0.1", 5071)),
        (
            b"SIP/2.0/TLS sbc.carrier-b.example;alias;branch=z9hG4bK1",
            ("sbc.carrier-b.example", 5061),
        ),
        (b"SIP/2.0/TLS 127.0.0.1:5071;branch=z9hG4bK1", None),  # no alias asked for
        (b"SIP/2.0/TCP 127.0.0.1:5071;branch=z9hG4bK1;alias", None),  # not TLS (RFC 5923 §9)
        (b"SIP/2.0/TLS 127.0.0.2:5071;branch=z9hG4bK1;alias", None),  # not its certificate's
        (b"SIP/2.0/TLS other.example:5071;branch=z9hG4bK1;alias", None),
    ],
)
def test_alias_target(via: bytes, want: tuple[str, int] | None) -> None:
    assert alias_target(_req(via), IDS) == want


def test_no_alias_from_a_response_or_a_broken_request() -> None:
    via = b"SIP/2.0/TLS 127.0.0.1:5071;branch=z9hG4bK1;alias"
    assert alias_target(_req(via, b"SIP/2.0 200 OK"), IDS) is None
    assert alias_target(b"INVITE alias\r\n\r\n", IDS) is None
    assert alias_target(_req(via), frozenset()) is None  # no identity: nothing matches
