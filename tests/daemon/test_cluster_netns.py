"""Cluster mode with links that really fail (issue 17): three nodes, each
in a network namespace of its own with its kvzd, state directory and a
member of a three-member etcd, joined by veth pairs to a bridge
(netns_harness.Net). A node is killed by SIGKILL of its kvzd AND cutting
its link; a partition is its link cut while everything on it runs on, so
fencing is tested against a node that is alive, sure of nothing, and
unreachable. Guests are containers played by the stand-in supervisor,
whose fake-ha-disk command takes a lock on a shared directory (its "disk")
and writes a counter line there every 100 ms naming its node: a guest
that ran on two nodes at once would show as lines going back and forth.

Runs in order (-x): each step needs the cluster the earlier ones left."""
import os
import signal
import time

import pytest

from cluster_harness import cluster_guest, counter_runs, init, join, members, netns_nodes, start_node
from etcd_harness import ETCD
from kvzd_harness import FAKE
from netns_harness import why_not

TOKEN = "netns-cluster-token-0123456789abcdef"
TTL = 10  # lease TTL: a silent node is down after it; it fences at TTL/2.
# Not 6: under a loaded CI run, an etcd leader election plus the client's
# fail-over once took longer than 3 s, and a node fenced itself.

pytestmark = [
    pytest.mark.skipif(not ETCD, reason="etcd is not installed (Debian package etcd-server)"),
    pytest.mark.skipif(not os.path.exists(FAKE), reason="stand-in supervisor not built: " + FAKE),
]


@pytest.fixture(scope="module")
def cl():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    yield from netns_nodes(TOKEN, TTL)


def endpoints(c, own):
    """Every etcd member, the node's own first."""
    return ",".join([c.etcd.urls[own]] + [u for j, u in enumerate(c.etcd.urls) if j != own])


def runs(c, name):
    return counter_runs(c, os.path.join(c.shared, name, "counter"))


def ha_guest(c, d, name):
    """Creates, starts and marks HA a guest on node d whose disk is
    c.shared/name."""
    os.makedirs(os.path.join(c.shared, name), exist_ok=True)
    st, g = d.api("POST", "/v1/guests", {"name": name, "type": "ct", "template": "busybox",
                                         "autostart": True,
                                         "command": ["fake-ha-disk", c.shared + "/" + name, name]})
    assert st == 201, g
    d.kvz("start", name)
    d.kvz("set", name, "--ha")
    d.wait_for(lambda: runs(c, name) and runs(c, name)[-1][1] > 3, 10, name + " writing")


def moved_away(c, d, name, old):
    g = cluster_guest(d, name) or {}
    return g.get("owner") not in (None, old) and g.get("state") == "running"


def test_members_over_the_network(cl):
    n1, n2, n3 = cl.nodes
    init(cl, 0, endpoints(cl, 0))
    join(cl, 1, endpoints(cl, 1))
    join(cl, 2, endpoints(cl, 2))
    n1.wait_for(lambda: len(members(n1)) == 3
                and all(m["state"] == "up" for m in members(n1).values()), 20, "three members up")
    # Peers reach each other at their namespace's address, not loopback.
    assert members(n2)["n1"]["url"] == "http://%s:7000" % cl.hosts[0]
    st = n3.kvz_json("cluster", "status")
    assert [e["healthy"] for e in st["etcd"]] == [True] * 3


def test_create_on_1_list_and_stop_from_2(cl):
    n1, n2, n3 = cl.nodes
    ha_guest(cl, n1, "web")
    assert cluster_guest(n2, "web")["owner"] == "n1"
    assert "web" in n2.kvz("list", "--all").stdout
    n2.kvz("stop", "web")  # forwarded over the bridge to n1
    assert n1.guest("web")["state"] == "stopped"
    n2.kvz("start", "web")
    assert n1.guest("web")["state"] == "running"
    n2.wait_for(lambda: runs(cl, "web")[-1][1] > 3, 10, "web writing again")


