# What every bench/*.sh starts with; sourced after `set -eu`:
#   . "$(dirname "$0")/lib.sh"
# Sets BENCH (the script's name, for error lines), here (the source tree)
# and BUILD_DIR (env BUILD_DIR, default build; a relative one is read from
# the source tree), and exports the last two as KVZ_SOURCE_DIR and
# KVZ_BUILD_DIR for the Python parts (lab/kvzlab.py reads KVZ_BUILD_DIR),
# and puts lab/, tests/lab, tests/ct and bench/ on their PYTHONPATH.
BENCH=$(basename "$0" .sh)
here=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$here/$BUILD_DIR ;; esac
export KVZ_BUILD_DIR="$BUILD_DIR" KVZ_SOURCE_DIR="$here"
# The Python parts import kvzlab and the lab tests' helpers from these.
export PYTHONPATH="$here/lab:$here/tests/lab:$here/tests/ct:$here/bench${PYTHONPATH:+:$PYTHONPATH}"

# bench_fail WHY: one line on stderr, exit 1.
bench_fail() { echo "$BENCH: $*" >&2; exit 1; }

# bench_need_tool TOOL HOW: TOOL on PATH, or why not and how to install it.
bench_need_tool() { command -v "$1" >/dev/null || bench_fail "$1 is not installed ($2)"; }

# bench_need_built PATH...: each a built executable.
bench_need_built() { for p; do [ -x "$p" ] || bench_fail "$p not built"; done; }

# bench_ratio A B: A / B with two decimals; 0 when B is not above 0.
bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
