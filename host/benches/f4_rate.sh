#!/usr/bin/env bash
# F4 chat messages/s through the gateway: host/benches/f4_load.rs opens SESSIONS CPM
# sessions on a release `iwf` (auto-accept policy; INVITE with an MSRP offer, 200, ACK),
# one MSRP connection each, and sends MESSAGES message/cpim SENDs (~200 bytes) per session,
# each waiting for its 200 (sent once the message is committed to the outbound spool),
# sessions in parallel; every message becomes one e-mail to smtp-sink. The rate compared
# is messages mailed: from the first SEND until the spool is empty again. Beside it, in the same run, the baseline:
# Postfix's smtp-source -> the same smtp-sink (one 512-byte message per connection, 20
# sessions, as host/benches/f2_rate.sh). smtp-sink -c counts SMTP sessions and messages,
# which shows whether the gateway reuses one SMTP connection per CPM session (F4).
# Usage: bash host/benches/f4_rate.sh   (builds iwf and the load generator in release;
# needs Postfix's smtp-sink and smtp-source; the postfix daemon itself is not used)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
# The load generator's executable, run directly (not through cargo) so that cargo's own
# start-up is outside the measured window.
LOAD=$(cargo bench -p iwf --bench f4_load --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$LOAD" ] || { echo "f4_load was not built" >&2; exit 1; }
SESSIONS=${SESSIONS:-20}  # CPM sessions in parallel
MESSAGES=${MESSAGES:-1000} # messages per session
MSGS=${MSGS:-20000}       # smtp-source messages for the baseline
SRC_SESSIONS=${SRC_SESSIONS:-20}
POLICY=$ROOT/target/policies/auto-accept.wasm
[ -f "$POLICY" ] || { echo "missing $POLICY (built by host/build.rs)" >&2; exit 1; }
# smtp-sink -c: "sess=N quit=N mesg=N", rewritten with CR after each event; the last one.
sink_counts() { tr '\r' '\n' <"$work/sink.out" | grep '^sess=' | tail -1; }
count() { sink_counts | tr ' ' '\n' | sed -n "s/^$1=//p"; }

start_sink -c

# Baseline: smtp-source -> smtp-sink, one 512-byte message per connection; run before and
# after the gateway (the machine is shared: the two show how much the load moved).
baseline() { # -> msgs/s
  local t0 t1
  t0=$(now)
  "$SMTP_SOURCE" -s "$SRC_SESSIONS" -l 512 -m "$MSGS" "127.0.0.1:$sink_port" >>"$work/source.out" 2>&1
  t1=$(now)
  python3 -c "print(f'{$MSGS/($t1-$t0):.0f}')"
}
base_before=$(baseline)
sleep 0.2
sess0=$(count sess); mesg0=$(count mesg)

start_gateway "" "[policy]
path = \"$POLICY\""

cpu() { awk '{print $14+$15}' "/proc/$iwf_pid/stat"; }  # utime+stime, clock ticks
# Per thread, by name: "name ticks" lines.
threads() { for t in /proc/$iwf_pid/task/*; do echo "$(tr ' ' '_' <"$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done 2>/dev/null; }
threads >"$work/threads0"
if [ -n "${PERF:-}" ]; then  # PERF=1: perf stat of the gateway over the load run
  perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$iwf_pid" -o "$work/perf.txt" &
  perf_pid=$!
  sleep 0.2
fi
cpu0=$(cpu); c0=$(now)
load=$("$LOAD" "127.0.0.1:$sip_port" "$SESSIONS" "$MESSAGES" 2>"$work/load.err")
l1=$(now)
# A 200 means "spooled" (issue 15): the run ends when the outbound spool is empty, every
# message taken also mailed.
spool_depth() { curl -s "127.0.0.1:$admin_port/metrics" | sed -n 's/^iwf_spool_depth{spool="outbound"} //p'; }
for _ in $(seq 1200); do [ "$(spool_depth)" = 0 ] && break; sleep 0.05; done
cpu1=$(cpu); c1=$(now)
threads >"$work/threads1"
if [ -n "${PERF:-}" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
sleep 0.2
sleep 1  # the sessions' QUITs reach smtp-sink
eval "$(echo "$load" | tr ' ' '\n' | grep '=')"   # rate ok failed secs p50_ms p99_ms setup_failed
taken_rate=$rate  # 200s per second
lag=$(python3 -c "print(f'{$c1-$l1:.2f}')")  # from the last 200 to the spool empty
rate=$(python3 -c "print(f'{$ok/($secs+$c1-$l1):.0f}')")  # mailed per second
sess1=$(count sess); mesg1=$(count mesg)
metrics=$(curl -s "127.0.0.1:$admin_port/metrics")
base_after=$(baseline)
base_rate=$(( (base_before + base_after) / 2 ))
# For scale: smtp-source -d keeps each connection for the next message, as the gateway
# does within a session (the same 20 connections for all messages).
t0=$(now)
"$SMTP_SOURCE" -d -s "$SRC_SESSIONS" -l 512 -m "$MSGS" "127.0.0.1:$sink_port" >>"$work/source.out" 2>&1
t1=$(now)
reuse_rate=$(python3 -c "print(f'{$MSGS/($t1-$t0):.0f}')")
iwf_cpu=$(python3 -c "print(f'{($cpu1-$cpu0)/$(getconf CLK_TCK)/($c1-$c0)*100:.0f}')")
smtp_sessions=$((sess1 - sess0)); smtp_mails=$((mesg1 - mesg0))

echo "F4 chat messages/s, $SESSIONS sessions x $MESSAGES messages, baseline $MSGS messages (loopback, one run)"
echo "baseline smtp-source -> smtp-sink : $base_rate msgs/s (mean of $base_before before and $base_after after the gateway run; $MSGS each, $SRC_SESSIONS sessions, 512 bytes)"
echo "f4_load -> iwf -> smtp-sink       : $rate msgs/s mailed ($ok ok, $failed failed, ${secs}s of SENDs + ${lag}s until the spool was empty; $setup_failed sessions failed to set up)"
echo "  answered 200 (spooled)          : $taken_rate msgs/s; SEND -> 200 p50 ${p50_ms} ms, p99 ${p99_ms} ms"
python3 -c "print(f'ratio iwf/baseline               : {$rate/$base_rate:.2f}')"
echo "smtp-source -d (connections kept) : $reuse_rate msgs/s (ratio iwf/that: $(python3 -c "print(f'{$rate/$reuse_rate:.2f}')"))"
policy_summary "$metrics" "policy decisions                 : " \
  "policy time per message          : " "$ok"
store_summary "$metrics" "store [store] path = ${IWF_STORE:-state}: " "$ok"

echo "iwf CPU during the load run       : ${iwf_cpu}% of one core (set-up and BYEs included)"
# Threads by name (tokio workers share a name), CPU over the same window; short-lived
# threads (the blocking pool) that ended within it are in the process total only.
python3 - "$work/threads0" "$work/threads1" "$(python3 -c "print($c1-$c0)")" "$(getconf CLK_TCK)" <<'PY'
import sys, collections
def load(f):
    d = collections.defaultdict(int)
    for l in open(f):
        n, t = l.rsplit(' ', 1); d[n] += int(t)
    return d
a, b = load(sys.argv[1]), load(sys.argv[2])
secs, hz = float(sys.argv[3]), int(sys.argv[4])
rows = sorted(((b[n] - a.get(n, 0)) / hz / secs * 100, n) for n in b)
print("iwf threads (% of one core)      : " + ", ".join(f"{n} {p:.0f}%" for p, n in reversed(rows) if p >= 1))
PY
echo "smtp-sink, gateway run            : $smtp_sessions SMTP sessions, $smtp_mails mails (CC2 notifications included)"
if [ "$smtp_sessions" -le "$SESSIONS" ]; then
  echo "SMTP connection reuse             : yes ($((ok / (smtp_sessions > 0 ? smtp_sessions : 1))) chat mails per SMTP session)"
else
  echo "SMTP connection reuse             : NO ($smtp_sessions SMTP sessions for $SESSIONS CPM sessions)"
fi
if [ -n "${PERF:-}" ]; then
  echo "--- perf stat -p iwf over the load run"; grep -E "task-clock|context-switches|cpu-migrations|page-faults|seconds time" "$work/perf.txt"
fi
if [ "$failed" != 0 ] || [ "$setup_failed" != 0 ]; then
  echo "--- load generator errors (first 20 lines)"; head -20 "$work/load.err"
  echo "--- iwf log (first 20 lines)"; head -20 "$work/iwf.log"
fi