def test_node_killed_and_cut_ha_guest_moves_once(cl):
    n1, n2, n3 = cl.nodes
    t0 = time.time()
    n1.kill9()
    cl.net.cut(0)
    n2.wait_for(lambda: moved_away(cl, n2, "web", "n1"), 30, "web running elsewhere")
    moved = time.time() - t0
    owner = cluster_guest(n2, "web")["owner"]
    n2.wait_for(lambda: runs(cl, "web")[-1][0] == owner and runs(cl, "web")[-1][1] > 3, 10,
                "web writing on " + owner)
    print("HA guest running on %s %.1f s after n1 was killed and cut off" % (owner, moved))
    assert moved < 30
    # Two runs, one per node, never back and forth; the new copy took the
    # disk lock (fake-ha-disk refuses to start while another holds it).
    assert [r[0] for r in runs(cl, "web")] == ["n1", owner]
    assert "kvzd is gone: killing HA guest supervisor" in n1.read_log()
    assert members(n2)["n1"]["state"] == "down"


def test_node_back_does_not_restart(cl):
    n1, n2, n3 = cl.nodes
    owner = cluster_guest(n2, "web")["owner"]
    cl.net.mend(0)
    start_node(cl, 0)
    n2.wait_for(lambda: members(n2)["n1"]["state"] == "up", 20, "n1 back up")
    time.sleep(3)
    assert cluster_guest(n1, "web")["owner"] == owner
    assert [r[0] for r in runs(cl, "web")] == ["n1", owner]
    # web autostarts: n1 asked the cluster at its start and was refused.
    assert "web belongs to node %s" % owner in n1.read_log()


def test_etcd_leader_killed_cluster_carries_on(cl):
    n1, n2, n3 = cl.nodes
    cl.etcd.wait_healthy()
    victim = cl.etcd.leader_index()
    lines = sum(r[1] for r in runs(cl, "web"))
    logs = [len(d.read_log()) for d in cl.nodes]
    cl.etcd.kill(victim)
    try:
        n2.wait_for(lambda: cl.etcd.leader_index() not in (None, victim), 15, "a new etcd leader")
        # The node whose own member died fails over to the others.
        st, g = cl.nodes[victim].api("POST", "/v1/guests", {"name": "after", "type": "ct",
                                                            "template": "busybox"})
        assert st == 201, g
        assert cluster_guest(cl.nodes[(victim + 1) % 3], "after")["owner"] == "n%d" % (victim + 1)
        time.sleep(TTL)
        # Nobody was fenced or declared down; the HA guest ran on where it was.
        assert all(m["state"] == "up" for m in members(n3).values())
        assert len(runs(cl, "web")) == 2 and sum(r[1] for r in runs(cl, "web")) > lines + 20
        for d, start in zip(cl.nodes, logs):
            assert "killing HA guest supervisor" not in d.read_log()[start:]
    finally:
        cl.etcd.start_member(victim)
    cl.etcd.wait_healthy()


def test_partitioned_node_fences_itself(cl):
    n1, n2, n3 = cl.nodes
    ha_guest(cl, n3, "db")
    t0 = time.time()
    cl.net.cut(2)
    try:
        n3.wait_for(lambda: "no news of the lease: killing HA guest supervisor" in n3.read_log(),
                    TTL + 5, "n3 fencing itself")
        fenced = time.time() - t0
        # n3 stopped writing before anyone else could start db: the lease
        # outlives the fencing by TTL/2.
        n1.wait_for(lambda: moved_away(cl, n1, "db", "n3"), 30, "db moved")
        moved = time.time() - t0
        owner = cluster_guest(n1, "db")["owner"]
        n1.wait_for(lambda: runs(cl, "db")[-1][0] == owner and runs(cl, "db")[-1][1] > 3, 10,
                    "db writing on " + owner)
        print("n3 fenced itself %.1f s after its link was cut; db running on %s after %.1f s"
              % (fenced, owner, moved))
        assert fenced < TTL < moved
        assert [r[0] for r in runs(cl, "db")] == ["n3", owner]
        # Still alive and cut off: n3's kvzd runs on, sure of nothing.
        assert n3.proc.poll() is None
    finally:
        cl.net.mend(2)
    n1.wait_for(lambda: members(n1)["n3"]["state"] == "up", 20, "n3 back")
    time.sleep(2)
    # Back with its lease renewed, n3 does not start db again.
    assert [r[0] for r in runs(cl, "db")] == ["n3", owner]
    assert cluster_guest(n3, "db")["owner"] == owner
    st = n3.kvz_json("cluster", "status")
    assert st["member"] and [e["healthy"] for e in st["etcd"]] == [True] * 3
