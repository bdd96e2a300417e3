"""Policies and events in cluster mode (issue 17): three kvzd and a
three-member etcd on loopback, as in test_cluster.py. The rules live in
etcd and run on the leader only (the HA manager); events are copied to
etcd by every member and read back cluster-wide.

Runs in order (-x): a later step needs the earlier ones' cluster."""
import json
import os
import signal
import socket
import time

import pytest

from cluster_harness import init, join, node_token, tcp_call, three_nodes, token_file
from etcd_harness import ETCD
from kvzd_harness import FAKE, fake_kvzd, free_port

TOKEN = "cluster-policy-token-0123456789abc"
TTL = 6

pytestmark = [
    pytest.mark.skipif(not ETCD, reason="etcd is not installed (Debian package etcd-server)"),
    pytest.mark.skipif(not os.path.exists(FAKE), reason="stand-in supervisor not built: " + FAKE),
]

# Fires once per evaluator: host CPU is above 0, and the rule rearms only
# below 0. So each node that ever evaluated it leaves exactly one record.
ONCE = {"name": "once", "level": "automatic", "trigger": {"metric": "host_cpu_pct", "above": 0, "for_s": 1},
        "action": {"type": "notify", "message": "evaluated here"}}
# Acts on a guest that lives on another node than the leader.
REVIVE = {"name": "revive", "level": "automatic", "trigger": {"event": "crashed"}, "conditions": {"guests": ["app"]},
          "action": {"type": "restart", "backoff_s": 1},
          "limits": {"guest_cooldown_s": 0, "max_per_period": 5, "period_s": 3600}}


@pytest.fixture(scope="module")
def cl():
    yield from three_nodes(TOKEN, TTL)


def node(c, name):
    return c.nodes[int(name[1:]) - 1]


def leader(c, via):
    return via.kvz_json("cluster", "status")["ha_manager"]


def all_events(d, guest=None):
    st, ev = d.api("GET", "/v1/events?all=1&limit=10000" + ("&guest=" + guest if guest else ""))
    assert st == 200, ev
    return ev


def evaluated(d):
    """Nodes that recorded the ONCE rule's notification, one entry each time."""
    return [e["node"] for e in all_events(d)
            if e["guest"] == "@host" and e["type"] == "policy-notify" and e.get("detail") == "evaluated here"]


def tcp(c, i, method, path, body=None, token=None):
    """A request on node i's TCP API; token "own": node i's token."""
    return tcp_call(c.ports[i], method, path, body, node_token(c, i) if token == "own" else token)


def test_join(cl):
    n1, n2, n3 = cl.nodes
    urls = ",".join(cl.etcd.urls)
    init(cl, 0, urls)
    join(cl, 1, urls)
    join(cl, 2, urls)
    n1.wait_for(lambda: len([m for m in n1.kvz_json("node", "list")
                             if m.get("cluster") and m["state"] == "up"]) == 3, 20,
                "three members up")


def test_rule_added_on_2_is_listed_on_1_and_3(cl):
    n1, n2, n3 = cl.nodes
    st, out = n2.api("POST", "/v1/policies", ONCE)
    assert st == 201, out
    for d in (n1, n3):
        names = [p["name"] for p in d.kvz_json("policy", "list")]
        assert names == ["once"], names
        assert "once" in d.kvz("policy", "list").stdout
    # The same rule, not a copy per node: disabling it on 3 shows on 1.
    n3.kvz("policy", "disable", "once")
    assert not n1.kvz_json("policy", "show", "once")["enabled"]
    n1.kvz("policy", "enable", "once")
    assert n2.kvz_json("policy", "show", "once")["enabled"]
    # A name is taken cluster-wide.
    st, err = n3.api("POST", "/v1/policies", ONCE)
    assert st == 409 and "exists" in err["error"]["message"], err
    # Conflicts are checked against the cluster's rules: a rule stopping
    # what REVIVE restarts is refused on another node than REVIVE's.
    st, out = n1.api("POST", "/v1/policies", REVIVE)
    assert st == 201, out
    stop = dict(REVIVE, name="kill", action={"type": "stop"})
    st, err = n3.api("POST", "/v1/policies", stop)
    assert st == 409, err


