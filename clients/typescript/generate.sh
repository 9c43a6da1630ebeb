#!/usr/bin/env bash
# Regenerates the types from the API's OpenAPI document (../openapi.json)
# into DEST (default: src/generated, in place). Deterministic: the same
# document gives byte-identical files, so a drift check is
#   ./generate.sh "$tmp" && diff -r "$tmp" src/generated
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# DEST is taken relative to the caller's directory.
dest="${1:-$here/src/generated}"
case "$dest" in /*) ;; *) dest="$PWD/$dest" ;; esac
cd "$here"

# Install the pinned tools when node_modules is missing or older than the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >&2
fi

mkdir -p "$dest"
node scripts/generate.mjs ../openapi.json "$dest/schema.ts"
