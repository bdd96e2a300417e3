"""Three kvzd and a three-member etcd, each kvzd with its own state
directory and TCP port, for the cluster tests: on loopback
(test_cluster.py, test_cluster_policy.py), or each node with its etcd
member in a network namespace of its own (test_cluster_netns.py). The nodes
are made, started and stopped here; the tests make them members (kvz
cluster init|join)."""
import os
import shutil

from etcd_harness import Etcd3
from kvzd_harness import fake_kvzd, free_port, tcp_request


class Cluster:
    """nodes: three Kvzd (n1..n3), ports: their TCP ports, etcd: Etcd3,
    shared: a directory the HA guests' stand-in "disk" lives in; hosts:
    the nodes' addresses; net: the netns_harness.Net, or None on loopback."""
    net = None
    etcd = None
    shared = None
    hosts = ["127.0.0.1"] * 3

    def __init__(self, token, ttl):
        self.token, self.ttl = token, ttl
        self.nodes = []


def token_file(d, token):
    path = os.path.join(d.dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    return path


def node_token(c, i):
    """Node i's own API token: members do not share users' tokens (they
    call each other with the cluster secret)."""
    return "%s-n%d" % (c.token, i + 1)


def start_node(c, i):
    d = c.nodes[i]
    d.start(["--listen", "%s:%d" % (c.hosts[i], c.ports[i]), "--token-file", token_file(d, node_token(c, i)),
             "--node-name", "n%d" % (i + 1), "--cluster-ttl", str(c.ttl)])


def start_nodes(c, wraps=None):
    """Makes and starts the three kvzd (node i's command line prefixed by
    wraps[i] when given) and the shared directory; c.nodes holds each as soon
    as it is made, so stop_cluster finds it whatever fails next."""
    for i in range(3):
        d = fake_kvzd()
        if wraps:
            d.wrap = wraps[i]
        c.nodes.append(d)
    c.shared = os.path.join(c.nodes[0].dir, "shared")
    os.mkdir(c.shared)
    for i in range(3):
        # An HA VM's kernel lies there, the same path on every node.
        c.nodes[i].images_dirs.append(c.shared)
        start_node(c, i)


def stop_cluster(c):
    """The one teardown of three_nodes and netns_nodes: whatever of theirs
    was started, kvzd first, then etcd, the shared directory and the
    network namespaces."""
    for d in c.nodes:
        d.cleanup()
    if c.etcd:
        c.etcd.stop()
    if c.shared:
        shutil.rmtree(c.shared, ignore_errors=True)
    if c.net:
        c.net.close()


def three_nodes(token, ttl):
    """A generator for a module fixture: yields the started Cluster, then
    stops everything."""
    c = Cluster(token, ttl)
    try:
        c.etcd = Etcd3([free_port() for _ in range(6)]).start()
        c.ports = [free_port() for _ in range(3)]
        start_nodes(c)
        yield c
    finally:
        stop_cluster(c)


def init(c, i, endpoints):
    """Node i makes the cluster; c.secret_file is a private copy of its
    secret (STATE/cluster.key) for the others' join."""
    c.nodes[i].kvz("cluster", "init", "--etcd", endpoints)
    with open(os.path.join(c.nodes[i].state, "cluster.key")) as f:
        secret = f.read()
    c.secret_file = os.path.join(c.nodes[i].dir, "cluster-secret")
    fd = os.open(c.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, secret.encode())
    os.close(fd)


def join(c, i, endpoints, check=True):
    return c.nodes[i].kvz("cluster", "join", "--etcd", endpoints, "--secret-file", c.secret_file,
                          check=check)


def netns_nodes(token, ttl):
    """Like three_nodes, each node (kvzd and etcd member) in a network
    namespace of its own (netns_harness.Net), whose link the tests cut.
    etcd runs with --pre-vote, as it should wherever links fail: a member
    cut off campaigns alone, and without pre-vote its higher term would
    depose the leader when it is back, an election every member waits for."""
    from netns_harness import Net
    c = Cluster(token, ttl)
    c.net = Net(3)
    c.hosts = [c.net.addr(i) for i in range(3)]
    c.ports = [7000] * 3  # one API per namespace: the same port will do
    wraps = [c.net.wrap(i) for i in range(3)]
    try:
        c.etcd = Etcd3([2379] * 3 + [2380] * 3, hosts=c.hosts, wraps=wraps,
                       extra=["--pre-vote"]).start()
        start_nodes(c, wraps=wraps)
        yield c
    finally:
        stop_cluster(c)


def members(d):
    """The cluster members as node d sees them, by name."""
    return {m["name"]: m for m in d.kvz_json("node", "list") if m.get("cluster")}


def cluster_guest(d, name):
    """Guest name's cluster record as node d lists it (None if absent)."""
    return {g["name"]: g for g in d.kvz_json("list", "--all")}.get(name)


def node_of_root(c, root):
    """The node whose state directory holds a container root."""
    for i, d in enumerate(c.nodes):
        if root.startswith(d.dir + "/"):
            return "n%d" % (i + 1)
    return "?"


def counter_runs(c, path, tag=None):
    """The counter lines fake-ha-disk wrote to path (of guest tag, or of
    any) as a list of [node, how many lines] runs in order: a guest that
    ran on two nodes at once shows as runs going back and forth."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f.read().splitlines():
            parts = line.split()
            if len(parts) != 3 or (tag and parts[0] != tag):
                continue
            n = node_of_root(c, parts[1])
            if out and out[-1][0] == n:
                out[-1][1] += 1
            else:
                out.append([n, 1])
    return out


def tcp_call(port, method, path, body=None, token=None):
    """A request on a kvzd's TCP API: (status, the answer's text)."""
    return tcp_request(port, method, path, body, token, timeout=10)
