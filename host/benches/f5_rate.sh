#!/usr/bin/env bash
# F5 e-mails/s into MSRP (issue 7): Postfix's smtp-source -> the IWF's inbound SMTP listener
# -> live MSRP sessions (the default policy: each mail becomes a message/cpim SEND, and the
# 250 comes after the CPM side's 200), beside smtp-source -> smtp-sink in the same run (the
# baseline), with the same messages, sizes and parallelism.
#
# host/benches/f5_load.rs plays the CPM side: S sessions (INVITE with an a=setup:active
# MSRP offer, ACK, MSRP bind, one ACCEPT mail each), then it answers every SEND 200 and
# counts the messages. Per session, smtp-source -f userN@example.net -t <reply address>
# -m M -s K -l LEN -A (-A: a refused mail is a warning line and the run goes on; without
# it smtp-source stops at the first refusal); the S smtp-sources run in parallel (S*K SMTP sessions in all), and so do
# the S smtp-sources of the baseline.
# Usage: bash host/benches/f5_rate.sh   (SESSIONS, PER_SESSION, PARALLEL, LEN override the
# defaults; needs the Debian package postfix's tools, the daemon is not used)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LOAD=$(cargo bench -q -p iwf --bench f5_load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "f5_load" and m.get("executable"):
        print(m["executable"])')
SESSIONS=${SESSIONS:-10}      # live CPM sessions (S)
PER_SESSION=${PER_SESSION:-3000}  # mails per session (M)
PARALLEL=${PARALLEL:-2}       # smtp-source sessions per CPM session (K)
LEN=${LEN:-200}               # payload bytes per mail
TOTAL=$((SESSIONS * PER_SESSION))
failures() { cat "$@" 2>/dev/null | grep -ciE 'warning|error|fatal' || true; }

start_sink

# Runs the S smtp-sources in parallel against $1 (host:port) with the sender/recipient
# pairs of $2; the wall-clock seconds.
blast() {
  local target=$1 pairs=$2 tag=$3 i=0 from to
  local t0 t1 spids=()
  t0=$(now)
  while read -r from to; do
    i=$((i + 1))
    "$SMTP_SOURCE" -A -f "$from" -t "$to" -m "$PER_SESSION" -s "$PARALLEL" -l "$LEN" \
      "$target" >"$work/$tag.$i.out" 2>&1 &
    spids+=($!)
  done <"$pairs"
  for p in "${spids[@]}"; do wait "$p" || true; done
  t1=$(now)
  python3 -c "print(f'{$t1-$t0:.3f}')"
}

# Baseline: the same senders and counts, every mail to smtp-sink.
for n in $(seq "$SESSIONS"); do echo "user$n@example.net +1555$(printf %07d "$n")@mail.iwf.test"; done >"$work/pairs.sink"
base_secs=$(blast "127.0.0.1:$sink_port" "$work/pairs.sink" sink)
base_fail=$(failures "$work"/sink.*.out)
base_rate=$(python3 -c "print(f'{($TOTAL-$base_fail)/$base_secs:.0f}')")

# The gateway, default policy, its own mails (invitations, session-closed) to smtp-sink.
start_gateway "" ""

"$LOAD" --sip "127.0.0.1:$sip_port" --smtp "127.0.0.1:$in_port" --work "$work" \
  --sessions "$SESSIONS" >"$work/load.out" 2>"$work/load.err" &
