#!/bin/bash
# The policy engine's cost: kvzd's CPU with 200 running guests (stand-in
# supervisors) without rules and with 100 rules evaluated every second, in
# one run; prints both, the difference against the 2%-of-a-core budget and
# the ratio. GUESTS, RULES, SECONDS_EACH change the sizes.
set -euo pipefail
BUILD_DIR=${BUILD_DIR:-build}
[ -x "$BUILD_DIR/src/daemon/kvzd" ] || { echo "policy_eval: $BUILD_DIR/src/daemon/kvzd not built" >&2; exit 1; }
KVZ_BUILD_DIR=$(realpath "$BUILD_DIR") exec /usr/bin/python3 "$(dirname "$0")/policy_eval.py"