def test_exactly_one_node_evaluates(cl):
    n1 = cl.nodes[0]
    lead = leader(cl, n1)
    n1.wait_for(lambda: evaluated(n1), 20, "the rule evaluated")
    time.sleep(4)  # room for a second or third node to do it too
    assert evaluated(n1) == [lead], evaluated(n1)
    # The decision is in the leader's own log and event table, nowhere else.
    for i, d in enumerate(cl.nodes):
        st, local = d.api("GET", "/v1/events?limit=10000")
        mine = [e for e in local if e["type"] == "policy-notify" and e["guest"] == "@host"]
        assert len(mine) == (1 if "n%d" % (i + 1) == lead else 0), (i, mine)


def test_rule_acts_on_a_guest_of_another_node(cl):
    """A crash on a follower reaches the leader through the cluster's
    events, and its restart is carried out by the guest's own node."""
    lead = leader(cl, cl.nodes[0])
    other = next(d for i, d in enumerate(cl.nodes) if "n%d" % (i + 1) != lead)
    st, g = other.api("POST", "/v1/guests", {"name": "app", "type": "ct", "template": "busybox"})
    assert st == 201, g
    other.kvz("start", "app")
    pid = other.guest("app")["pid"]
    os.kill(pid, signal.SIGKILL)
    other.wait_for(lambda: other.running_again("app", pid), 20, "app restarted by the rule")
    # Copies reach etcd within a second or so of the event: the owner's
    # policy-act, then the leader's record of the decision.
    def both():
        ev = all_events(other, "app")
        types = {e["type"] for e in ev}
        return ev if {"policy-act", "policy"} <= types else None
    ev = other.wait_for(both, 5, "policy-act and policy copied")
    acts = [e for e in ev if e["type"] == "policy-act"]
    assert acts and acts[-1]["node"] != lead and "revive restart" in acts[-1]["detail"], ev
    decisions = [e for e in ev if e["type"] == "policy" and "revive" in (e.get("detail") or "")]
    assert decisions and {e["node"] for e in decisions} == {lead}, decisions


def test_metric_rule_on_a_guest_of_another_node(cl):
    """A metric trigger on a guest that runs on a follower: its node
    publishes the guest's metrics, the leader evaluates them (the stand-in
    reports a disk 5 MiB used of 64: 7.8%)."""
    lead = leader(cl, cl.nodes[0])
    ld = node(cl, lead)
    owner = {g["name"]: g for g in ld.kvz_json("list", "--all")}["app"]["owner"]
    assert owner != lead
    rule = {"name": "full", "level": "automatic",
            "trigger": {"metric": "disk_pct", "above": 5, "for_s": 2},
            "conditions": {"guests": ["app"]},
            "action": {"type": "notify", "message": "app's disk"}}
    st, out = node(cl, owner).api("POST", "/v1/policies", rule)
    assert st == 201, out
    try:
        def decided():
            st, log = ld.api("GET", "/v1/policies/log")
            return [r for r in log if r["rule"] == "full" and r["guest"] == "app"]
        done = ld.wait_for(decided, 20, "the leader deciding on app's disk")
        assert "disk_pct" in done[0]["reason"], done
        # The leader's own monitor has no sample of app: the value came
        # from the owner's record in etcd, which holds app's metrics.
        st, local = ld.api("GET", "/v1/guests")
        assert "app" not in [g["name"] for g in local]
        vals = [v for v in etcd_values(cl, "/kvz/metrics/" + owner)]
        assert len(vals) == 1 and 7 < json.loads(vals[0])["guests"]["app"]["disk_pct"] < 8.5
        # The record lives on the owner's lease, like its alive key.
        assert etcd_lease_of(cl, "/kvz/metrics/" + owner) == etcd_lease_of(cl, "/kvz/alive/" + owner)
        # Nobody else decided it.
        for d in cl.nodes:
            if d is not ld:
                st, log = d.api("GET", "/v1/policies/log")
                assert not [r for r in log if r["rule"] == "full"], log
    finally:
        ld.kvz("policy", "remove", "full")


def etcd_range(cl, key):
    import base64
    import urllib.request
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()})
    req = urllib.request.Request(cl.etcd.urls[0] + "/v3/kv/range", data=body.encode())
    return json.loads(urllib.request.urlopen(req, timeout=5).read()).get("kvs", [])


def etcd_values(cl, key):
    import base64
    return [base64.b64decode(kv.get("value", "")).decode() for kv in etcd_range(cl, key)]


def etcd_lease_of(cl, key):
    kvs = etcd_range(cl, key)
    return kvs[0].get("lease") if kvs else None


