"""Two pjsua2 user agents in one process, for one interop scenario (tests/interop).

Usage: python ua.py JSON_ARGS

JSON_ARGS: {"kamailio": port, "proxy": port, "transport": "udp"|"tcp",
"scenario": name, "caller": "+1...", "target": "+1..." or "911",
"callee": "+1...", "prack": bool}

Both UAs use ``transport`` only (UDP, or TCP without any UDP transport); for
TLS the caller uses TLS only (its certificate: "tls_cert", "tls_key",
"tls_ca") and the callee UDP.
The callee registers with Kamailio (the softswitch and registrar); the
caller calls through sipscreen (over TCP from one port, its Contact naming
another port where it listens, ``;transport=tcp``, like a PBX or SBC).
Scenarios: caller_bye, callee_bye, reinvite (caller then callee), cancel
(the caller gives up while it rings), blocked, emergency (like caller_bye).
Prints one JSON object: what each UA saw (final status, states, the
transactions each one completed as client and server, the Call-IDs).
pjsua2 runs in this separate process to keep its threads out of pytest.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from typing import Any

import pjsua2 as pj

ROLE = {pj.PJSIP_ROLE_UAC: "uac", pj.PJSIP_ROLE_UAS: "uas"}


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.states: list[str] = []
        self.final: int | None = None
        self.last: tuple[int, str] = (0, "")
        self.confirmed = False
        self.disconnected = False
        self.tsx: list[str] = []  # "uac INVITE 200", "uas BYE 200", ...
        self.call_id = ""
        # the Record-Route of the 2xx to our INVITE, the Route of the requests we sent
        self.record_route: list[str] = []
        self.routes: list[tuple[str, list[str]]] = []

    def onCallState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 API
        ci = self.getInfo()
        self.call_id = str(ci.callIdString)
        self.states.append(str(ci.stateText))
        self.last = (int(ci.lastStatusCode), str(ci.lastReason))
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
            if self.final is None:
                self.final = 200
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            if self.final is None:
                self.final = int(ci.lastStatusCode)

    def onCallTsxState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 API
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = e.body.tsxState.tsx
        src = e.body.tsxState.src
        if e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG and tsx.method == "INVITE":
            msg = str(src.rdata.wholeMsg)
            if msg.startswith("SIP/2.0 2") and not self.record_route:
                self.record_route = _header(msg, "Record-Route")
        elif e.body.tsxState.type == pj.PJSIP_EVENT_TX_MSG and tsx.role == pj.PJSIP_ROLE_UAC:
            msg = str(src.tdata.wholeMsg)
            if msg[:1] != "S" and (str(tsx.method), _header(msg, "Route")) not in self.routes:
                self.routes.append((str(tsx.method), _header(msg, "Route")))
        if tsx.state in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED):
            entry = f"{ROLE.get(tsx.role, '?')} {tsx.method} {tsx.statusCode}"
            if tsx.statusCode and entry not in self.tsx:
                self.tsx.append(entry)


def _header(msg: str, name: str) -> list[str]:
    """The comma-separated values of header ``name`` (name-addr values) in ``msg``."""
    out: list[str] = []
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        hname, _, value = line.partition(":")
        if hname.strip().lower() == name.lower():
            out.extend(v.strip() for v in re.split(r",(?=\s*<)", value))
    return out


class Callee(pj.Account):  # type: ignore[misc]
    def __init__(self, answer: bool) -> None:
        super().__init__()
        self.answer = answer
        self.calls: list[Call] = []
        self.reg = 0

    def onRegState(self, prm: Any) -> None:  # noqa: N802 - pjsua2 API
        self.reg = int(prm.code)

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802 - pjsua2 API
        call = Call(self, prm.callId)
        self.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        if self.answer:
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)


def main() -> int:
    a = json.loads(sys.argv[1])
    scenario = a["scenario"]
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.noVad = True
    ep.libInit(cfg)

    def transport(kind: int) -> int:
        tc = pj.TransportConfig()
        tc.port = 0
        tc.boundAddress = "127.0.0.1"
        tc.publicAddress = "127.0.0.1"
        if kind == pj.PJSIP_TRANSPORT_TLS:
            tc.tlsConfig.CaListFile = a["tls_ca"]
            tc.tlsConfig.certFile = a["tls_cert"]
            tc.tlsConfig.privKeyFile = a["tls_key"]
            tc.tlsConfig.verifyServer = True
            tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        return int(ep.transportCreate(kind, tc))

    tls = a["transport"] == "tls"
    tcp = a["transport"] == "tcp" or tls
    kind = {
        "udp": pj.PJSIP_TRANSPORT_UDP,
        "tcp": pj.PJSIP_TRANSPORT_TCP,
        "tls": pj.PJSIP_TRANSPORT_TLS,
    }[a["transport"]]
    # TLS: the caller only (Kamailio talks UDP/TCP here), the callee over UDP
    callee_tid = transport(pj.PJSIP_TRANSPORT_UDP if tls else kind)
    caller_tid = transport(kind)
    # TCP: the caller calls from one port and names another one, where it also
    # listens, in its Contact (a PBX or SBC: calls from an ephemeral port, takes
    # requests on its listening port); no UDP transport at all, so a route set
    # entry without ;transport=tcp is unusable ("Unsupported transport")
    contact_tid = transport(kind) if tcp else caller_tid
    contact_port = ep.transportGetInfo(contact_tid).localName.split(":")[-1]
    ep.libStart()
    ep.audDevManager().setNullDev()

    def pump(cond: Any, limit: float) -> bool:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if cond():
                return True
            ep.libHandleEvents(10)
        return bool(cond())

    prack = pj.PJSUA_100REL_MANDATORY if a.get("prack") else pj.PJSUA_100REL_NOT_USED

    ccfg = pj.AccountConfig()
    ccfg.idUri = f"sip:{a['callee']}@127.0.0.1"
    ccfg.regConfig.registrarUri = f"sip:127.0.0.1:{a['kamailio']}" + (
        ";transport=tcp" if tcp and not tls else ""
    )
    ccfg.sipConfig.transportId = callee_tid
    ccfg.callConfig.prackUse = prack
    ccfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    ccfg.mediaConfig.transportConfig.port = random.randrange(20000, 50000, 2)
    callee = Callee(answer=scenario != "cancel")
    callee.create(ccfg)
    registered = pump(lambda: callee.reg != 0, 5.0) and callee.reg == 200

    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{a['caller']}@127.0.0.1"
    acfg.sipConfig.transportId = caller_tid
    if tcp:
        acfg.sipConfig.contactForced = (
            f"<sip:{a['caller']}@127.0.0.1:{contact_port};transport={a['transport']}>"
        )
    acfg.callConfig.prackUse = prack
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acfg.mediaConfig.transportConfig.port = random.randrange(20000, 50000, 2)
    acc = pj.Account()
    acc.create(acfg)

    tparam = f";transport={a['transport']}" if tcp else ""
    target = f"sip:{a['target']}@127.0.0.1:{a['proxy']}{tparam}"
    call = Call(acc)
    notes: list[str] = []
    if registered:
        call.makeCall(target, pj.CallOpParam(True))
        if scenario == "cancel":
            pump(lambda: bool(callee.calls) or call.disconnected, 5.0)
            pump(lambda: "EARLY" in call.states or call.disconnected, 3.0)
            call.hangup(pj.CallOpParam(True))
            pump(lambda: call.disconnected and all(c.disconnected for c in callee.calls), 8.0)
        else:
            pump(
                lambda: (
                    call.disconnected
                    or (call.confirmed and bool(callee.calls) and callee.calls[0].confirmed)
                ),
                10.0,
            )
            if call.confirmed and callee.calls:
                other = callee.calls[0]
                if scenario == "reinvite":
                    call.reinvite(pj.CallOpParam(True))
                    ok = pump(lambda: "uas INVITE 200" in other.tsx, 5.0)
                    notes.append(f"caller reinvite {'ok' if ok else 'timeout'}")
                    pump(lambda: "uac INVITE 200" in call.tsx[1:] or False, 1.0)
                    other.reinvite(pj.CallOpParam(True))
                    ok = pump(lambda: "uas INVITE 200" in call.tsx, 5.0)
                    notes.append(f"callee reinvite {'ok' if ok else 'timeout'}")
                hanger = other if scenario == "callee_bye" else call
                hanger.hangup(pj.CallOpParam(True))
                pump(lambda: call.disconnected and other.disconnected, 8.0)
    out = {
        "registered": registered,
        "caller": {
            "final": call.final,
            "last": list(call.last),
            "states": call.states,
            "disconnected": call.disconnected,
            "tsx": call.tsx,
            "call_id": call.call_id,
            "record_route": call.record_route,
            "routes": call.routes,
        },
        "callee": [
            {
                "final": c.final,
                "last": list(c.last),
                "states": c.states,
                "disconnected": c.disconnected,
                "tsx": c.tsx,
                "call_id": c.call_id,
            }
            for c in callee.calls
        ],
        "notes": notes,
    }
    print(json.dumps(out), flush=True)
    # hang up anything left (a failed scenario) and leave: pjsua2's destructors
    # assert on calls already gone, and nothing here needs a clean shutdown
    ep.hangupAllCalls()
    pump(lambda: False, 0.2)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
