# Shared by the rate benches (f2_rate.sh, f4_rate.sh, f5_rate.sh), sourced after
# `set -euo pipefail`: from the repository root with a release `iwf` built, a work folder
# removed on exit (KEEP=1 keeps it) with the processes in `pids` killed, Postfix's
# smtp-sink as the mail server, and the gateway on free loopback ports.
# Sets ROOT, IWF, SMTP_SINK, SMTP_SOURCE, work, pids; start_sink sets sink_port;
# start_gateway sets sip_port, admin_port, msrp_port, in_port (bound on port 0, read from
# the gateway's ready line), iwf_pid.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
cargo build --release -q -p iwf
ROOT=$PWD
IWF=$ROOT/target/release/iwf
SMTP_SINK=${SMTP_SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}
SMTP_SOURCE=${SMTP_SOURCE:-$(command -v smtp-source || echo /usr/sbin/smtp-source)}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# smtp-sink: accepts everything, stores nothing (backlog 1000; -u nobody when run as root).
# Its options (e.g. -c) are the arguments; its output is $work/sink.out.
start_sink() {
  sink_port=$(free_port)
  "$SMTP_SINK" "$@" -u nobody "127.0.0.1:$sink_port" 1000 >"$work/sink.out" 2>&1 &
  pids+=($!)
  sleep 0.5
}

# The gateway, every mail to smtp-sink (no DNS), its log in $work/iwf.log; every listener on
# port 0, the bound ports read from its `iwf ready` line (10 s at most). $1: lines added to
# [smtp.outbound]; $2: sections added after it; the other arguments: a command the gateway
# runs under (none: run directly).
start_gateway() {
  local outbound=$1 sections=$2
  shift 2
  {
    cat <<TOML
[sip]
listen = "127.0.0.1:0"
domain = "iwf.test"
[msrp]
listen = "127.0.0.1:0"
[smtp.inbound]
listen = "127.0.0.1:0"
domain = "mail.iwf.test"
[smtp.outbound]
smart_host = "127.0.0.1:$sink_port"
helo = "iwf.test"
TOML
    [ -z "$outbound" ] || printf '%s\n' "$outbound"
    [ -z "$sections" ] || printf '%s\n' "$sections"
    cat <<TOML
[admin]
listen = "127.0.0.1:0"
[store]
path = "${IWF_STORE:-state}"
${STORE_KEYS:-}
TOML
  } >"$work/iwf.toml"
  RUST_LOG=${RUST_LOG:-warn} "$@" "$IWF" run --config "$work/iwf.toml" >"$work/iwf.out" 2>"$work/iwf.log" &
  iwf_pid=$!
  pids+=($iwf_pid)
  wait_ready "$work/iwf.out"
}

# Waits for the `iwf ready sip=.. msrp=.. smtp=.. admin=..` line in file $1 and sets
# sip_port, msrp_port, in_port and admin_port from it.
wait_ready() {
  local line=
  for _ in $(seq 100); do
    line=$(grep -m1 '^iwf ready ' "$1" 2>/dev/null) && break
    sleep 0.1
  done
  [ -n "$line" ] || { echo "the gateway did not come up:"; tail -20 "$work/iwf.log"; exit 1; }
  port_of() { sed -E "s/.* $1=[^ ]*:([0-9]+).*/\1/" <<<"$line"; }
  sip_port=$(port_of sip); msrp_port=$(port_of msrp); in_port=$(port_of smtp); admin_port=$(port_of admin)
}

# The policy decisions in the /metrics text $1: "$2<decision> <count> x <mean> us, ..." and
# "$3<policy time per unit> us", the unit being one of $4 (the count of calls or messages).
policy_summary() {
  echo "$1" | python3 -c '
import sys, re
s, c = {}, {}
for l in sys.stdin:
    m = re.match(r"iwf_policy_decision_seconds_(sum|count)\{decision=\"([^\"]+)\"\} (\S+)", l)
    if m: (s if m[1] == "sum" else c)[m[2]] = float(m[3])
used = [d for d in c if c[d]]
print(sys.argv[1] + ", ".join(f"{d} {c[d]:.0f} x {s[d]/c[d]*1e6:.0f} us" for d in used))
print(f"{sys.argv[2]}{sum(s[d] for d in used)/max(1, int(sys.argv[3]))*1e6:.0f} us")' "$2" "$3" "$4"
}

# The store's commits in the /metrics text $1 (iwf_store_commit_seconds): how many, the
# mean, and p50/p99 as the upper bounds of their histogram buckets; $2 labels the line,
# $3 is the count of calls or messages they served.
store_summary() {
  echo "$1" | python3 -c '
import sys, re
b, n, s = [], 0, 0.0
for l in sys.stdin:
    m = re.match(r"iwf_store_commit_seconds_bucket\{store=\"sqlite\",le=\"([^\"]+)\"\} (\S+)", l)
    if m: b.append((float(m[1]), int(m[2])))
    m = re.match(r"iwf_store_commit_seconds_(count|sum)\{store=\"sqlite\"\} (\S+)", l)
    if m and m[1] == "count": n = int(m[2])
    elif m: s = float(m[2])
q = lambda f: next((le for le, c in b if c >= f * n), float("inf"))
units = max(1, int(sys.argv[2]))
print(f"{sys.argv[1]}{n} commits ({n/units:.2f} per unit), mean {s/max(n,1)*1e3:.2f} ms, "
      f"p50 <= {q(0.5)*1e3:g} ms, p99 <= {q(0.99)*1e3:g} ms")' "$2" "$3"
}

# The SIP harness alone: a sipp UAS answering as the IWF does (tests/sipp/iwf-mirror-uas.xml),
# with nothing behind it. Sets mirror_port and mirror_pid.
start_mirror() {
  mirror_port=$(free_port)
  (cd "$work" && exec sipp -sf "$ROOT/tests/sipp/iwf-mirror-uas.xml" -i 127.0.0.1 \
    -p "$mirror_port" -buff_size 4194304 -nostdin >/dev/null 2>&1) &
  mirror_pid=$!
  pids+=($mirror_pid)
  sleep 0.5
}
