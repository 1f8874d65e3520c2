"""rules.numbers: E.164 normalisation of carrier forms and the NANP rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.numbers import (
    EMERGENCY_DEFAULT,
    dialled_service_code,
    in_context,
    nanp_invalid_reason,
    normalise,
    numbers_written,
    overlong_nanp,
    sos_urn,
    user_readings,
)


@pytest.mark.parametrize(
    "raw",
    [
        "+12025550123",
        "12025550123",
        "2025550123",
        "1-202-555-0123",
        "(202) 555-0123",
        "+1 (202) 555-0123",
        "+1.202.555.0123",
        "1.202.555.0123",
        " +12025550123 ",
        "sip:+12025550123@host;user=phone",
        "sip:12025550123@10.0.0.1:5060",
        "sip:+12025550123;npdi;rn=+12025551000@host;user=phone",
        "SIP:+12025550123@host",
        "sips:+12025550123@host",
        "tel:+1-202-555-0123",
        "tel:+1-202-555-0123;npdi;rn=+12025551000",
        "tel:+12025550123;isub=123",
        "tel:2025550123;phone-context=+1",
        "TEL:+1-202-555-0123",
    ],
)
def test_nanp_carrier_forms(raw: str) -> None:
    assert normalise(raw) == "+12025550123"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("+442071234567", "+442071234567"),
        ("+44 20 7123 4567", "+442071234567"),
        ("011442071234567", "+442071234567"),
        ("tel:+33-1-23-45-67-89", "+33123456789"),
        ("+999999999999999", "+999999999999999"),  # 15 digits, E.164 maximum
    ],
)
def test_international_kept(raw: str, want: str) -> None:
    assert normalise(raw) == want


@pytest.mark.parametrize("raw", ["911", "933", "988", "112", "611", "sip:911@psap", "tel:933"])
def test_short_codes_keep_digits(raw: str) -> None:
    got = normalise(raw)
    assert got is not None and got.isdigit() and not got.startswith("+")
    assert got == raw.split(":")[-1].split("@")[0]


def test_emergency_default() -> None:
    assert frozenset({"911", "933"}) == EMERGENCY_DEFAULT
    assert normalise("sip:911@psap.example") in EMERGENCY_DEFAULT


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "+",
        "anonymous",
        "sip:anonymous@anonymous.invalid",
        "sip:alice@example.com",
        "202555012a",
        "+1202555O123",  # letter O
        "12",  # too short for a short code
        "5550123",  # 7-digit local number: no area code
        "22025550123",  # 11 digits not starting with 1
        "+1234567890123456",  # 16 digits: longer than E.164 allows
        "+0123456789",  # country codes never start with 0
        "tel:;npdi",
        "+-",
        "١٢٠٢٥٥٥٠١٢٣",  # Arabic-Indic digits are not on the wire
        "+١٢٠٢٥٥٥٠١٢٣",
        "++12025550123",
        "+1",  # a country code alone
        "+44123",
        "0114412",  # international access prefix with too few digits
    ],
)
def test_garbage_is_none(raw: str) -> None:
    assert normalise(raw) is None


@given(st.text())
def test_normalise_never_raises(raw: str) -> None:
    got = normalise(raw)
    if got is not None:
        body = got[1:] if got.startswith("+") else got
        assert body.isascii() and body.isdigit()
        assert (3 <= len(body) <= 6) if body == got else (7 <= len(body) <= 15)


@pytest.mark.parametrize(
    "raw",
    [
        "sip:+1%32027621401@h",
        "+1%32027621401",
        "sip:%2B12027621401@h",
        "sip:%2b12027621401@h;user=phone",
        "sip:" + "".join(f"%{ord(c):02X}" for c in "+12027621401") + "@h",  # every octet
        "%31%32%30%32%37%36%32%31%34%30%31",
        "tel:%2B1-202-762-1401;npdi",
        "sip:+1202%2D762%2D1401@h",  # an escaped visual separator
    ],
)
def test_escaped_digits_compare_equal(raw: str) -> None:
    """RFC 3261 §19.1.4: escaped and unescaped characters of a URI compare equal, so
    an escaped caller is the same number as the plain one (it passed block:caller)."""
    assert normalise(raw) == "+12027621401"


def test_escaped_short_code() -> None:
    assert normalise("sip:9%311@h") == "911"
    assert normalise("%39%31%31") == "911"


@pytest.mark.parametrize(
    "raw",
    [
        "sip:+1%3@h",  # truncated escape
        "sip:+1%zz027621401@h",
        "sip:%@h",
        "%",
        "%%",
        "+1%2",
        "sip:+1% 32027621401@h",
        "sip:+1%+12027621401@h",  # int("+1", 16) would accept this: not an escape
        "sip:%C3%A9@h",  # non-ASCII
        "sip:+1%EF%BC%92027621401@h",  # a UTF-8 full-width digit is not a digit
    ],
)
def test_malformed_escape_is_not_a_number(raw: str) -> None:
    assert normalise(raw) is None


@given(st.text(alphabet="%0123456789abcdefABCDEF+-zZ@:;sip", max_size=40))
def test_escapes_never_raise(raw: str) -> None:
    got = normalise(raw)
    if got is not None:
        body = got[1:] if got.startswith("+") else got
        assert body.isascii() and body.isdigit()


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("urn:service:sos", "urn:service:sos"),
        ("URN:Service:SOS", "urn:service:sos"),
        ("urn:service:sos.police", "urn:service:sos.police"),
        ("urn:service:SOS.Ambulance", "urn:service:sos.ambulance"),
        ("urn:service:sos.a-b.c1", "urn:service:sos.a-b.c1"),
        ("urn:service:sos.", None),
        ("urn:service:sos..police", None),
        ("urn:service:sos.-x", None),
        ("urn:service:sosx", None),
        ("urn:service:counseling", None),
        ("urn:service:so", None),
        ("urn:nena:service:sos", None),
        ("sip:911@h", None),
        ("", None),
    ],
)
def test_sos_urn(raw: str, want: str | None) -> None:
    """RFC 5031 §4.2 / §5: the emergency service URNs, compared case-insensitively."""
    assert sos_urn(raw) == want


@given(st.integers(min_value=2_000_000_000, max_value=9_999_999_999))
def test_ten_digit_forms_agree(n: int) -> None:
    d = str(n)
    want = "+1" + d
    assert normalise(d) == want
    assert normalise("1" + d) == want
    assert normalise(f"({d[:3]}) {d[3:6]}-{d[6:]}") == want
    assert normalise(f"tel:+1-{d[:3]}-{d[3:6]}-{d[6:]};npdi") == want
    assert normalise(f"sip:+1{d}@h;user=phone") == want


@pytest.mark.parametrize(
    ("e164", "why"),
    [
        ("+12025551234", None),
        ("+13015551234", None),
        ("+18005551212", None),
        ("+12025550199", "555-01XX fiction range"),
        ("+12025550100", "555-01XX fiction range"),
        ("+12025550200", None),  # 555-0200 is outside the fiction range
        ("+10025551234", "area code starts with 0 or 1"),
        ("+11025551234", "area code starts with 0 or 1"),
        ("+12115551234", "N11 area code"),
        ("+19115551234", "N11 area code"),
        ("+12905551234", "reserved area code (N9X, held for NANP expansion)"),
        ("+19995551234", "reserved area code (N9X, held for NANP expansion)"),
        ("+13705551234", "reserved area code (37X/96X block)"),
        ("+19605551234", "reserved area code (37X/96X block)"),
        ("+12020551234", "exchange starts with 0 or 1"),
        ("+12021551234", "exchange starts with 0 or 1"),
        ("+12024111234", "N11 exchange"),
        ("+12029111234", "N11 exchange"),
        ("+1202555012", "wrong length for NANP"),
        ("+120255501234", "wrong length for NANP"),
        ("+442071234567", None),  # not NANP: not judged
        ("911", None),
    ],
)
def test_nanp_invalid_reason(e164: str, why: str | None) -> None:
    assert nanp_invalid_reason(e164) == why


def test_real_area_codes_pass() -> None:
    # A sample of assigned NPAs across the US, Canada and the Caribbean.
    for npa in ("201", "212", "310", "416", "604", "787", "809", "876", "939", "989"):
        assert nanp_invalid_reason(f"+1{npa}2345678") is None, npa


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # RFC 3966 §5.1.5: the context's digits, then the local number's
        ("tel:736-9999;phone-context=+1-212", ("+12127369999",)),
        ("sip:7369999;phone-context=%2B1212@h;user=phone", ("+12127369999",)),
        ("7369999;Phone-Context=+1.212", ("+12127369999",)),
        ("tel:9999;phone-context=+1212736", ("+12127369999",)),
        ("tel:7369999;phone-context=+44207", ("+442077369999",)),
        # two contexts: each reading
        ("tel:7369999;phone-context=+1212;phone-context=+1646", ("+12127369999", "+16467369999")),
        # no global number: a domain context, a global number, NANP lengths, 0
        ("tel:7369999;phone-context=example.com", ()),
        ("tel:+12127369999;phone-context=+1", ()),
        ("tel:863-1234;phone-context=+1-914-555", ()),
        ("tel:911;phone-context=+1", ()),
        ("tel:7369999;phone-context=+0212", ()),
        ("tel:73a9999;phone-context=+1212", ()),
        ("tel:7369999;phone-context=+1%2", ()),
        ("sip:+12127369999@h;user=phone", ()),
        # a parameter of the sip: URI, not of its user part
        ("sip:7369999@h;phone-context=+1212", ()),
    ],
)
def test_in_context(raw: str, want: tuple[str, ...]) -> None:
    assert in_context(raw) == want


@given(st.text())
def test_in_context_never_raises(raw: str) -> None:
    for got in in_context(raw):
        body = got[1:]
        assert got[0] == "+" and body.isascii() and body.isdigit() and body[0] != "0"
        assert 7 <= len(body) <= 15 and (body[0] != "1" or len(body) == 11)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # an escaped NUL ends the number, as it ends a C string
        ("sip:+12127369999%00x@h", "+12127369999"),
        ("tel:2127369999%00", "+12127369999"),
        ("+1212736%009999", "+1212736"),  # a C reader shows seven digits
        ("%00", None),
    ],
)
def test_an_escaped_nul_ends_the_number(raw: str, want: str | None) -> None:
    assert normalise(raw) == want


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # RFC 3261 §19.1.2: an escaped delimiter is data to normalise (no number);
        # a reader that decodes first and parses again ends the number there
        ("sip:+12127369999%40evil@h", ("+12127369999",)),
        ("sip:+12127369999%3Bext=1@h;user=phone", ("+12127369999",)),
        ("sip:+12127369999%3b@h", ("+12127369999",)),
        ("sip:+12127369999%3Fx=1@h", ("+12127369999",)),
        ("sip:+12127369999%3Apw@h", ("+12127369999",)),
        ("sip:+12127369999%2C+13015551234@h", ("+12127369999", "+13015551234")),
        ("sip:+12127369999%3E@h", ("+12127369999",)),
        ("sip:+12127369999%3C@h", ("+12127369999",)),
        ("sip:+12127369999%22@h", ("+12127369999",)),
        ("sip:+12127369999%0D%0AX-Evil:%201@h", ("+12127369999",)),
        ("sip:+12127369999%20x@h", ("+12127369999",)),
        ("sip:%2B1212736%39999%40x@h", ("+12127369999",)),
        ("tel:2127369999%40x", ("+12127369999",)),
        ("+12127369999%40evil", ("+12127369999",)),
        ("sip:+12127369999%00x@h", ("+12127369999",)),  # an escaped NUL ends it
        # a character a number cannot hold: the number before it, and the digits
        ("sip:+12127369999x@h", ("+12127369999",)),
        ("sip:+12127369999-ext@h", ("+12127369999",)),
        ("sip:2127369999#1@h", ("+12127369999",)),
        ("sip:+1212x736y9999@h", ("+12127369999",)),
        ("sip:1-212-736-9999abc@h", ("+12127369999",)),
        ("sip:+1212;a=736;b=9999@h", ("+12127369999",)),  # a sip: user's parameters
        ("sip:%EF%BC%8B%EF%BC%912127369999@h", ("+12127369999",)),  # UTF-8 fullwidth
        ("sip:+13015551234x%40+12127369999@h", ("+13015551234", "+12127369999")),
        # a malformed escape is no number to normalise (no caller ID), but the
        # number before it is still written there
        ("sip:+12127369999%4@h", ("+12127369999",)),
        # the caller's own reading is among them (the caller excludes it)
        ("sip:+12127369999@h", ("+12127369999",)),
        ("sip:+13015551234;npdi;rn=+12125550000@h", ("+13015551234",)),
        # nothing: no digits, too few, a local number, tel:
        # parameters (RFC 3966: not its number)
        ("sip:alice%40x@h", ()),
        ("sip:anonymous@anonymous.invalid", ()),
        ("sip:2001x@h", ()),
        ("sip:7369999x@h", ()),
        ("tel:5551234;phone-context=+1212", ()),
        ("sip:1234;phone-context=+1212555@h", ()),
        ("tel:+1212;x=736;y=9999", ()),
    ],
)
def test_user_readings(raw: str, want: tuple[str, ...]) -> None:
    assert user_readings(raw) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("+1 (212) 736-9999", ("+12127369999",)),
        ("Call +1 212-736-9999 now", ("+12127369999",)),
        ("2127369999 or 3015551234", ("+12127369999", "+13015551234")),
        ("＋１ (２１２) ７３６-９９９９", ("+12127369999",)),  # fullwidth (NFKC)
        ("١٢١٢٧٣٦٩٩٩٩", ("+12127369999",)),  # Arabic-Indic digits
        ("+1 212\u200b736 9999", ("+12127369999",)),  # a zero-width space
        ("+1 (212) 736\u20139999", ("+12127369999",)),  # an en dash
        ("\U0001d7cf\U0001d7d0\U0001d7cf\U0001d7d07369999", ("+12127369999",)),  # 𝟏𝟐𝟏𝟐
        ("Alice", ()),
        ("Suite 100", ()),
        ("1 800 FLOWERS", ()),
        ("José", ()),
        ("", ()),
    ],
)
def test_numbers_written(text: str, want: tuple[str, ...]) -> None:
    assert numbers_written(text) == want


@given(st.text())
def test_the_other_readings_never_raise_and_give_e164_numbers(raw: str) -> None:
    for got in (user_readings(raw), numbers_written(raw), user_readings("sip:" + raw + "@h")):
        assert all(n[:1] == "+" and normalise(n) == n for n in got), got
        assert len(set(got)) == len(got)


def test_the_other_readings_are_linear_in_the_text() -> None:
    """No backtracking blow-up on a long header: 4 times the text costs well
    under 16 times the CPU (a ratio of the best of three runs, not a time)."""
    import time

    def cost(n: int) -> float:
        texts = (
            "1" + " " * n + "x",
            "1 " * (n // 2) + "x",
            "9" * n,
            "+1-" * (n // 3),
            "1a" * (n // 2),
            "\u0661a" * (n // 2),
            "1234567a" * (n // 8),
        )
        best = []
        for _ in range(3):
            t0 = time.process_time()
            for text in texts:
                numbers_written(text)
                user_readings("sip:" + text + "@h")
            best.append(time.process_time() - t0)
        return min(best)

    small, big = cost(16384), cost(65536)
    assert big < 10 * max(small, 1e-4), (small, big)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("+1212736999912345", "+1212736999912345"),
        ("sip:+1-212-736-9999-12345@h;user=phone", "+1212736999912345"),
        ("tel:+1212736999912345;npdi", "+1212736999912345"),
        ("+1%32127369999123456", "+12127369999123456"),
        ("+121273699991234", None),  # 15 digits: E.164 (normalise reads it)
        ("+4420712345678901234", None),  # not +1
        ("1212736999912345", None),  # no +
        ("+1212736999912345x", None),
    ],
)
def test_overlong_nanp(raw: str, want: str | None) -> None:
    assert overlong_nanp(raw) == want
    if want is not None:
        assert normalise(raw) is None and nanp_invalid_reason(want) == "wrong length for NANP"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("+1911", "911"),
        ("1911", "911"),
        ("1-911", "911"),
        ("sip:+1911@h;user=phone", "911"),
        ("tel:+1-933", "933"),
        ("+1411", "411"),
        ("+1988", "988"),  # a configured short emergency number matches so
        ("+1111", None),
        ("+1011", None),
        ("911", None),  # no prefix: normalise reads it
        ("+19115551234", None),
        ("+44911", None),
    ],
)
def test_dialled_service_code(raw: str, want: str | None) -> None:
    assert dialled_service_code(raw) == want
