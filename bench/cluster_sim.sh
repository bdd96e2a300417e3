#!/bin/sh
# Cluster mode at scale, simulated: a three-member etcd on this machine,
# NODES simulated members (1,000) keeping leases alive and reporting their
# load as kvzd does (keepalive every second per node is what kvzd does; the
# simulator keeps TTL/3 to fit 2 cores, and says so), GUESTS guest records
# (10,000, all HA), and one real kvzd joined to the cluster, which is the HA
# manager. It measures: etcd writes per second sustained by the simulated
# members; kvzd's API latency for the cluster-wide list (kvz list --all) and
# the members' list (kvz node list); the time from a node's last keepalive
# until its lease is gone (dead-node detection), and from then until the
# HA manager has reassigned its guests (decision time). Prints the figures
# and a linear extrapolation to 10,000 nodes.
# Usage: bench/cluster_sim.sh [NODES] [GUESTS]   (env: BUILD_DIR, default build)
set -eu
. "$(dirname "$0")/lib.sh"
bench_need_tool etcd "Debian package etcd-server"
export NODES=${1:-1000} GUESTS=${2:-10000}
exec /usr/bin/python3 "$here/bench/cluster_sim.py"
