"""Three kvzd and a three-member etcd on loopback, each kvzd with its own
state directory and TCP port, for the cluster tests (test_cluster.py,
test_cluster_policy.py). The nodes are made, started and stopped here; the
tests make them members (kvz cluster init|join)."""
import os
import shutil

from etcd_harness import Etcd3
from kvzd_harness import fake_kvzd, free_port, tcp_request


class Cluster:
    """nodes: three Kvzd (n1..n3), ports: their TCP ports, etcd: Etcd3,
    shared: a directory the HA guests' stand-in "disk" lives in."""


def token_file(d, token):
    path = os.path.join(d.dir, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, (token + "\n").encode())
    os.close(fd)
    return path


def start_node(c, i):
    d = c.nodes[i]
    d.start(["--listen", "127.0.0.1:%d" % c.ports[i], "--token-file", token_file(d, c.token),
             "--node-name", "n%d" % (i + 1), "--cluster-ttl", str(c.ttl)])


def three_nodes(token, ttl):
    """A generator for a module fixture: yields the started Cluster, then
    stops everything."""
    c = Cluster()
    c.token, c.ttl = token, ttl
    c.etcd = Etcd3([free_port() for _ in range(6)]).start()
    c.nodes = [fake_kvzd() for _ in range(3)]
    c.ports = [free_port() for _ in range(3)]
    c.shared = os.path.join(c.nodes[0].dir, "shared")
    os.mkdir(c.shared)
    try:
        for i in range(3):
            start_node(c, i)
        yield c
    finally:
        for d in c.nodes:
            d.cleanup()
        c.etcd.stop()
        shutil.rmtree(c.shared, ignore_errors=True)


def tcp_call(port, method, path, body=None, token=None):
    """A request on a kvzd's TCP API: (status, the answer's text)."""
    return tcp_request(port, method, path, body, token, timeout=10)
