"""Cluster mode (issue 17): three kvzd on this machine, each with its own
state directory and TCP port on loopback (not network namespaces: distinct
ports are enough for kvzd, and a "cut link" is played by SIGSTOP of the
only etcd member a node talks to), and a three-member etcd on loopback.
Guests are containers played by the stand-in supervisor; the HA guest's
command makes it hold a lock on a shared directory (its "disk") and write
a counter line there every 100 ms naming the node it runs on.

Runs in order (-x): a later step needs the earlier ones' cluster."""
import os
import shutil
import signal
import time

import pytest

from cluster_harness import cluster_guest, counter_runs, init, join, members, start_node, three_nodes
from cluster_harness import token_file as cluster_token_file
from etcd_harness import ETCD
from kvzd_harness import FAKE, fake_kvzd, free_port

TOKEN = "cluster-test-token-0123456789abcdef"
TTL = 6  # lease TTL: a silent node is down after it; it fences at TTL/2

pytestmark = [
    pytest.mark.skipif(not ETCD, reason="etcd is not installed (Debian package etcd-server)"),
    pytest.mark.skipif(not os.path.exists(FAKE), reason="stand-in supervisor not built: " + FAKE),
]


def token_file(d):
    return cluster_token_file(d, TOKEN)


@pytest.fixture(scope="module")
def cl():
    yield from three_nodes(TOKEN, TTL)


def all_eps(c, first):
    return ",".join([c.etcd.urls[first]] + [u for j, u in enumerate(c.etcd.urls) if j != first])


def counter_lines(c):
    path = os.path.join(c.shared, "counter")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.split() for l in f.read().splitlines() if len(l.split()) == 3]


def runs(c, tag):
    """The guest's counter lines as a list of (node, how many) runs, in order."""
    return counter_runs(c, os.path.join(c.shared, "counter"), tag)


def test_init_join_status(cl):
    n1, n2, n3 = cl.nodes
    # Node 3 talks only to its own etcd member: it is the one a partition cuts off.
    init(cl, 0, all_eps(cl, 0))
    join(cl, 1, all_eps(cl, 1))
    join(cl, 2, cl.etcd.urls[2])
    r = n2.kvz("cluster", "init", "--etcd", all_eps(cl, 1), check=False)
    assert r.returncode != 0 and "already" in r.stderr
    n1.wait_for(lambda: all(m["state"] == "up" for m in members(n1).values())
                and len(members(n1)) == 3, 20, "three members up")
    st = n2.kvz_json("cluster", "status")
    assert st["member"] and st["node"] == "n2"
    assert st["ha_manager"] in ("n1", "n2", "n3")
    assert [e["healthy"] for e in st["etcd"]] == [True] * 3
    assert sum(e["is_leader"] for e in st["etcd"]) == 1
    assert "lease" in n3.kvz("cluster", "status").stdout
    out = n3.kvz("node", "list").stdout
    assert "n1" in out and "n2" in out and "cluster member" in out


def test_create_on_1_list_and_stop_from_2(cl):
    n1, n2, n3 = cl.nodes
    st, g = n1.api("POST", "/v1/guests", {"name": "web", "type": "ct", "template": "busybox",
                                          "autostart": True,
                                          "command": ["fake-ha-disk", cl.shared, "web"]})
    assert st == 201, g
    # The name is the cluster's now: node 2 cannot create another "web".
    st, err = n2.api("POST", "/v1/guests", {"name": "web", "type": "ct", "template": "busybox"})
    assert st == 409 and "n1" in err["error"]["message"]
    n2.kvz("start", "web")  # forwarded to n1
    assert n1.guest("web")["state"] == "running"
    assert n2.guest("web")["state"] == "running"  # show from node 2, answered by n1
    g = cluster_guest(n3, "web")
    assert g["owner"] == "n1" and g["state"] == "running" and not g["ha"]
    assert "web" in n3.kvz("list", "--all").stdout
    n2.kvz("stop", "web")
    assert n1.guest("web")["state"] == "stopped"
    assert cluster_guest(n1, "web")["state"] == "stopped"
    # Node 2 has no local record of it: it was forwarded, not copied.
    assert n2.api("GET", "/v1/guests")[1] == []
    n3.kvz("start", "web")
    n3.kvz("set", "web", "--ha")
    assert cluster_guest(n2, "web")["ha"]
    n1.wait_for(lambda: runs(cl, "web") and runs(cl, "web")[-1][1] > 3, 10, "the guest writing")


