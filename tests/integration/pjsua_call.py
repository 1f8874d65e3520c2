"""One call from a pjsua2 user agent, run as a subprocess by test_pjsua.py.

Usage: python pjsua_call.py CALLER_E164 TARGET_URI [SECONDS]
Prints `FINAL <status> <reason>` (the INVITE's final answer) and, for an
answered call, `BYE done` after hanging up. pjsua2 runs its own worker
threads; keeping it in a separate process keeps them out of pytest.
"""

from __future__ import annotations

import sys
import time

import pjsua2 as pj


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, acc: pj.Account) -> None:
        super().__init__(acc)
        self.final: tuple[int, str] | None = None
        self.confirmed = False
        self.disconnected = False

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802 - pjsua2 API
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
            self.final = (200, "OK")
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True
            if self.final is None:
                self.final = (int(ci.lastStatusCode), str(ci.lastReason))


def main() -> int:
    caller, target = sys.argv[1], sys.argv[2]
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 15.0
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{caller}@127.0.0.1"
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acc = pj.Account()
    acc.create(acfg)
    call = Call(acc)
    call.makeCall(target, pj.CallOpParam(True))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and call.final is None:
        ep.libHandleEvents(20)
    final = call.final
    print(f"FINAL {final[0]} {final[1]}" if final else "FINAL none", flush=True)
    if call.confirmed and not call.disconnected:
        call.hangup(pj.CallOpParam(True))
        end = time.monotonic() + 5
        while time.monotonic() < end and not call.disconnected:
            ep.libHandleEvents(20)
        print("BYE done" if call.disconnected else "BYE timeout", flush=True)
    del call
    acc.shutdown()
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
