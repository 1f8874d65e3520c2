#!/usr/bin/env bash
# The seed letter, end to end (docs/WALKTHROUGH.md as one script).
#
# Replays the FCC Enforcement Bureau's 2021-10-21 letter to PZ/Illum through
# a running sipscreen: imports Attachment A, records the k4 notice with the
# letter's date, maps the trunk 127.0.0.2/32 to provider "pz-illum", records
# the FCC notification, then places SIPp calls through the proxy with the
# replay clock (`run --clock`) set before and after the deadlines:
#   2021-10-22  calls pass (200) and are flagged would_block notice_k4;
#   2021-11-10  every call from the trunk gets 603 Network Blocked + Reason
#               citing 47 CFR 64.1200(k)(4); a 911 call still goes through.
#
# Everything runs on 127.0.0.1 (callers from 127.0.0.2, also loopback), every
# process is bounded by a timeout, and every key under $PREFIX is deleted at
# the end. Needs: Redis at $REDIS (default redis://127.0.0.1:6379/0), sipp,
# python3 with the project's dependencies. Run from anywhere:
#   scripts/seed_letter_demo.sh
# Ports and prefix can be changed: PORT=15060 UAS_PORT=15080 METRICS_PORT=19060 ...
set -euo pipefail

cd "$(dirname "$0")/.."