def test_ha_vm_definition_follows_its_disks(cl):
    """An HA VM given a second disk (and more memory) after its create:
    the owner writes that into the record's definition, so that a
    relocation (next test) rebuilds it with both disks."""
    n1 = cl.nodes[0]
    kernel = os.path.join(cl.shared, "kernel")
    shutil.copy(n1.kernel, kernel)
    n1.kvz("create", "vm", "hv", "--kernel", kernel, "--memory", "64M", "--disk", "8M")
    n1.kvz("set", "hv", "--add-disk", "4M")
    n1.kvz("set", "hv", "--memory", "96M")
    n1.kvz("set", "hv", "--ha")
    n1.kvz("start", "hv")
    n1.wait_for(lambda: cluster_guest(n1, "hv")["state"] == "running", 10, "hv running")


def test_node_killed_ha_guest_moves_never_twice(cl):
    n1, n2, n3 = cl.nodes
    t0 = time.time()
    n1.kill9()
    n2.wait_for(lambda: (cluster_guest(n2, "web") or {}).get("owner") != "n1"
                and cluster_guest(n2, "web")["state"] == "running", 30, "web running elsewhere")
    moved = time.time() - t0
    n2.wait_for(lambda: runs(cl, "web")[-1][0] != "n1" and runs(cl, "web")[-1][1] > 3, 10,
                "the counter going on on the new node")
    r = runs(cl, "web")
    # One run on n1, then one on the new owner: never back and forth, and
    # the lock on the shared directory was free when it started there.
    assert [x[0] for x in r] == ["n1", cluster_guest(n2, "web")["owner"]], r
    assert moved < 30
    print("HA guest running on %s %.1f s after SIGKILL of n1's kvzd" % (r[-1][0], moved))
    # The watchdog killed n1's copy when kvzd died, before the lease ran out.
    assert "kvzd is gone: killing HA guest supervisor" in n1.read_log()
    ev = [e["type"] for e in (n2.events("web") + n3.events("web"))]
    assert "ha-started" in ev
    # n1 was the HA manager (it made the cluster): its key went with its
    # lease, and the next manager found the dead lease by looking.
    assert n2.kvz_json("cluster", "status")["ha_manager"] in ("n2", "n3")


def test_relocated_vm_keeps_its_added_disk(cl):
    n2 = cl.nodes[1]
    n2.wait_for(lambda: (cluster_guest(n2, "hv") or {}).get("owner") not in (None, "n1")
                and cluster_guest(n2, "hv")["state"] == "running", 30, "hv running elsewhere")
    owner = cl.nodes[int(cluster_guest(n2, "hv")["owner"][1]) - 1]
    cfg = owner.guest("hv")["config"]
    assert [x["size"] for x in cfg["disks"]] == [8 << 20, 4 << 20], cfg
    assert cfg["memory"] == 96 << 20, cfg
    assert [x["path"] for x in cfg["disks"]] == [os.path.join(owner.state, "images", f)
                                                 for f in ("hv.img", "hv@1.img")], cfg
    # Gone again: the next steps count web's records only.
    owner.kvz("set", "hv", "--no-ha")
    owner.kvz("stop", "hv", "--force")
    owner.kvz("destroy", "hv")
    assert cluster_guest(n2, "hv") is None


def test_node_back_does_not_restart(cl):
    n1, n2, n3 = cl.nodes
    owner = cluster_guest(n2, "web")["owner"]
    start_node(cl, 0)
    n1.wait_for(lambda: members(n2)["n1"]["state"] == "up", 20, "n1 back up")
    time.sleep(3)
    assert cluster_guest(n1, "web")["owner"] == owner
    assert [x[0] for x in runs(cl, "web")] == ["n1", owner]
    # The owner index moved with the record, in the same transaction.
    assert etcd_keys(cl, "/kvz/owned/") == ["/kvz/owned/%s/web" % owner]
    local = {g["name"]: g for g in n1.api("GET", "/v1/guests")[1]}
    assert local["web"]["state"] != "running"
    # web is an autostart guest: n1's autostart asked the cluster and was
    # refused (every start does, policies' too).
    assert "web belongs to node %s" % owner in n1.read_log()
    # n1's own start of it is forwarded to the owner, where it runs already.
    assert n1.guest("web")["state"] == "running"


