#!/usr/bin/env bash
# Memory per pending F2 invitation (issue 15, "memory follows the work"): the gateway holds
# invitations mailed, answered 200 and ACKed, awaiting the e-mail user (tests/sipp/f2-hold.xml,
# actpass: the IWF connects only at the accept, so they may park), arriving at $RATE/s. RSS is
# read with $LOW held, then with $HIGH, each once they have settled (parked, when parking is
# on); the figure is the slope between the two (the RSS below $LOW carries the allocator's
# and the runtime's own, and the sessions on their way to the store), in the same run with
# parking on ([store] park_after_ms = $PARK) and off (park_after_ms = 0: every invitation in
# memory, as before issue 15's parking).
# Usage: bash host/benches/f2_pending.sh   (LOW, HIGH, RATE, PARK override the defaults below;
# builds iwf in release first; needs sip-tester and postfix's smtp-sink)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
LOW=${LOW:-20000}
HIGH=${HIGH:-100000}
RATE=${RATE:-600}
PARK=${PARK:-1000}
# Held until well after the last one arrived and the figures are read.
hold=$(( (HIGH / RATE + 60) * 1000 ))
sed "s|<pause milliseconds=\"20000\"/>|<pause milliseconds=\"$hold\"/>|" \
  "$ROOT/tests/sipp/f2-hold.xml" >"$work/hold.xml"
start_sink

metric() { curl -s "127.0.0.1:$admin_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$iwf_pid/status"; }
# Waits until $1 invitations are held; prints "<held> <parked> <rss KiB>".
at_level() {
  local held=0
  for _ in $(seq 3000); do
    held=$(metric iwf_sip_sessions); held=${held:-0}
    [ "$held" -ge "$1" ] && break
    kill -0 "$sipp_pid" 2>/dev/null || { echo "sipp ended at $held held:" >&2; tail -5 "$work"/hold*.out >&2; exit 1; }
    sleep 0.1
  done
  echo "$held $(metric iwf_sessions_parked) $(rss)"
}

# $1 more invitations from a sipp of their own, in the background, each held.
offer() {
  (cd "$work" && exec sipp -sf "$work/hold.xml" -i 127.0.0.1 -p 0 -r "$RATE" -m "$1" \
    -l "$1" -buff_size 4194304 -nostdin "127.0.0.1:$sip_port" >"$work/hold$1.out" 2>&1) &
  sipp_pid=$!
  sipps+=($sipp_pid)
}

# One run with [store] park_after_ms = $1: $LOW invitations held, then (all parked when
# parking is on) RSS read; $HIGH - $LOW more, then RSS read again. Prints "<bytes per
# invitation> <held> <RSS> <held> <RSS> <parked>": the slope leaves out the sessions in
# memory on their way to the store, at both readings alike.
run() {
  sipps=()
  rm -rf "$work/state"
  STORE_KEYS="park_after_ms = $1" start_gateway "max_mail_operations = 1000
max_idle_channels = 1024
max_connections_per_destination = 250
max_idle_channels_per_destination = 200" ""
  settle=$(( $1 / 1000 + 2 ))
  offer "$LOW"
  read n1 _ _ < <(at_level "$LOW"); sleep "$settle"; r1=$(rss); n1=$(metric iwf_sip_sessions)
  offer $(( HIGH - LOW ))
  read n2 _ _ < <(at_level "$HIGH"); sleep "$settle"; r2=$(rss); n2=$(metric iwf_sip_sessions)
  p2=$(metric iwf_sessions_parked)
  # run() is in a subshell (its output is read): its processes are not in lib.sh's `pids`.
  kill "${sipps[@]}" 2>/dev/null || true
  kill "$iwf_pid" 2>/dev/null || true
  wait "$iwf_pid" 2>/dev/null || true
  echo "$(( (r2 - r1) * 1024 / (n2 - n1) )) $n1 $r1 $n2 $r2 $p2"
}

read on n1 r1 n2 r2 parked < <(run "$PARK")
echo "parking on  (park_after_ms = $PARK): RSS $r1 KiB at $n1 pending, $r2 KiB at $n2: $on bytes per pending invitation ($parked parked)"
read off n1 r1 n2 r2 parked < <(run 0)
echo "parking off (park_after_ms = 0)   : RSS $r1 KiB at $n1 pending, $r2 KiB at $n2: $off bytes per pending invitation"
python3 -c "print(f'ratio parked/in memory            : {$on/$off:.2f}')"
