"""asyncio adapters around the sans-I/O SIP core, and the worker processes.

How this works (aioquic style, see shared/STYLE.md):

* `Worker` owns one `ProxyCore`. Every input -- a UDP datagram
  (`_UDPProtocol`), a framed TCP message (`_TCPProtocol`, framed with
  `proxy.sip.message.frame_stream`), a handoff datagram from another worker,
  or the core's timer -- is handed to the core with `now` (UNIX epoch derived
  from `loop.time()` plus a fixed offset), then `_flush()` drains
  `core.datagrams_to_send()` and re-arms ONE `loop.call_at` handle from
  `core.get_timer()`.
* Outputs: `"udp"` goes out of our UDP listen socket (so the peer's answers
  come back to the address in our Via, RFC 3261 §18.2.1); `"tcp"` goes on
  the connection open to the peer (ip, port), the one a request came in on or
  one we opened. A request to a TCP peer with no connection open (the BYE
  to a caller's Contact, its listening port) opens one (RFC 3261 §18.1.1,
  `Worker._tcp_connect`): the messages wait for it (a bounded queue), the
  attempt counts against the TCP caps and gives up after
  `tcp_connect_timeout_s`; a failure is counted
  (`dropped{reason="tcp_connect_failed"}`) and logged once a minute. A
  response never opens one (§18.2.2: its connection is gone). Connection
  reuse by a Via `alias` (RFC 5923) is not honoured: RFC 5923 allows it
  only over TLS with authenticated peers, so a connection is found only
  under the address it is connected to. `"tls"`: the same, under TLS
  (`tls:` listen addresses, `[proxy] tls_cert`/`tls_key`; the connections we
  open verify the peer's certificate for its address against `tls_ca`; a
  caller's client certificate, verified against `tls_client_ca`, can name its
  trunk: `Worker.tls_client` finds the provider once at the handshake, and
  every message of that connection is screened with it, see
  `Screener.provider_override`; the softswitch may be reached over TLS too);
  `("worker", k)` / `"handoff"` goes to worker k's private 127.0.0.1 socket.
* Several workers (`--workers N`): the parent binds N UDP sockets with
  SO_REUSEPORT on the same address:port *before* forking, attaches a classic
  BPF program (SO_ATTACH_REUSEPORT_CBPF) to the group that picks a socket at
  random (`ld rand; mod #N; ret a`): SO_REUSEPORT alone hashes on the source
  address+port, and a trunk (or SIPp) sends from one. Socket k stays open in
  the parent, so a restarted worker k finds its queued datagrams. Each worker
  also gets a private handoff socket for the core's owner-worker messages. A
  TCP message that lands on a worker without the connection is relayed to
  the other workers (`_TCP_RELAY` prefix on the handoff sockets); for a
  request, the worker `_tcp_owner(peer)` opens a connection if it has none. A handoff
  datagram is taken only from a worker's handoff address (the parent binds
  them all, exclusively, before the fork, so no other local process can send
  from one; a spoofed 127/8 source from outside is a martian the kernel
  drops): anything else on that socket is ignored and counted
  (`sipscreen_dropped_total{reason="handoff_foreign"}`, one frozenset probe).
* Metrics: one process serves `/metrics` (prometheus_client's own HTTP
  thread); with workers the parent serves the multiprocess registry (see
  proxy/metrics.py).
* TCP limits (`[limits]`, `_TCPProtocol`): per-worker and per-source
  connection caps (the worker cap kept below RLIMIT_NOFILE, `_FD_RESERVE`
  descriptors left for Redis and the metrics endpoint), and one sweep task
  that closes idle connections and those holding an incomplete message
  (slow loris) past their timeouts; counted, logged at most once a minute.
* Signals: SIGTERM/SIGINT stop (the parent stops its workers, each worker
  flushes its decision records, and spools what Redis did not take for the
  next start to replay). SIGHUP reloads the configuration: the parent checks
  that it loads and signals the workers; each worker (or the single process)
  rebuilds its Screener, core limits and emergency numbers on its loop,
  between two datagrams (`Worker.reload`); a bad file is refused and logged.
  Workers set PR_SET_PDEATHSIG and check their parent pid twice a second, so
  they never outlive a killed parent.
* Any exception in a callback is logged and counted
  (`sipscreen_callback_errors_total`), never fatal.
* Replay clock (`run --clock` / `[proxy] clock`): the Screener's decision
  clock is `config.clock_start` plus the real time elapsed since the proxy
  started (`replay_clock`), anchored once in the parent so every worker (and
  a restarted one) agrees; SIP timers keep running on the loop's clock.
* uvloop when importable (`--loop auto|uvloop|asyncio`); on the stdlib loop
  `transport.max_size = 65536` (its 256 KiB per-datagram receive buffer is
  its main cost, shared/PERFORMANCE.md).

Where things are: `supervisor.run` is the entry point (one process, or a
parent with N forked workers); `sockets.py` binds everything before the fork;
`worker.Worker` builds and serves one worker, from `base.WorkerBase` (state),
`tcp.TcpSide` (TCP/TLS connections) and `datapath.Datapath` (message in ->
core -> out); `bootstrap.py` prepares Redis before any worker; `console.py`
sets the log handlers and prints the banner; `loops.py` picks the event loop
and the decision clock. docs/DESIGN.md has the table.
"""