def test_etcd_leader_killed_cluster_carries_on(cl):
    n1, n2, n3 = cl.nodes
    # Node 3 has only etcd member 3; make sure the victim is another one.
    if cl.etcd.leader_index() == 2:
        cl.etcd.move_leader(0)
    victim = cl.etcd.leader_index()
    assert victim in (0, 1)
    before = len(counter_lines(cl))
    cl.etcd.kill(victim)
    # A new leader, and the cluster takes writes and reads from every node.
    n2.wait_for(lambda: cl.etcd.leader_index() not in (None, victim), 15, "a new etcd leader")
    alive = n2 if victim == 0 else n1
    st, g = alive.api("POST", "/v1/guests", {"name": "after", "type": "ct", "template": "busybox"})
    assert st == 201, g
    assert cluster_guest(n3, "after")["owner"] == alive.kvz_json("cluster", "status")["node"]
    time.sleep(TTL)
    # Nobody was fenced or declared down, and the HA guest ran on.
    assert all(m["state"] == "up" for m in members(n3).values())
    assert len(runs(cl, "web")) == 2 and len(counter_lines(cl)) > before + 20
    cl.etcd.start_member(victim)
    cl.etcd.wait_healthy()


def test_minority_node_fences_itself(cl):
    n1, n2, n3 = cl.nodes
    st, g = n3.api("POST", "/v1/guests", {"name": "db", "type": "ct", "template": "busybox",
                                          "command": ["fake-ha-disk", cl.shared + "/db", "db"]})
    os.makedirs(cl.shared + "/db", exist_ok=True)
    assert st == 201, g
    n3.kvz("start", "db")
    n3.kvz("set", "db", "--ha")
    n3.wait_for(lambda: counter_db(cl), 10, "db writing")
    if cl.etcd.leader_index() == 2:
        cl.etcd.move_leader(0)
    mgr = n1.kvz_json("cluster", "status")["ha_manager"]
    t0 = time.time()
    cl.etcd.kill(2, signal.SIGSTOP)  # n3's only way to etcd
    try:
        n3.wait_for(lambda: "no news of the lease: killing HA guest supervisor" in n3.read_log(),
                    TTL + 5, "n3 fencing itself")
        fenced = time.time() - t0
        n1.wait_for(lambda: (cluster_guest(n1, "db") or {}).get("owner") in ("n1", "n2")
                    and cluster_guest(n1, "db")["state"] == "running", 30, "db moved")
        moved = time.time() - t0
        n1.wait_for(lambda: len(db_runs(cl)) == 2 and db_runs(cl)[-1][1] > 3, 10, "db writing again")
        print("n3 fenced after %.1f s; db running on %s after %.1f s" % (fenced, db_runs(cl)[-1][0], moved))
        assert fenced < TTL
        assert [x[0] for x in db_runs(cl)][0] == "n3"
        if mgr != "n3":
            # A manager that outlived the lease heard of it through its watch.
            assert "n3's lease is gone" in cl.nodes[int(mgr[1]) - 1].read_log()
    finally:
        cl.etcd.kill(2, signal.SIGCONT)
    n1.wait_for(lambda: members(n1)["n3"]["state"] == "up", 20, "n3 back")
    time.sleep(2)
    assert [x[0] for x in db_runs(cl)] == ["n3", cluster_guest(n1, "db")["owner"]]


def counter_db(cl):
    return db_runs(cl)


def db_runs(cl):
    return counter_runs(cl, os.path.join(cl.shared, "db", "counter"))


def test_crashed_ha_guest_restarted_by_its_owner(cl):
    owner = cluster_guest(cl.nodes[0], "db")["owner"]
    d = cl.nodes[int(owner[1]) - 1]
    pid = d.guest("db")["pid"]
    before = len(db_runs(cl))
    os.kill(pid, signal.SIGKILL)
    d.wait_for(lambda: d.running_again("db", pid), 15,
               "db restarted")
    g = cluster_guest(d, "db")
    assert g["owner"] == owner and g["restarts"] == 1 and g["state"] == "running"
    # Still one run on the same node: nobody else started it.
    assert len(db_runs(cl)) == before and db_runs(cl)[-1][0] == owner


