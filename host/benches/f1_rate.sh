#!/usr/bin/env bash
# F1 calls/s through the gateway (sipp f1-uac.xml -> iwf with the auto-accept policy),
# beside sipp's own uac -> uas in the same run (the baseline), and memory per live session.
# Usage: bash host/benches/f1_rate.sh   (builds iwf in release first)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p iwf
ROOT=$PWD
IWF=$ROOT/target/release/iwf
CALLS=${CALLS:-20000}
RATE=${RATE:-100000}     # no rate cap: closed loop, at most $LIMIT calls in flight
LIMIT=${LIMIT:-200}
HOLD=${HOLD:-5000}       # live sessions for the memory figure
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$ROOT/tests/sipp/f1-hold.xml" 2>/dev/null || true; rm -rf "$work"' EXIT

rate_of() { # stats.csv -> completed calls per second over the run
  python3 - "$1" <<'PY'
import sys
rows=[l.rstrip('\n').split(';') for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
ok=int(last[h.index('SuccessfulCall(C)')]); failed=int(last[h.index('FailedCall(C)')])
t=last[h.index('ElapsedTime(C)')].split(':')  # HH:MM:SS[.frac] or HH:MM:SS:micros
secs=int(t[0])*3600+int(t[1])*60+float(t[2])+(int(t[3])/1e6 if len(t)>3 else 0)
print(f"{ok/secs:.0f} {ok} {failed}")
PY
}

# Baseline: sipp uac -> sipp uas.
sipp -sn uas -i 127.0.0.1 -p 15060 -nostdin >/dev/null 2>&1 &
uas_pid=$!
sleep 0.5
(cd "$work" && sipp -sn uac -i 127.0.0.1 -p 0 -r "$RATE" -m "$CALLS" -l "$LIMIT" -nostdin \
  -trace_stat -fd 1 -stf base.csv 127.0.0.1:15060 >/dev/null 2>&1) || true
kill "$uas_pid" 2>/dev/null || true
read base_rate base_ok base_failed < <(rate_of "$work/base.csv")

# The gateway.
cat >"$work/iwf.toml" <<TOML
[sip]
listen = "127.0.0.1:15070"
[admin]
listen = "127.0.0.1:19090"
[policy]
path = "$ROOT/target/policies/auto-accept.wasm"
TOML
RUST_LOG=warn "$IWF" run --config "$work/iwf.toml" 2>/dev/null &
iwf_pid=$!
sleep 1
(cd "$work" && sipp -sf "$ROOT/tests/sipp/f1-uac.xml" -i 127.0.0.1 -p 0 -r "$RATE" -m "$CALLS" -l "$LIMIT" \
  -nostdin -trace_stat -fd 1 -stf iwf.csv 127.0.0.1:15070 >/dev/null 2>&1) || true
read iwf_rate iwf_ok iwf_failed < <(rate_of "$work/iwf.csv")

# Memory per live session: RSS before and with $HOLD sessions held open.
rss() { awk '/VmRSS/ {print $2}' /proc/$iwf_pid/status; }
before=$(rss)
(cd "$work" && sipp -sf "$ROOT/tests/sipp/f1-hold.xml" -i 127.0.0.1 -p 0 -r 1000 -m "$HOLD" -l "$HOLD" \
  -nostdin 127.0.0.1:15070 >"$work/hold.out" 2>&1) &
sleep $(( HOLD / 1000 + 4 ))
held=$(curl -s 127.0.0.1:19090/metrics | awk '/^iwf_sip_sessions / {print $2}')
during=$(rss)
[ "${held:-0}" -gt 0 ] || { echo "no live sessions held:"; head -5 "$work/hold.out"; }
per_session=$(( (during - before) * 1024 / (held > 0 ? held : 1) ))

echo "F1 calls/s, $CALLS calls each (UDP, loopback, one run)"
echo "baseline sipp uac -> sipp uas : $base_rate calls/s ($base_ok ok, $base_failed failed)"
echo "sipp f1-uac -> iwf            : $iwf_rate calls/s ($iwf_ok ok, $iwf_failed failed)"
python3 -c "print(f'ratio iwf/baseline            : {$iwf_rate/$base_rate:.2f}')"
echo "memory: RSS $before KiB idle, $during KiB with $held live sessions: $per_session bytes per session"
