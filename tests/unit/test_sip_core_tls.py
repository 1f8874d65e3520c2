"""ProxyCore with the softswitch over TLS (CoreConfig.softswitch_transport, issue 14):
what leaves towards it, what is taken as coming from it, and the caller's side.
Sans-I/O, fake clock."""

from __future__ import annotations

from test_sip_core import CALLER, SS, invite, make, one, response_to

from proxy.sip.message import Request, parse


def test_invite_to_a_tls_softswitch_and_its_bye_back() -> None:
    core, screen = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(invite(), CALLER, "udp", 1.0)
    data, dest, transport = one(core)
    assert dest == SS and transport == "tls"
    fwd = parse(data)
    assert isinstance(fwd, Request)
    assert fwd.vias[0].transport == b"TLS"
    # RFC 5658 double Record-Route: transport=tls facing the softswitch, UDP the caller
    rr = fwd.header(b"record-route")
    assert rr == [b"<sip:127.0.0.1:5061;transport=tls;lr>", b"<sip:127.0.0.1:5060;lr>"]
    # the softswitch's 200 comes back on our connection (src = its address)
    core.datagram_received(response_to(data, 200, b"OK"), SS, "tls", 1.1)
    _, dest, transport = one(core)
    assert dest == CALLER and transport == "udp"
    # the callee's BYE on that connection goes to the caller's Contact over UDP
    bye = invite(
        method=b"BYE",
        to_tag=b"from1",
        branch=b"z9hG4bK-ssbye",
        via_host=b"127.0.0.2:5070",
        via_transport=b"TLS",
        ruri=b"sip:alice@127.0.0.3:5061",
        extra=b"Route: " + b", ".join(rr),
        body=b"",
    )
    core.datagram_received(bye, SS, "tls", 2.0)
    out, dest, transport = one(core)
    assert dest == CALLER and transport == "udp"
    assert parse(out).header(b"route") == []
    assert len(screen.calls) == 1


def test_a_request_over_udp_from_the_softswitch_address_is_a_callers() -> None:
    """Over TLS the softswitch's requests come on our connection: the same address
    over UDP is screened as a caller and sent to the softswitch."""
    core, screen = make(softswitch_transport="tls", tls_port=5061)
    core.datagram_received(invite(via_host=b"127.0.0.2:5070"), SS, "udp", 1.0)
    _, dest, transport = one(core)
    assert dest == SS and transport == "tls"
    assert len(screen.calls) == 1