def test_events_cluster_wide_with_node_names(cl):
    n1, n2, n3 = cl.nodes
    ev = n2.kvz_json("events", "--all", "--limit", "10000")
    nodes = {e["node"] for e in ev}
    assert {"n1", "n2", "n3"} <= nodes, nodes
    joins = {e["node"] for e in ev if e["type"] == "cluster-join"}
    assert len(joins) >= 2, ev
    ids = [e["id"] for e in ev]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    out = n3.kvz("events", "--all").stdout
    assert out.splitlines()[0].split()[0] == "NODE" and "\nn1 " in out and "\nn2 " in out
    # since= is a cluster-wide id: nothing older comes back.
    st, later = n1.api("GET", "/v1/events?all=1&since=%d" % ids[-2])
    assert st == 200 and later and all(e["id"] > ids[-2] for e in later), later
    st, err = n1.api("GET", "/v1/events?all=maybe")
    assert st == 400


def test_event_stream_all(cl):
    """The stream with all=1 on node 1 carries an event of node 3, named."""
    n1, n3 = cl.nodes[0], cl.nodes[2]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(15)
    s.connect(n1.socket)
    s.sendall(b"GET /v1/events/stream?all=1 HTTP/1.0\r\nHost: kvzd\r\n\r\n")
    f = s.makefile("rb")
    try:
        assert b" 200 " in f.readline()
        st, g = n3.api("POST", "/v1/guests", {"name": "ev1", "type": "ct", "template": "busybox"})
        assert st == 201, g
        deadline = time.time() + 10
        while time.time() < deadline:
            line = f.readline().decode()
            if line.startswith("data: {") and '"guest":"ev1"' in line:
                ev = json.loads(line[6:])
                assert ev["node"] == "n3" and ev["type"] == "created", ev
                break
        else:
            raise AssertionError("no event of node 3 in node 1's stream")
    finally:
        f.close()
        s.close()
    st, err = n1.api("GET", "/v1/events/stream?all=2")
    assert st == 400


def etcd_ranges(cl):
    """Ranges etcd's members have served so far (their /metrics)."""
    import urllib.request
    n = 0
    for url in cl.etcd.urls:
        text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
        n += sum(int(float(l.split()[1])) for l in text.splitlines()
                 if l.startswith("etcd_mvcc_range_total "))
    return n


def ranges_per_s(cl, secs=4):
    a = etcd_ranges(cl)
    time.sleep(secs)
    return (etcd_ranges(cl) - a) / secs


def test_event_streams_all_watch_not_poll(cl):
    """all=1 streams wait on the member's etcd watch of the events: a dozen
    idle ones add next to no ranges (polling would add one a second each),
    and an event written on node 3 still reaches every one of them."""
    n1, n3 = cl.nodes[0], cl.nodes[2]
    assert n1.kvz_json("cluster", "status")["events_watch"]
    base = ranges_per_s(cl)
    socks = []
    try:
        for _ in range(12):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(15)
            s.connect(n1.socket)
            s.sendall(b"GET /v1/events/stream?all=1 HTTP/1.0\r\nHost: kvzd\r\n\r\n")
            f = s.makefile("rb")
            assert b" 200 " in f.readline()
            socks.append((s, f))
        time.sleep(1)
        busy = ranges_per_s(cl)
        print("etcd ranges/s: %.1f without streams, %.1f with 12 idle all=1 streams" % (base, busy))
        assert busy - base < 6, (base, busy)
        st, g = n3.api("POST", "/v1/guests", {"name": "ev2", "type": "ct", "template": "busybox"})
        assert st == 201, g
        for s, f in socks:
            deadline = time.time() + 10
            while time.time() < deadline:
                line = f.readline().decode()
                if line.startswith("data: {") and '"guest":"ev2"' in line:
                    break
            else:
                raise AssertionError("an all=1 stream missed node 3's event")
    finally:
        for s, f in socks:
            f.close()
            s.close()


