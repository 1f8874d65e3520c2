"""How proxy/screen.py reads an INVITE's identities into CallFacts numbers.

The ways a blocked caller got past the screen (issue 10) and the emergency
Request-URIs (issue 9): the callee is read from the Request-URI only (never
To: the softswitch routes on the Request-URI), escaped digits compare equal
to plain ones (RFC 3261 §19.1.4), and a P-Asserted-Identity is read by the
same name-addr reader as From. Each is checked with the C parse and the
pure-Python one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.screen import (
    PAI_MAX,
    UnreadableIdentity,
    _callee,
    caller_from_request,
    caller_identities,
)
from proxy.sip import message
from proxy.sip.message import Request, parse

BLOCKED = "+12027621401"


@pytest.fixture(params=[True, False], ids=["c", "python"])
def accel(request: pytest.FixtureRequest) -> Iterator[bool]:
    old = message.set_accelerated(request.param)
    yield request.param
    message.set_accelerated(old)


def invite(
    ruri: str = "sip:+13125557000@127.0.0.1",
    *,
    frm: str = "<sip:+13125558000@10.1.2.3>",
    to: str = "<sip:+13125557000@127.0.0.1>",
    pai: list[str] | None = None,
) -> Request:
    lines = [
        f"INVITE {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bKident1",
        "Max-Forwards: 70",
        f"From: {frm};tag=1",
        f"To: {to}",
        "Call-ID: ident-1",
        "CSeq: 1 INVITE",
    ]
    lines += [f"P-Asserted-Identity: {p}" for p in pai or ()]
    req = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(req, Request)
    return req


# -- item 1: the callee is the Request-URI's, never To's ----------------------


@pytest.mark.parametrize(
    "ruri",
    ["sip:bob@127.0.0.1", "sip:5552671@127.0.0.1", "sip:+1%zz125552671@127.0.0.1"],
)
@pytest.mark.parametrize(
    "to", ["<sip:911@127.0.0.1>", "<sip:933@h>", "<urn:service:sos>", "<tel:911>"]
)
def test_to_never_gives_the_callee(accel: bool, ruri: str, to: str) -> None:
    """An INVITE whose Request-URI user is not a number was screened as a call to its
    To header's 911, which skips every rule (47 CFR 64.1200(k)): the callee is None."""
    assert _callee(invite(ruri, to=to)) is None


def test_escaped_request_uri_is_its_number_not_to(accel: bool) -> None:
    req = invite("sip:+1%32125552671@127.0.0.1", to="<sip:911@127.0.0.1>")
    assert _callee(req) == "+12125552671"


@pytest.mark.parametrize(
    ("ruri", "want"),
    [
        ("sip:911@127.0.0.1", "911"),
        ("sip:9%311@127.0.0.1;user=phone", "911"),  # escaped: still 911 (RFC 3261 §19.1.4)
        ("tel:911", "911"),
        ("sip:911:x@127.0.0.1", "911"),  # user:password, read as From's user is
        ("sip:+13125557000@127.0.0.1:5060;user=phone", "+13125557000"),
        ("urn:service:sos", "urn:service:sos"),
        ("URN:Service:SOS.Police", "urn:service:sos.police"),
        ("urn:service:sos.ambulance", "urn:service:sos.ambulance"),
        ("urn:service:counseling", None),
        ("urn:service:sosx", None),
    ],
)
def test_callee_from_the_request_uri(accel: bool, ruri: str, want: str | None) -> None:
    """CallFacts.callee: the Request-URI's number, or its urn:service:sos[.<sub>]
    (RFC 5031) lower-cased, whatever To says."""
    assert _callee(invite(ruri, to="<sip:+13125557000@h>")) == want


# -- item 3: escaped digits in From, PAI ---------------------------------------

ESCAPED = [
    "sip:+1%32027621401@10.1.2.3",
    "sip:%2B12027621401@10.1.2.3",
    "sip:%2b12027621401@10.1.2.3;user=phone",
    "sip:" + "".join(f"%{ord(c):02X}" for c in BLOCKED) + "@10.1.2.3",
]


@pytest.mark.parametrize("uri", ESCAPED)
def test_escaped_from_is_the_blocked_number(accel: bool, uri: str) -> None:
    assert caller_from_request(invite(frm=f"<{uri}>")) == BLOCKED


@pytest.mark.parametrize("uri", ESCAPED)
def test_escaped_pai_is_the_blocked_number(accel: bool, uri: str) -> None:
    assert caller_from_request(invite(pai=[f"<{uri}>"])) == BLOCKED


def test_malformed_escape_is_no_number_and_no_error(accel: bool) -> None:
    # a PAI with no number: the From is screened
    req = invite(frm=f"<sip:{BLOCKED}@h>", pai=["<sip:+1%3z027621401@h>"])
    assert caller_from_request(req) == BLOCKED
    assert caller_from_request(invite(frm="<sip:+1%2@h>")) is None