def test_leave_and_join_again(cl):
    # A node running HA guests may not leave: its lease would go and the
    # guests would be started elsewhere while they run here.
    owners = {cluster_guest(cl.nodes[0], g)["owner"] for g in ("web", "db")}
    busy = cl.nodes[int(sorted(owners)[0][1]) - 1]
    r = busy.kvz("cluster", "leave", check=False)
    assert r.returncode != 0 and "runs HA guests" in r.stderr
    assert busy.kvz_json("cluster", "status")["member"]
    free = [d for i, d in enumerate(cl.nodes) if "n%d" % (i + 1) not in owners][0]
    n1 = cl.nodes[0] if free is not cl.nodes[0] else cl.nodes[1]
    n2 = free
    n2.kvz("cluster", "leave")
    assert n2.kvz_json("cluster", "status") == {"member": False}
    assert not os.path.exists(os.path.join(n2.state, "cluster.json"))
    me = "n%d" % (cl.nodes.index(n2) + 1)
    n1.wait_for(lambda: me not in members(n1), 10, "the node gone from the members")
    assert me not in n2.kvz("node", "list").stdout
    r = n2.kvz("cluster", "leave", check=False)
    assert r.returncode != 0 and "not a cluster member" in r.stderr
    r = n2.kvz("list", "--all", check=False)
    assert r.returncode != 0 and "cluster mode" in r.stderr
    # Guests n2 owned stay its records; back in, they are its again.
    join(cl, cl.nodes.index(n2), cl.etcd.urls[cl.nodes.index(n2)])
    n1.wait_for(lambda: members(n1).get(me, {}).get("state") == "up", 15, "back in")
    assert os.path.exists(os.path.join(n2.state, "cluster.json"))


def etcd_keys(cl, prefix):
    import base64
    import json
    import urllib.request
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode(), "keys_only": True})
    req = urllib.request.Request(cl.etcd.urls[0] + "/v3/kv/range", data=body.encode())
    out = json.loads(urllib.request.urlopen(req, timeout=5).read())
    return sorted(base64.b64decode(kv["key"]).decode() for kv in out.get("kvs", []))


def etcd_values(cl, prefix):
    import base64
    import json
    import urllib.request
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"key": base64.b64encode(prefix.encode()).decode(),
                       "range_end": base64.b64encode(end.encode()).decode()})
    req = urllib.request.Request(cl.etcd.urls[0] + "/v3/kv/range", data=body.encode())
    out = json.loads(urllib.request.urlopen(req, timeout=5).read())
    return [base64.b64decode(kv.get("value", "")).decode(errors="replace") for kv in out.get("kvs", [])]


def etcd_put(cl, key, value):
    import base64
    import json
    import urllib.request
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(value.encode()).decode()}).encode()
    req = urllib.request.Request(cl.etcd.urls[0] + "/v3/kv/put", data=body)
    urllib.request.urlopen(req, timeout=5).read()


def test_attacks(cl):
    """Hostile input to cluster mode: bad etcd URLs, an "etcd" answering
    garbage, requests without the token, forged records in etcd."""
    import http.client
    import http.server
    import threading
    n1, n2, n3 = cl.nodes

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"<html>" + b"x" * (1 << 20))

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    lone = fake_kvzd()
    try:
        lone.start()
        st, err = lone.api("POST", "/v1/cluster/init", {"etcd": cl.etcd.urls[0]})
        assert st == 400 and "--listen" in err["error"]["message"]
        lone.terminate()
        port = free_port()
        lone.start(["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(lone),
                    "--node-name", "lone"])
        for bad in ["file:///etc/passwd", "gopher://127.0.0.1:70", "http://127.0.0.1:99999",
                    "http://127.0.0.1", "http://a b:1", "", ",", "http://x:1," * 9]:
            st, err = lone.api("POST", "/v1/cluster/init", {"etcd": bad})
            assert st == 400, (bad, err)
        for body in [None, [], {"etcd": 5}, {"etcd": None}]:
            st, err = lone.api("POST", "/v1/cluster/join", body)
            assert st == 400, (body, err)
        st, err = lone.api("POST", "/v1/cluster/init", {"etcd": "http://127.0.0.1:%d" % srv.server_port})
        assert st == 502 and "etcd" in err["error"]["message"]
        assert not os.path.exists(os.path.join(lone.state, "cluster.json"))
        assert lone.api("GET", "/v1/cluster")[1] == {"member": False}
        # A second cluster in the same etcd is refused; joining it is not.
        st, err = lone.api("POST", "/v1/cluster/init", {"etcd": cl.etcd.urls[0]})
        assert st == 409
    finally:
        lone.cleanup()
        srv.shutdown()
    # Over TCP without the token nothing cluster-wide happens.
    conn = http.client.HTTPConnection("127.0.0.1", cl.ports[1], timeout=5)
    conn.request("POST", "/v1/cluster/leave")
    assert conn.getresponse().status == 401
    conn.close()
    assert n2.kvz_json("cluster", "status")["member"]
    # Forged records: an owner whose URL is not http, a record that is not
    # JSON. Requests about them are answered here, never sent elsewhere.
    etcd_put(cl, "/kvz/members/ghost", '{"url": "file:///etc/passwd"}')
    etcd_put(cl, "/kvz/guests/evil", '{"owner": "ghost", "state": "running", "ha": true}')
    etcd_put(cl, "/kvz/guests/junk", "not json")
    st, err = n2.api("GET", "/v1/guests/evil")
    assert st == 502 and "address is unknown" in err["error"]["message"]
    st, err = n2.api("POST", "/v1/guests/evil/start")
    assert st == 502
    assert n2.api("GET", "/v1/guests/junk")[0] == 404
    names = [g["name"] for g in n2.kvz_json("list", "--all")]
    assert "evil" in names and "junk" not in names


