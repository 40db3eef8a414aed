#!/usr/bin/env bash
# The test command (README.md): installs what a fresh machine lacks, then runs the whole suite.
#
#   tests/run.sh                 # everything: cargo test --workspace --all-targets
#   tests/run.sh -p iwf --test f2_invitation    # extra arguments go to cargo test
#
# What it installs, each only when missing:
# - Debian packages of the real peers: sipp (sip-tester), dnsmasq, kamailio (MSRP relay),
#   aiosmtpd for /usr/bin/python3, swaks, openssl (test certificates), procps, gcc;
# - the wasm32-wasip2 target and rustfmt/clippy, into the toolchain rust-toolchain.toml pins;
# - the Python and JavaScript policies' toolchains (a venv from PyPI, npm ci), through
#   policies/build.sh, which also builds those two policies.
# A test whose peer is still missing fails, naming it: nothing passes by being skipped.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
command -v kill >/dev/null || need_apt+=(procps)
command -v cc >/dev/null || need_apt+=(gcc)
command -v sipp >/dev/null || need_apt+=(sip-tester)
[ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
[ -x /usr/sbin/kamailio ] || need_apt+=(kamailio)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need_apt+=(python3-aiosmtpd)
command -v swaks >/dev/null || need_apt+=(swaks)
command -v openssl >/dev/null || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${need_apt[*]}" >&2
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}"
fi

# rustup adds a toolchain file's targets only when it installs the toolchain, not to one
# already there: add them to the pinned toolchain (a no-op when present).
rustup show active-toolchain >/dev/null
rustup target add wasm32-wasip2
rustup component add rustfmt clippy

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "tests/run.sh: node and npm are needed for policies/default-js (Debian: apt-get install nodejs npm)" >&2
  exit 1
}
policies/build.sh

exec cargo test --workspace --all-targets "$@"