# -- item 4: PAI read as From is ----------------------------------------------


@pytest.mark.parametrize(
    "pai",
    [
        f'"a<sip:+14158675309@h>" <sip:{BLOCKED}@h>',
        f'"a,<sip:+14158675309@h>" <sip:{BLOCKED}@h>',
        f'"a, b" <sip:{BLOCKED}@h>;x=y',
        f'"a\\"<sip:+14158675309@h>" <sip:{BLOCKED}@h>',  # quoted-pair inside the name
        f"<sip:{BLOCKED}:x@h>",  # user:password (RFC 3261 §19.1.1)
        f'"<sip:+14158675309@h>" <sip:{BLOCKED}:pw@h;user=phone>',
        f"<tel:{BLOCKED}>",
        f"sip:{BLOCKED}@h",  # addr-spec, no brackets
        f"<sip:bob@h>, <tel:{BLOCKED}>",  # RFC 3325 §9.1: a sip: and a tel: identity
    ],
)
def test_pai_read_as_from(accel: bool, pai: str) -> None:
    """The PAI's URI is the one in <> after the display name, user part without a
    password: what From's reader gives for the same value."""
    req = invite(frm="<sip:+13125558000@h>", pai=[pai])
    assert caller_from_request(req) == BLOCKED
    # the same value in From reads the same number (one reader for both)
    if "," not in pai.replace('"a,', "").replace('"a, b"', ""):
        assert caller_from_request(invite(frm=pai)) == BLOCKED


def test_pai_on_two_lines_and_unreadable_entries(accel: bool) -> None:
    req = invite(pai=["<sip:bob@h>", f"<tel:{BLOCKED}>"])
    assert caller_from_request(req) == BLOCKED
    # an entry the reader refuses is not skipped (a lenient softswitch may read
    # a number from it): UnreadableIdentity, the screen answers 400; the
    # records of such a request name From's number
    for bad in (f'"unbalanced <sip:{BLOCKED}@h>', f"< tel:{BLOCKED} >", f"<tel:{BLOCKED}>;x=<y>"):
        req = invite(frm="<sip:+13125558000@h>", pai=["<sip:bob@h>", bad])
        with pytest.raises(UnreadableIdentity) as exc:
            caller_identities(req)
        assert exc.value.raw == bad.encode()
        assert caller_from_request(req) == "+13125558000"


def test_more_pai_entries_than_the_cap_are_refused_unread(accel: bool) -> None:
    """RFC 3325 §9.1 allows two P-Asserted-Identity values; PAI_MAX are read, one
    more (on one line or several) is refused before any is read: thousands of
    entries would cost a worker a name-addr read each."""
    entries = [f"<tel:+1312555{i:04d}>" for i in range(PAI_MAX)]
    caller, others = caller_identities(invite(pai=[", ".join(entries)]))
    assert caller == "+13125550000" and len(others) == PAI_MAX
    for pai in ([", ".join(entries + ["<tel:+13125559999>"])], entries + ["<sip:x@h>"]):
        with pytest.raises(UnreadableIdentity) as exc:
            caller_identities(invite(pai=pai))
        assert exc.value.raw == b"%d entries" % (PAI_MAX + 1) and "RFC 3325" in exc.value.why


@pytest.mark.parametrize(
    "value",
    [
        b"<sip:+12027621401@h>",
        b'"Caller Name" <sip:+13035551111@carrier.example.net;user=phone>',
        b'"a<sip:+14158675309@h>" <sip:+12027621401@h>',
        b'"a\\"<sip:+14158675309@h>" <sip:+12027621401@h>',
        b"<sip:+12027621401:x@h>;x=y",
        b"Bob Smith <tel:+12027621401;npdi>",
        b"sip:+12027621401@h;user=phone",
        b"<sip:h>",
        b"<urn:service:sos>",
        b'"unbalanced <sip:+14158675309@h>',
        b"<sip:a b@h>",
        b"junk <sip:a@h> junk",
        b"<sip:a@h",
        b"",
    ],
)
def test_name_addr_parts_is_parse_name_addrs_reading(value: bytes) -> None:
    """The PAI shortcut reads exactly what parse_name_addr (From's reader) reads:
    the display name and the URI."""
    try:
        na = message.parse_name_addr(value)
    except message.SIPError:
        want = None
    else:
        want = (na.display, na.uri)
    assert message.name_addr_parts(value) == want