def peer_request(port, method, path, secret, node="n1", body=None, ts=None, sign_body=None,
                 authz=None):
    """A request on a kvzd's TCP API signed as cluster peer node with
    secret (cluster_auth.c's format); sign_body: the body the MAC claims
    when it is not the one sent; authz: the header as given instead."""
    import hashlib
    import hmac
    import http.client
    import json
    data = json.dumps(body).encode() if body is not None else b""
    signed = json.dumps(sign_body).encode() if sign_body is not None else data
    ts = int(time.time() * 1000) if ts is None else ts
    sha = hashlib.sha256(signed).hexdigest()
    text = "kvz peer v1\n%s\n%d\n%s\n%s\n%s" % (node, ts, method, path.split("?")[0], sha)
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=data or None, headers={
        "Authorization": authz or "KvzPeer %s %d %s %s" % (node, ts, sha, mac),
        "Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    return r.status, text


def test_credentials(cl):
    """Members call each other with the cluster secret, not users' tokens:
    each node's token is its own, the secret stays in the state directory
    (0600) and out of etcd, and forged, stale, replayed-with-another-body
    or out-of-scope peer requests are refused."""
    from cluster_harness import node_token
    from kvzd_harness import tcp_request
    n1, n2, n3 = cl.nodes
    # Forwarding worked all along with three different tokens (the tests
    # above); a user's token is good on its own node only.
    assert tcp_request(cl.ports[1], "GET", "/v1/guests", None, node_token(cl, 1))[0] == 200
    assert tcp_request(cl.ports[1], "GET", "/v1/guests", None, node_token(cl, 0))[0] == 401
    assert tcp_request(cl.ports[0], "GET", "/v1/guests", None, node_token(cl, 2))[0] == 401
    with open(os.path.join(n1.state, "cluster.key")) as f:
        secret = f.read().strip()
    for d in cl.nodes:
        path = os.path.join(d.state, "cluster.key")
        assert os.stat(path).st_mode & 0o777 == 0o600
        with open(path) as f:
            assert f.read().strip() == secret
    assert not any(secret in v for v in etcd_values(cl, "/kvz/"))
    # A correctly signed request works (so the refusals below are about
    # what they change); web is another node's for at least one of them.
    port = cl.ports[1]
    st, text = peer_request(port, "GET", "/v1/guests/web", secret, "n3")
    assert st == 200 and '"web"' in text, text
    bad = [
        dict(secret="f" * 64),                                   # another cluster's secret
        dict(secret=secret, ts=int(time.time() * 1000) - 60000),  # stale
        dict(secret=secret, ts=int(time.time() * 1000) + 60000),  # from the future
        dict(secret=secret, node="../x"),
        dict(secret=secret, authz="KvzPeer n1 1 2 3"),
        dict(secret=secret, authz="KvzPeer " + "a" * 300),
        dict(secret=secret, authz="KvzPeer"),
        dict(secret=secret, authz="Bearer " + secret),           # the secret is no token
    ]
    for b in bad:
        st, text = peer_request(port, "GET", "/v1/guests/web", **b)
        assert st == 401, (b, text)
    # The body is signed: a captured request does not carry another body.
    st, text = peer_request(port, "POST", "/v1/policies/revive/act", secret, "n3",
                            body={"guest": "web", "reason": "evil"},
                            sign_body={"guest": "web", "reason": "x"})
    assert st == 401, text
    # A peer may ask a guest's owner and a policy action, nothing else.
    for method, path in [("POST", "/v1/cluster/leave"), ("GET", "/v1/cluster"),
                         ("POST", "/v1/policies"), ("DELETE", "/v1/policies/x"),
                         ("GET", "/v1/guests"), ("POST", "/v1/guests"), ("GET", "/v1/host"),
                         ("GET", "/v1/policies/x/act"), ("POST", "/v1/policies//act")]:
        st, text = peer_request(port, method, path, secret, "n3",
                                body={} if method == "POST" else None)
        assert st == 403, (method, path, text)
    assert n2.kvz_json("cluster", "status")["member"]
    # Joining takes the secret: none, a malformed one or a wrong one is
    # refused and leaves nothing behind.
    lone = fake_kvzd()
    try:
        lport = free_port()
        lone.start(["--listen", "127.0.0.1:%d" % lport, "--token-file", token_file(lone),
                    "--node-name", "lone"])
        for body, want in [({"etcd": cl.etcd.urls[0]}, 400),
                           ({"etcd": cl.etcd.urls[0], "secret": "xyz"}, 400),
                           ({"etcd": cl.etcd.urls[0], "secret": secret.upper()}, 400),
                           ({"etcd": cl.etcd.urls[0], "secret": 5}, 400),
                           ({"etcd": cl.etcd.urls[0], "secret": "0" * 64}, 403)]:
            st, err = lone.api("POST", "/v1/cluster/join", body)
            assert st == want, (body, err)
        assert not os.path.exists(os.path.join(lone.state, "cluster.json"))
        assert not os.path.exists(os.path.join(lone.state, "cluster.key"))
        assert "lone" not in members(n1)
        # A node that is no member knows no secret: it takes no peer call.
        lone.api("POST", "/v1/guests", {"name": "solo", "type": "ct", "template": "busybox"})
        st, text = peer_request(lport, "GET", "/v1/guests/solo", secret, "n1")
        assert st == 401, text
    finally:
        lone.cleanup()


def lone_etcd(tmp, extra, scheme="http", ports=None):
    """A one-member etcd with extra options; (process, client URL).
    ports: (client, peer) to restart one on its data directory."""
    import subprocess
    port, peer = ports or (free_port(), free_port())
    url = "%s://127.0.0.1:%d" % (scheme, port)
    log = open(os.path.join(tmp, "etcd.log"), "a")
    p = subprocess.Popen([ETCD, "--name", "solo", "--data-dir", os.path.join(tmp, "data"),
                          "--listen-client-urls", url, "--advertise-client-urls", url,
                          "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
                          "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
                          "--initial-cluster", "solo=http://127.0.0.1:%d" % peer,
                          "--log-level", "warn"] + extra, stdout=log, stderr=log)
    log.close()
    return p, url


def wait_port(url, timeout=20):
    import socket
    port = int(url.rsplit(":", 1)[1])
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("etcd did not listen on " + url)


def secret_file(d, name, text):
    path = os.path.join(d.dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (text + "\n").encode())
    os.close(fd)
    return path


def test_etcd_tls_and_auth(tmp_path):
    """kvzd reaches an etcd that wants TLS client certificates, and one
    that wants a user and password; without them it is refused and says so."""
    import subprocess
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("openssl is not installed")
    t = str(tmp_path)

    def ssl(*args):
        subprocess.run([openssl] + list(args), check=True, capture_output=True, cwd=t)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=kvz-test-ca")
    with open(os.path.join(t, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    for who in ("server", "client"):
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", who + ".key", "-out", who + ".csr",
            "-subj", "/CN=" + who)
        ssl("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", who + ".pem", "-days", "2", "-extfile", "san.cnf")
    p = j = None
    d = fake_kvzd()
    try:
        os.mkdir(os.path.join(t, "tls"))
        p, url = lone_etcd(os.path.join(t, "tls"), [
            "--cert-file", os.path.join(t, "server.pem"), "--key-file", os.path.join(t, "server.key"),
            "--trusted-ca-file", os.path.join(t, "ca.pem"), "--client-cert-auth"], "https")
        wait_port(url)
        port = free_port()
        base = ["--listen", "127.0.0.1:%d" % port, "--token-file", token_file(d), "--node-name", "tls1"]
        d.start(base)
        st, err = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 502, err  # no CA given: the server's certificate is not trusted
        d.terminate()
        d.start(base + ["--etcd-cacert", os.path.join(t, "ca.pem")])
        st, err = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 502, err  # no client certificate
        d.terminate()
        d.start(base + ["--etcd-cacert", os.path.join(t, "ca.pem"),
                        "--etcd-cert", os.path.join(t, "client.pem"),
                        "--etcd-key", os.path.join(t, "client.key")])
        st, out = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 200 and out["etcd"][0]["healthy"], out
        d.wait_for(lambda: d.kvz_json("cluster", "status")["members"][0]["state"] == "up", 15, "up")
        d.api("POST", "/v1/cluster/leave")
        d.terminate()
        p.kill()
        p.wait()
        p = None
        # User and password: etcd's auth enabled with a root user.
        os.mkdir(os.path.join(t, "auth"))
        j, url = lone_etcd(os.path.join(t, "auth"), [])
        wait_port(url)
        env = dict(os.environ, ETCDCTL_API="3")
        ctl = [shutil.which("etcdctl"), "--endpoints=" + url]
        deadline = time.time() + 20
        while subprocess.run(ctl + ["user", "add", "root:s3cret-password-0123"], env=env,
                             capture_output=True).returncode and time.time() < deadline:
            time.sleep(0.3)
        subprocess.run(ctl + ["auth", "enable"], env=env, check=True, capture_output=True)
        good = secret_file(d, "etcd-pw", "s3cret-password-0123")
        bad = secret_file(d, "etcd-bad", "wrong-password-0123")
        d.start(base + ["--etcd-user", "root", "--etcd-password-file", bad])
        st, err = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 502 and "authentication failed" in err["error"]["message"], err
        d.terminate()
        d.start(base + ["--etcd-user", "root", "--etcd-password-file", good])
        st, out = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 200, out
        d.wait_for(lambda: d.kvz_json("cluster", "status")["members"][0]["state"] == "up", 15, "up")
        # Without credentials etcd refuses the same requests.
        r = subprocess.run(ctl + ["get", "/kvz/", "--prefix", "--keys-only"], env=env, capture_output=True)
        assert r.returncode != 0
    finally:
        d.cleanup()
        for proc in (p, j):
            if proc:
                proc.kill()
                proc.wait()


def test_restart_while_etcd_is_down(tmp_path):
    """A member whose etcd is gone when kvzd starts: kvzd serves its API,
    starts no guest (it cannot know which are its own), and rejoins once
    etcd is back."""
    t = str(tmp_path)
    ports = (free_port(), free_port())
    p, url = lone_etcd(t, [], ports=ports)
    d = fake_kvzd()
    try:
        wait_port(url)
        base = ["--listen", "127.0.0.1:%d" % free_port(), "--token-file", token_file(d),
                "--node-name", "solo1"]
        d.start(base)
        st, out = d.api("POST", "/v1/cluster/init", {"etcd": url})
        assert st == 200, out
        st, g = d.api("POST", "/v1/guests", {"name": "c1", "type": "ct", "template": "busybox"})
        assert st == 201, g
        d.terminate()
        p.kill()
        p.wait()
        d.start(base)
        assert d.api("GET", "/v1/cluster")[1] == {"member": False, "rejoining": True}
        st, err = d.api("POST", "/v1/guests/c1/start")
        assert st == 503 and "rejoined" in err["error"]["message"], err
        st, err = d.api("POST", "/v1/cluster/join", {"etcd": url})
        assert st == 409
        p, _ = lone_etcd(t, [], ports=ports)
        d.wait_for(lambda: d.api("GET", "/v1/cluster")[1].get("member"), 30, "rejoined")
        st, g = d.api("POST", "/v1/guests/c1/start")
        assert st == 200, g
    finally:
        d.cleanup()
        p.kill()
        p.wait()