def test_leader_killed_evaluation_moves(cl):
    """The leader holds an HA guest and runs the rules; SIGKILL of its kvzd
    moves both: the guest's history then spans two nodes."""
    lead = leader(cl, cl.nodes[0])
    ld = node(cl, lead)
    st, g = ld.api("POST", "/v1/guests", {"name": "web", "type": "ct", "template": "busybox",
                                          "command": ["fake-ha-disk", cl.shared, "web"]})
    assert st == 201, g
    ld.kvz("start", "web")
    ld.kvz("set", "web", "--ha")
    time.sleep(1.5)  # the start's events copied to etcd
    t0 = time.time()
    ld.kill9()
    survivor = next(d for d in cl.nodes if d is not ld)
    survivor.wait_for(lambda: len(evaluated(survivor)) == 2, TTL + 10,
                      "the rule evaluated on a new leader")
    moved = time.time() - t0
    first, second = evaluated(survivor)
    new = leader(cl, survivor)
    assert first == lead and second == new and new != lead
    print("rule evaluated on %s %.1f s after SIGKILL of leader %s's kvzd" % (new, moved, lead))
    assert moved < TTL + 5
    # The HA guest moved too; its history on any node shows both nodes.
    survivor.wait_for(lambda: {g["name"]: g for g in survivor.kvz_json("list", "--all")}
                      ["web"]["owner"] != lead, 30, "web moved")
    survivor.wait_for(lambda: "ha-started" in [e["type"] for e in survivor.events("web")], 10,
                      "the new owner's ha-started copied")
    owner = {g["name"]: g for g in survivor.kvz_json("list", "--all")}["web"]["owner"]
    for d in cl.nodes:
        if d is ld:
            continue
        hist = d.events("web")
        # Plus the HA manager's ha-relocate when it is a third node.
        assert {e["node"] for e in hist} >= {lead, owner}, hist
        assert "ha-relocate" in [e["type"] for e in hist if e["node"] == new], hist
        assert "started" in [e["type"] for e in hist if e["node"] == lead], hist
        assert "ha-started" in [e["type"] for e in hist if e["node"] == owner], hist
    # Rules outlive their leader: listed the same on every live node.
    for d in cl.nodes:
        if d is not ld:
            assert [p["name"] for p in d.kvz_json("policy", "list")] == ["once", "revive"]


def test_attacks(cl):
    """No token, a wrong token, a non-member: no rule is added, no action
    run; the act route takes only stored rules, only for guests owned
    here, never a command/notify/webhook."""
    live = [i for i, d in enumerate(cl.nodes) if d.proc and d.proc.poll() is None]
    rule = dict(ONCE, name="evil")
    for i in live:
        for token in (None, "wrong-token-0123456789abcdef0123"):
            st, _ = tcp(cl, i, "POST", "/v1/policies", rule, token)
            assert st == 401, (i, token)
            st, _ = tcp(cl, i, "POST", "/v1/policies/once/act",
                        {"guest": "app", "reason": "x"}, token)
            assert st == 401
            st, _ = tcp(cl, i, "DELETE", "/v1/policies/once", None, token)
            assert st == 401
    d = cl.nodes[live[0]]
    assert [p["name"] for p in d.kvz_json("policy", "list")] == ["once", "revive"]
    # With the token: command rules are refused over TCP (they would run as
    # kvzd's user on the leader), and act refuses what is not a stored
    # guest action on a guest of this node.
    cmd = {"name": "cmd", "trigger": {"event": "crashed"},
           "action": {"type": "command", "argv": ["/bin/true"]}}
    st, _ = tcp(cl, live[0], "POST", "/v1/policies", cmd, "own")
    assert st == 403
    st, _ = tcp(cl, live[0], "POST", "/v1/policies/nosuch/act", {"guest": "app", "reason": "x"},
                "own")
    assert st == 404
    st, _ = tcp(cl, live[0], "POST", "/v1/policies/once/act", {"guest": "app", "reason": "x"},
                "own")
    assert st == 400  # notify runs on the leader, not on request
    for body in ({"guest": "../x", "reason": "x"}, {"guest": "app"}, [], {"guest": 5}):
        st, _ = tcp(cl, live[0], "POST", "/v1/policies/revive/act", body, "own")
        assert st == 400, body
    owner = {g["name"]: g for g in d.kvz_json("list", "--all")}["app"]["owner"]
    elsewhere = next(i for i in live if "n%d" % (i + 1) != owner)
    st, text = tcp(cl, elsewhere, "POST", "/v1/policies/revive/act",
                   {"guest": "app", "reason": "x"}, "own")
    assert st == 409 and owner in text, text
    # A kvzd that is no member, with the same token: act means nothing there.
    lone = fake_kvzd()
    try:
        port = free_port()
        lone.start(["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(lone, TOKEN),
                    "--node-name", "lone"])
        st, _ = tcp_call(port, "POST", "/v1/policies/revive/act", {"guest": "app", "reason": "x"},
                         TOKEN)
        assert st == 404
        assert lone.kvz_json("policy", "list") == []
    finally:
        lone.cleanup()
