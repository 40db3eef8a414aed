#!/usr/bin/env bash
# Builds the `default-js` policy component: policies/default-js/build.sh OUT.wasm
#
# Installs the pinned componentize-js (npm ci) when node_modules is missing or older
# than package-lock.json, and rebuilds only when OUT.wasm is older than a source, the
# lock file or the WIT world. Works from any directory.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUT.wasm" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$(dirname "$1")"
out="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
wit="$here/../../wit"

if [ ! -d "$here/node_modules" ] || [ "$here/package-lock.json" -nt "$here/node_modules" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
  touch "$here/node_modules"
fi

# Up to date when OUT.wasm is newer than every input.
if [ -f "$out" ]; then
  stale=$(find "$here"/*.js "$here"/build.mjs "$here"/package-lock.json "$wit" -newer "$out" -print -quit)
  if [ -z "$stale" ]; then
    echo "$out is up to date"
    exit 0
  fi
fi

node "$here/build.mjs" "$out"
