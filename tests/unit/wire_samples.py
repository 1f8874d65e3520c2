"""Wire samples shared by the unit tests: messages as real peers write them."""

from __future__ import annotations

from hypothesis import strategies as st

# SIPp's uac scenario as the benchmark runs it (benchmarks/sipp/uac_screen.xml),
# captured on the wire between SIPp and the proxy.
SIPP_INVITE = (
    b"INVITE sip:+13037621499@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.3:5061;branch=z9hG4bK-6874-1-0\r\n"
    b"From: <sip:+12027621401@127.0.0.3:5061>;tag=6874SIPpTag001\r\n"
    b"To: <sip:+13037621499@127.0.0.1:5060>\r\n"
    b"Call-ID: 1-6874@127.0.0.3\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:+12027621401@127.0.0.3:5061>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: Screening Test\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length:   129\r\n\r\n"
    b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\n"
    b"t=0 0\r\nm=audio 6004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


# Random edits for the differential tests: a few random octets, or a few of
# the octets SIP's grammar turns on, inserted at, written over or cut from a
# position of a sample.
EDIT_JUNK = st.one_of(
    st.binary(min_size=1, max_size=4),
    st.lists(st.sampled_from(list(b'\r\n \t:;,<>"tT=')), min_size=1, max_size=4).map(bytes),
)
EDIT_MODE = st.sampled_from(["insert", "replace", "delete"])


def edit(base: bytes, pos: int, junk: bytes, mode: str) -> bytes:
    """``base`` with ``junk`` inserted at / written over / its length cut at ``pos``."""
    pos %= len(base)
    if mode == "insert":
        return base[:pos] + junk + base[pos:]
    if mode == "replace":
        return base[:pos] + junk + base[pos + len(junk) :]
    return base[:pos] + base[pos + len(junk) :]
