#!/bin/bash
# Builds the web UI: `npm ci` from web/package-lock.json when node_modules is
# missing or older than the lock file, then esbuild (web/build.mjs) into OUT.
# Run by meson (web/meson.build) at `make` time; nothing is fetched at run time.
set -eu
src=$1
out=$2
cd "$src"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm ci --no-audit --no-fund --loglevel=error >&2
	touch node_modules/.package-lock.json
fi
exec node build.mjs "$out"
