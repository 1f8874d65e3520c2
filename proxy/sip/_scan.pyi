from typing import Literal

from proxy.sip.message import NameAddr, Request, Response, Via

def scan_headers(
    buf: bytes, pos: int, hend: int, fast: dict[bytes, bytes], /
) -> dict[bytes, list[tuple[int, int]]] | None: ...
def init(
    request: type[Request],
    response: type[Response],
    via: type[Via],
    name_addr: type[NameAddr],
    fast: dict[bytes, bytes],
    cseq_max: int,
    mf_max: int,
    cl_max: int,
    /,
) -> None: ...
def parse(data: bytes, /) -> Request | Response | None: ...
def parse_via(buf: bytes, s: int, e: int, line_start: int, /) -> Via | None: ...
def scan_response(data: bytes, our_via: bytes, /) -> tuple[int, Via, tuple[int, int]] | None: ...
def scan_request(
    data: bytes,
    src_host: str,
    src_port: int,
    route: bytes,
    decline: bytes | None = ...,
    decline2: bytes | None = ...,
    /,
) -> tuple[bytes, int, bytes] | None: ...
def branch_hash(branch: bytes, /) -> int | None: ...
def top_key(data: bytes, initial: bool, /) -> bytes | Literal[False] | None: ...
