#!/usr/bin/env bash
# F1 calls/s through the gateway (sipp f1-uac.xml -> iwf with the auto-accept policy),
# beside the SIP harness alone in the same run (the baseline: the same sipp client against
# tests/sipp/iwf-mirror-uas.xml, a sipp UAS answering as the IWF does with nothing behind
# it), and memory per live session.
# Usage: bash host/benches/f1_rate.sh   (builds iwf in release first)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CALLS=${CALLS:-20000}
RATE=${RATE:-100000}     # no rate cap: closed loop, at most $LIMIT calls in flight
LIMIT=${LIMIT:-200}
HOLD=${HOLD:-5000}       # live sessions for the memory figure
trap 'cleanup; pkill -f "$ROOT/tests/sipp/f1-hold.xml" 2>/dev/null || true' EXIT

rate_of() { # stats.csv -> completed calls per second over the run
  python3 - "$1" <<'PY'
import sys
rows=[l.rstrip('\n').split(';') for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
ok=int(last[h.index('SuccessfulCall(C)')]); failed=int(last[h.index('FailedCall(C)')])
# ElapsedTime(C) has whole seconds only: use the epoch fields of StartTime and CurrentTime.
epoch=lambda f: float(last[h.index(f)].split('\t')[-1])
secs=epoch('CurrentTime')-epoch('StartTime')
print(f"{ok/secs:.0f} {ok} {failed}")
PY
}
# The sipp client, the same in both runs: $1 the stats file, $2 the target.
uac() {
  (cd "$work" && sipp -sf "$ROOT/tests/sipp/f1-uac.xml" -i 127.0.0.1 -p 0 -r "$RATE" \
    -m "$CALLS" -l "$LIMIT" -buff_size 4194304 -nostdin -trace_stat -fd 1 -stf "$1" "$2" \
    >/dev/null 2>&1) || true
}

# Baseline: the SIP harness alone.
start_mirror
uac base.csv "127.0.0.1:$mirror_port"
kill "$mirror_pid" 2>/dev/null || true
read base_rate base_ok base_failed < <(rate_of "$work/base.csv")

# The gateway. An F1 session without chat mails nothing: the smart host is never reached.
sink_port=$(free_port)
start_gateway "" "[policy]
path = \"$ROOT/target/policies/auto-accept.wasm\""
uac iwf.csv "127.0.0.1:$sip_port"
read iwf_rate iwf_ok iwf_failed < <(rate_of "$work/iwf.csv")
metrics=$(curl -s "127.0.0.1:$admin_port/metrics")

# Memory per live session: RSS before and with $HOLD sessions held open.
rss() { awk '/VmRSS/ {print $2}' /proc/$iwf_pid/status; }
before=$(rss)
(cd "$work" && sipp -sf "$ROOT/tests/sipp/f1-hold.xml" -i 127.0.0.1 -p 0 -r 1000 -m "$HOLD" -l "$HOLD" \
  -nostdin "127.0.0.1:$sip_port" >"$work/hold.out" 2>&1) &
sleep $(( HOLD / 1000 + 4 ))
held=$(curl -s "127.0.0.1:$admin_port/metrics" | awk '/^iwf_sip_sessions / {print $2}')
during=$(rss)
[ "${held:-0}" -gt 0 ] || { echo "no live sessions held:"; head -5 "$work/hold.out"; }
per_session=$(( (during - before) * 1024 / (held > 0 ? held : 1) ))

echo "F1 calls/s, $CALLS calls each (UDP, loopback, one run)"
echo "baseline sipp f1-uac -> sipp mirror uas : $base_rate calls/s ($base_ok ok, $base_failed failed; the SIP harness alone)"
echo "sipp f1-uac -> iwf                      : $iwf_rate calls/s ($iwf_ok ok, $iwf_failed failed)"
python3 -c "print(f'ratio iwf/baseline                      : {$iwf_rate/$base_rate:.2f}')"
echo "memory: RSS $before KiB idle, $during KiB with $held live sessions: $per_session bytes per session"
store_summary "$metrics" "store [store] path = ${IWF_STORE:-state}: " "$iwf_ok"
