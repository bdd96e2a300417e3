#!/bin/bash
# The policy engine's cost: kvzd's CPU with 200 running guests (stand-in
# supervisors) without rules and with 100 rules evaluated every second, in
# one run; prints both, the difference against the 2%-of-a-core budget and
# the ratio. GUESTS, RULES, SECONDS_EACH change the sizes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_need_built "$BUILD_DIR/src/daemon/kvzd"
exec /usr/bin/python3 "$here/bench/policy_eval.py"