@pytest.mark.parametrize(
    ("frm", "pai", "caller", "others"),
    [
        ("<sip:+13125558000@h>", None, "+13125558000", ()),
        ("<sip:+13125558000@h>", ["<sip:+13125559000@h>"], "+13125559000", ("+13125558000",)),
        ("<sip:+13125559000@h>", ["<sip:+13125559000@h>"], "+13125559000", ()),
        ("<sip:anonymous@anonymous.invalid>", ["<tel:+13125559000>"], "+13125559000", ()),
        (
            "<sip:+13125558000@h>",
            ["<sip:+13125559000@h>, <tel:+13125557777>"],
            "+13125559000",
            ("+13125557777", "+13125558000"),
        ),
        ("<sip:+1%33125558000@h>", ["<sip:+13125559000@h>"], "+13125559000", ("+13125558000",)),
        # RFC 3966 §5.1.5: a local number's global-prefix phone-context
        ("<tel:555-8000;phone-context=+1-312>", None, None, ("+13125558000",)),
        ("<sip:5558000;phone-context=%2B1312@h;user=phone>", None, None, ("+13125558000",)),
        ("<tel:8000;PHONE-CONTEXT=+1312555>", None, "8000", ("+13125558000",)),
        ("<tel:5558000;phone-context=example.com>", None, None, ()),
        ("<tel:3125558000;phone-context=example.com>", None, "+13125558000", ()),
        (
            "<sip:+13125558000@h>",
            ["<tel:5559000;phone-context=+1312>"],
            "+13125558000",
            ("+13125559000",),
        ),
        (
            "<tel:5558000;phone-context=+1312>",
            ["<sip:+13125559000@h>"],
            "+13125559000",
            ("+13125558000",),
        ),
        # the number before an escaped delimiter (rules/numbers.user_readings)
        ("<sip:+13125558000%40x@h>", None, None, ("+13125558000",)),
        ("<sip:+13125558000%3Bext=1@h;user=phone>", None, None, ("+13125558000",)),
        (
            "<sip:+13125558000@h>",
            ["<sip:+13125559000%3F@h>"],
            "+13125558000",
            ("+13125559000",),
        ),
        ("<sip:+13125558000@h>", ["<tel:+13125559000%0D%0A>"], "+13125558000", ("+13125559000",)),
        ("<sip:alice%40x@h>", None, None, ()),
        # the user part read another way (rules/numbers.user_readings): before a
        # character a number cannot hold, its digits alone, UTF-8 escapes
        ("<sip:+13125558000x@h>", None, None, ("+13125558000",)),
        ("<sip:+1312x555y8000@h>", None, None, ("+13125558000",)),
        ("<sip:+1312;a=555;b=8000@h>", None, None, ("+13125558000",)),
        ("<sip:%EF%BC%8B%EF%BC%913125558000@h>", None, None, ("+13125558000",)),
        ("<sip:+13125558000@h>", ["<sip:+13125559000-ext@h>"], "+13125558000", ("+13125559000",)),
        ("<sip:+13125558000;npdi@h;user=phone>", None, "+13125558000", ()),
        ("<sip:2001x@h>", None, None, ()),
        # a number written in the display name (a phone shows it)
        (
            '"Call +1 312-555-9000 now" <sip:+13125558000@h>',
            None,
            "+13125558000",
            ("+13125559000",),
        ),
        (
            '"＋１ (３１２) ５５５-９０００" <sip:+13125558000@h>',
            None,
            "+13125558000",
            ("+13125559000",),
        ),
        ('"José" <sip:+13125558000@h>', None, "+13125558000", ()),
        # a display name that spells a number (a phone shows it)
        ('"+1 (312) 555-9000" <sip:+13125558000@h>', None, "+13125558000", ("+13125559000",)),
        ("3125559000 <sip:anonymous@anonymous.invalid>", None, None, ("+13125559000",)),
        ('"+13125558000" <sip:+13125558000@h>', None, "+13125558000", ()),  # the same number
        ('"Alice" <sip:+13125558000@h>', None, "+13125558000", ()),
        ('"Suite 100" <sip:+13125558000@h>', None, "+13125558000", ()),
        ('"\\+13125559000" <sip:+13125558000@h>', None, "+13125558000", ("+13125559000",)),
        (
            "<sip:+13125558000@h>",
            ['"+1-312-555-7777" <sip:+13125559000@h>'],
            "+13125559000",
            ("+13125558000", "+13125557777"),
        ),
    ],
)
def test_caller_identities_are_every_number_the_headers_carry(
    frm: str, pai: list[str] | None, caller: str, others: tuple[str, ...]
) -> None:
    """The caller ID (PAI, else From) and the other numbers (further PAI entries,
    From behind a PAI, a local number's phone-context, the number before an
    escaped delimiter, a display name that spells a number), each once, read by
    the same name-addr reader; the screen's facts hold the same."""
    req = invite(frm=frm, pai=pai)
    assert caller_identities(req) == (caller, others)
    assert caller_from_request(req) == caller