# --- 0. settings --------------------------------------------------------------
PORT=${PORT:-5060}                # the proxy (udp:127.0.0.1:$PORT)
UAS_PORT=${UAS_PORT:-5080}        # the stand-in softswitch (SIPp UAS)
METRICS_PORT=${METRICS_PORT:-9060}
REDIS=${REDIS:-redis://127.0.0.1:6379/0}
PREFIX=${PREFIX:-sipscreen-demo:}
LETTER=tests/data/seed/fcc-cease-and-desist-2021-10-21.txt
NOTICE=k4-pz-illum-20211021
DEMO=$(mktemp -d /tmp/sipscreen-demo.XXXXXX)
CFG=$DEMO/sipscreen.toml
sipscreen() { python3 -m proxy --config "$CFG" "$@"; }

PROXY_PID=
UAS_PID=
stop_proxy() {
    if [ -n "$PROXY_PID" ]; then
        kill "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
        PROXY_PID=
    fi
}
cleanup() {
    stop_proxy
    if [ -n "$UAS_PID" ]; then
        kill "$UAS_PID" 2>/dev/null || true
        wait "$UAS_PID" 2>/dev/null || true
    fi
    redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" | xargs -r redis-cli -u "$REDIS" DEL >/dev/null
    rm -rf "$DEMO"
}
fail() { echo "FAILED: $*" >&2; exit 1; }
step() { printf '\n=== %s\n' "$*"; }

if [ -n "$(redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" | head -1)" ]; then
    echo "keys under ${PREFIX} exist already; set PREFIX=... or delete them with:" >&2
    echo "  redis-cli -u $REDIS --scan --pattern '${PREFIX}*' | xargs -r redis-cli -u $REDIS DEL" >&2
    exit 1
fi
trap cleanup EXIT

# --- 1. configuration: the sample config + the PZ/Illum trunk -----------------
step "1. config: sample config, key prefix ${PREFIX}, trunk 127.0.0.2/32 -> pz-illum"
sed -e "s|^key_prefix = .*|key_prefix = \"${PREFIX}\"|" -e '/^sample_data/d' \
    -e '/^\[answer.analytics\]/,/^\[/ s|^kind = "603"$|kind = "603+"\nredress_url = "https://robocall-redress.demo-carrier.net/"|' \
    proxy/defaults/sipscreen.toml >"$CFG"
cat >>"$CFG" <<'EOF'

# The PZ/Illum trunk (a /32 beats the sample's 127.0.0.0/8).
[[trunk]]
cidr = "127.0.0.2/32"
provider = "pz-illum"
EOF
tail -4 "$CFG"

# --- 2. the letter into Redis ------------------------------------------------
step "2. record the provider, the notice (letter date), Attachment A, the FCC notification"
sipscreen provider set pz-illum --name "PZ/Illum Telecommunication LLC"
sipscreen notice add --provider pz-illum --kind k4 --letter "$LETTER" | tee "$DEMO/notice.txt"
# "(November 5, 2021)": to the end of that day, US Eastern (EDT until 2021-11-07).
grep -q "report due     2021-11-05 end of day ET: 2021-11-05 23:59:59 EDT (2021-11-06T03:59:59Z)" \
    "$DEMO/notice.txt" || fail "report due date"
sipscreen traceback import "$LETTER" --notice "$NOTICE" | tee "$DEMO/traceback.txt"
grep -q "78 traced calls" "$DEMO/traceback.txt" || fail "Attachment A rows"
# Dated the letter's day: refused, no determination can precede the 48-hour window.
if sipscreen notice fcc-notified "$NOTICE" --date 2021-10-21 --summary "too early" 2>"$DEMO/refused.txt"; then
    fail "an FCC notification dated the letter's day was accepted"
fi
cat "$DEMO/refused.txt"
sipscreen notice fcc-notified "$NOTICE" --date 2021-11-08 \
    --summary "no mitigation within 48 hours; no report by November 5, 2021"
sipscreen notice show "$NOTICE" --at 2021-11-10T12:00:00Z

step "2b. what the rules say, before and after the deadline (no proxy needed)"
sipscreen check --caller +12127364100 --provider pz-illum --at 2021-10-22T12:00:00Z | tail -2
# (check exits 1 for a blocked call: expected here)
{ sipscreen check --caller +12127364100 --provider pz-illum --at 2021-11-10T12:00:00Z \
    || test $? -eq 1; } | tail -1

# --- 3. the softswitch stand-in and the callers --------------------------------
step "3. SIPp UAS on udp:127.0.0.1:${UAS_PORT}; three callers and a 911 call"
timeout 300 sipp -sf tests/sipp/uas_rr.xml -i 127.0.0.1 -p "$UAS_PORT" -nostdin \
    -timeout 240s -trace_msg -message_file "$DEMO/uas.msg" >/dev/null 2>&1 &
UAS_PID=$!
printf 'SEQUENTIAL\n+12127364100;+13125557000;\n+12127364101;+13125557000;\n+12127364102;+13125557000;\n' \
    >"$DEMO/callers.csv"
printf 'SEQUENTIAL\n+12127364100;911;\n' >"$DEMO/e911.csv"
uac() { # uac SCENARIO INJECTION-FILE: calls from the trunk address 127.0.0.2
    timeout 60 sipp -sf "tests/sipp/$1" -inf "$2" "127.0.0.1:${PORT}" -i 127.0.0.2 \
        -m "$(($(wc -l <"$2") - 1))" -r 5 -nostdin -timeout 30s -timeout_error \
        -trace_msg -message_file "$DEMO/uac-$1.msg" >/dev/null 2>&1
}

start_proxy() { # start_proxy CLOCK
    python3 -m proxy run --config "$CFG" --redis "$REDIS" --clock "$1" \
        --listen "udp:127.0.0.1:${PORT}" --softswitch "udp:127.0.0.1:${UAS_PORT}" \
        --metrics "127.0.0.1:${METRICS_PORT}" >"$DEMO/proxy.out" 2>"$DEMO/proxy.err" &
    PROXY_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$DEMO/proxy.out" && break
        kill -0 "$PROXY_PID" 2>/dev/null || { cat "$DEMO/proxy.err" >&2; fail "proxy exited"; }
        sleep 0.2
    done
    grep -q "listening on" "$DEMO/proxy.out" || fail "proxy did not start"
    grep "replay clock" "$DEMO/proxy.err"
}

# --- 4. before the deadlines: calls pass and are flagged -----------------------
step "4. proxy with the clock at 2021-10-22T12:00:00Z: calls complete, flagged would_block"
start_proxy 2021-10-22T12:00:00Z
uac uac_screen.xml "$DEMO/callers.csv" || fail "calls before the deadline did not complete"
echo "3 calls answered 200 by the softswitch"
sleep 1
curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | grep '^sipscreen_invites_total{.*notice_k4'
sipscreen records export --provider pz-illum --format json | tee "$DEMO/pre.jsonl" |
    python3 -c 'import json, sys
for r in map(json.loads, sys.stdin):
    print(r["ts"], r["source"], r["caller"], r["action"], r["rule"], r["citation"])'
[ "$(grep -c '"rule":"notice_k4","citation":"47 CFR 64.1200(k)(4)"' "$DEMO/pre.jsonl")" -eq 3 ] ||
    fail "expected 3 would_block records"
stop_proxy

# --- 5. after the deadlines: blocked, 911 still goes through --------------------
step "5. proxy with the clock at 2021-11-10T12:00:00Z: blocked with 603+, 911 passes"
start_proxy 2021-11-10T12:00:00Z
uac uac_block_603plus.xml "$DEMO/callers.csv" || fail "calls after the deadline were not all blocked"
grep -m1 "^Reason:" "$DEMO/uac-uac_block_603plus.xml.msg"
grep '"rule":"notice_k4"' "$DEMO/proxy.out" | head -1
[ "$(grep -c '"citation":"47 CFR 64.1200(k)(4)","reason"' "$DEMO/proxy.out")" -eq 3 ] ||
    fail "expected 3 decision lines citing 47 CFR 64.1200(k)(4)"
uac uac_screen.xml "$DEMO/e911.csv" || fail "the 911 call did not complete"
grep -q "INVITE sip:911@" "$DEMO/uas.msg" || fail "the softswitch did not see the 911 INVITE"
echo "911 from 127.0.0.2 reached the softswitch and was answered 200"
sleep 1
curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | grep -E '^sipscreen_invites_total\{.*(notice_k4|emergency)'
stop_proxy

# --- 6. the provider report ---------------------------------------------------------
step "6. report provider pz-illum"
sipscreen report provider pz-illum
sipscreen report provider pz-illum --format json | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(d["notices"][0]["report_due"], d["traceback"]["k4-pz-illum-20211021"]["rows"])' |
    tee "$DEMO/report.txt"
[ "$(cat "$DEMO/report.txt")" = "2021-11-06T04:00:00Z 78" ] || fail "report: deadline / evidence"

step "done: keys under ${PREFIX} are deleted on exit"
