#!/usr/bin/env bash
# Builds the policies written in other languages than Rust to components, next to the
# Rust ones that host/build.rs builds:
#   target/policies/default-py.wasm   policies/default-py  (componentize-py)
#   target/policies/default-js.wasm   policies/default-js  (componentize-js)
# Each language's own build.sh installs its toolchain on first use (a venv from PyPI,
# `npm ci` from the committed lock file) and does nothing when its output is up to date.
#
#   policies/build.sh            # all
#   policies/build.sh py         # only Python (or: js)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
mkdir -p "$target/policies"

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(py js)
for lang in "${langs[@]}"; do
  case "$lang" in
    py | js) "$root/policies/default-$lang/build.sh" "$target/policies/default-$lang.wasm" ;;
    *) echo "policies/build.sh: unknown language '$lang' (py, js)" >&2; exit 2 ;;
  esac
done
