#!/usr/bin/env bash
# F2 invitations/s through the gateway (sipp tests/sipp/f2-uac.xml -> iwf with the default
# policy, which asks the e-mail user: every INVITE is mailed to smtp-sink as an invitation
# and answered 200 on its 250; the BYE then mails the CC2 notification), beside Postfix's
# smtp-source -> smtp-sink in the same run (the baseline: one 512-byte message per
# connection, 20 sessions), and beside the SIP harness alone (the same sipp client against
# tests/sipp/iwf-mirror-uas.xml, a sipp UAS answering as the IWF does, with nothing behind
# it: the most this sipp client can drive on this machine).
# Usage: bash host/benches/f2_rate.sh   (CALLS, MSGS, LIMIT, RATE, PAUSE, MAIL_OPS, DEST_CONNS,
# DEST_IDLE, WARM ([policy] warm_instances) override the defaults below; builds iwf in release first; needs the Debian
# packages sip-tester and postfix; the postfix daemon itself is not used)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CALLS=${CALLS:-10000}    # sipp calls (one invitation each)
MSGS=${MSGS:-20000}      # smtp-source messages for the baseline
SESSIONS=${SESSIONS:-20} # smtp-source parallel sessions
RATE=${RATE:-100000}     # no rate cap: closed loop, at most $LIMIT calls in flight
LIMIT=${LIMIT:-200}
PAUSE=${PAUSE:-200}      # ms between the ACK and the BYE (the session's life)
MAIL_OPS=${MAIL_OPS:-1000}  # [smtp.outbound] max_mail_operations (default 256)
# [smtp.outbound] connections to the smart host (smtp-sink takes 256 at once, its -m) and
# channels kept between a session's mails (defaults 40 and 20, for MX hosts of others).
DEST_CONNS=${DEST_CONNS:-250}
DEST_IDLE=${DEST_IDLE:-200}
rate_of() { # stats.csv -> completed calls per second over the run
  python3 - "$1" <<'PY'
import sys
rows=[l.rstrip('\n').split(';') for l in open(sys.argv[1]) if l.strip()]
h=rows[0]; last=rows[-1]
ok=int(last[h.index('SuccessfulCall(C)')]); failed=int(last[h.index('FailedCall(C)')])
# ElapsedTime(C) has whole seconds only: use the epoch fields of StartTime and CurrentTime.
epoch=lambda f: float(last[h.index(f)].split('\t')[-1])
secs=epoch('CurrentTime')-epoch('StartTime')
t=last[h.index('ResponseTime1(C)')].split(':')  # INVITE -> 200, mean: HH:MM:SS:micros
rtt=(int(t[0])*3600+int(t[1])*60+int(t[2]))*1e3+int(t[3])/1e3
print(f"{ok/secs:.0f} {ok} {failed} {secs:.2f} {rtt:.0f}")
PY
}

start_sink

# Baseline: smtp-source -> smtp-sink, one 512-byte message per connection.
t0=$(now)
"$SMTP_SOURCE" -s "$SESSIONS" -l 512 -m "$MSGS" "127.0.0.1:$sink_port" >"$work/source.out" 2>&1
t1=$(now)
base_rate=$(python3 -c "print(f'{$MSGS/($t1-$t0):.0f}')")
base_secs=$(python3 -c "print(f'{$t1-$t0:.2f}')")

sed "s|<pause milliseconds=\"200\"/>|<pause milliseconds=\"$PAUSE\"/>|" \
  "$ROOT/tests/sipp/f2-uac.xml" >"$work/f2-uac.xml"
# The sipp client, the same in both runs: $1 the stats file, $2 the target.
uac() {
  (cd "$work" && sipp -sf "$work/f2-uac.xml" -key rcpt bob@example.net \
    -i 127.0.0.1 -p 0 -r "$RATE" -m "$CALLS" -l "$LIMIT" -buff_size 4194304 -nostdin \
    -trace_err -trace_stat -fd 1 -stf "$1" "$2" >/dev/null 2>&1) || true
}

# Ceiling: the SIP harness alone, sipp against a sipp UAS that answers as the IWF does.
start_mirror
uac mirror.csv "127.0.0.1:$mirror_port"
kill "$mirror_pid" 2>/dev/null || true
read mirror_rate mirror_ok mirror_failed mirror_secs mirror_rtt < <(rate_of "$work/mirror.csv")

# The gateway, default policy, every mail to smtp-sink (no DNS).
start_gateway "max_mail_operations = $MAIL_OPS
max_idle_channels = 1024
max_connections_per_destination = $DEST_CONNS
max_idle_channels_per_destination = $DEST_IDLE" "${WARM:+[policy]
warm_instances = $WARM}" ${IWF_WRAP:-}

cpu() { awk '{print $14+$15}' "/proc/$iwf_pid/stat"; }  # utime+stime, clock ticks
cpu0=$(cpu)
uac iwf.csv "127.0.0.1:$sip_port"
cpu1=$(cpu)
read iwf_rate iwf_ok iwf_failed iwf_secs iwf_rtt < <(rate_of "$work/iwf.csv")
sleep 1  # the last CC2 notifications
metrics=$(curl -s "127.0.0.1:$admin_port/metrics")
# Datagrams the kernel dropped at the gateway's UDP socket (receive buffer full).
iwf_drops=$(awk -v p="$(printf ':%04X' "$sip_port")" '$2 ~ p"$" {print $NF}' /proc/net/udp | head -1)
iwf_cpu=$(python3 -c "print(f'{($cpu1-$cpu0)/$(getconf CLK_TCK)/$iwf_secs*100:.0f}')")

echo "F2 invitations/s, $CALLS calls, baseline $MSGS messages (loopback, one run)"
echo "baseline smtp-source -> smtp-sink : $base_rate msgs/s ($MSGS in ${base_secs}s, $SESSIONS sessions, 512 bytes)"
echo "sipp f2-uac -> iwf -> smtp-sink   : $iwf_rate invitations/s ($iwf_ok ok, $iwf_failed failed, ${iwf_secs}s; INVITE -> 200 mean ${iwf_rtt} ms)"
echo "sipp f2-uac -> sipp mirror uas   : $mirror_rate calls/s ($mirror_ok ok, $mirror_failed failed; INVITE -> 200 mean ${mirror_rtt} ms; the SIP harness alone)"
python3 -c "print(f'ratio iwf/baseline               : {$iwf_rate/$base_rate:.2f}')"
python3 -c "print(f'ratio iwf/SIP harness            : {$iwf_rate/$mirror_rate:.2f}')"
echo "iwf CPU during the sipp run       : ${iwf_cpu}% of one core"
echo "UDP drops at the iwf socket       : ${iwf_drops:-?}"
echo "$metrics" | grep -E "^iwf_(invitations_total\{|mail_sessions |policy_instances_total)" || true
policy_summary "$metrics" "policy decisions: " "policy time per call: " "$iwf_ok"
store_summary "$metrics" "store [store] path = ${IWF_STORE:-state}: " "$iwf_ok"
if [ "$iwf_failed" != 0 ]; then
  echo "--- sipp errors (first 20 lines)"; head -20 "$work"/*_errors.log 2>/dev/null || true
  echo "--- iwf log (first 20 lines)"; head -20 "$work/iwf.log"
fi

# Memory per pending invitation: host/benches/f2_pending.sh (parked and in memory, at scale).