load_pid=$!
pids+=($load_pid)
for _ in $(seq 600); do [ -e "$work/ready" ] && break; kill -0 $load_pid 2>/dev/null || break; sleep 0.1; done
if [ ! -e "$work/ready" ]; then echo "f5_load did not set the sessions up:"; cat "$work/load.err"; exit 1; fi

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }  # utime+stime, clock ticks
# Per thread: name, CPU ns, ns runnable but waiting for a core (schedstat).
tasks() { for t in /proc/$iwf_pid/task/*; do echo "$(cat "$t/comm" | tr ' ' _) $(cat "$t/schedstat" 2>/dev/null)"; done; }
metrics() { curl -s "127.0.0.1:$admin_port/metrics"; }
metrics >"$work/metrics0"
if [ -n "${PERF:-}" ]; then  # PERF=1: perf stat on the gateway during the run
  perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p $iwf_pid \
    -o "$work/perf.out" &
  perf_pid=$!
fi
cpu0=$(cpu $iwf_pid); load0=$(cpu $load_pid); tasks >"$work/tasks0"
iwf_secs=$(blast "127.0.0.1:$in_port" "$work/addresses" iwf)
cpu1=$(cpu $iwf_pid); load1=$(cpu $load_pid); tasks >"$work/tasks1"
[ -n "${PERF:-}" ] && { kill -INT $perf_pid; wait $perf_pid || true; }
metrics >"$work/metrics1"
touch "$work/done"
wait $load_pid || { echo "f5_load failed:"; cat "$work/load.err"; }
iwf_fail=$(failures "$work"/iwf.*.out)
accepted=$((TOTAL - iwf_fail))
iwf_rate=$(python3 -c "print(f'{$accepted/$iwf_secs:.0f}')")
got() { awk -v k="$1" '$1 == k {print $2}' "$work/load.out"; }
tck=$(getconf CLK_TCK)
pct() { python3 -c "print(f'{($2-$1)/$tck/$iwf_secs*100:.0f}')"; }

echo "F5 e-mails/s into MSRP: $SESSIONS sessions x $PER_SESSION mails, $PARALLEL SMTP sessions each ($((SESSIONS * PARALLEL)) in parallel), $LEN-byte payload (loopback, one run)"
echo "baseline smtp-source -> smtp-sink      : $base_rate mails/s ($((TOTAL - base_fail)) of $TOTAL in ${base_secs}s, $base_fail failed)"
echo "smtp-source -> iwf -> MSRP (f5_load)   : $iwf_rate mails/s ($accepted of $TOTAL in ${iwf_secs}s, $iwf_fail failed)"
python3 -c "print(f'ratio iwf/baseline                    : {$iwf_rate/$base_rate:.2f}')"
echo "MSRP messages received (= accepted?)   : $(got msrp_messages) in $(got msrp_chunks) SENDs, $(got msrp_bytes) bytes; $(got byes_ok) BYEs answered 200; setup $(got setup_s)s"
echo "iwf CPU during the run                 : $(pct "$cpu0" "$cpu1")% of one core (f5_load $(pct "$load0" "$load1")%)"
echo "iwf threads: CPU and run-queue wait (runnable, no core free), % of the run's wall time:"
python3 - "$work/tasks0" "$work/tasks1" "$iwf_secs" <<'PY'
import sys, collections
def load(f):
    cpu, wait = collections.Counter(), collections.Counter()
    for l in open(f):
        w = l.split()
        if len(w) < 3: continue  # a thread that ended between the listing and the read
        cpu[w[0]] += int(w[1]); wait[w[0]] += int(w[2])
    return cpu, wait
(c0, w0), (c1, w1) = load(sys.argv[1]), load(sys.argv[2])
secs = float(sys.argv[3]) * 1e9
for name in sorted(c1, key=lambda n: c0.get(n, 0) - c1[n]):
    c, w = c1[name] - c0.get(name, 0), w1[name] - w0.get(name, 0)
    if c or w: print(f"  {name:<20} CPU {c/secs*100:4.0f}%  waiting for a core {w/secs*100:4.0f}%")
print("  (threads that ended during the run, e.g. the blocking pool's, are not in these rows)")
PY
python3 - "$work/metrics0" "$work/metrics1" "$accepted" <<'PY'
import sys, re
def load(f):
    s, c = {}, {}
    for l in open(f):
        m = re.match(r'iwf_policy_decision_seconds_(sum|count)\{decision="([^"]+)"\} (\S+)', l)
        if m: (s if m[1] == "sum" else c)[m[2]] = float(m[3])
    return s, c
(s0, c0), (s1, c1) = load(sys.argv[1]), load(sys.argv[2])
n = max(1, int(sys.argv[3]))
used = [d for d in c1 if c1[d] - c0.get(d, 0)]
dc = {d: c1[d] - c0.get(d, 0) for d in used}
ds = {d: s1[d] - s0.get(d, 0) for d in used}
print("policy decisions during the run: " + ", ".join(f"{d} {dc[d]:.0f} x {ds[d]/dc[d]*1e6:.0f} us" for d in used))
print(f"policy time per mail: {sum(ds.values())/n*1e6:.0f} us")
PY
store_summary "$(cat "$work/metrics1")" "store [store] path = ${IWF_STORE:-state} (set-up included): " "$accepted"
[ -n "${PERF:-}" ] && grep -E "task-clock|context|migrations|faults|elapsed" "$work/perf.out"
if cat "$work"/iwf.*.out | grep -qi fatal; then
  echo "NOTE: an smtp-source stopped early (fatal): its unsent mails are not in the failed count, so the accepted count and rate above are too high"
fi
if [ "$iwf_fail" != 0 ] || [ "$(got msrp_messages)" != "$accepted" ]; then
  echo "--- smtp-source errors (first 10)"; cat "$work"/iwf.*.out | head -10
  echo "--- iwf log (first 10 lines)"; head -10 "$work/iwf.log"
fi
