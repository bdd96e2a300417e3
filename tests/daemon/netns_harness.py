"""A small network of namespaces for cluster tests whose links really go
down: a "switch" namespace holding a bridge, one namespace per node joined
to it by a veth pair (the node's end is eth0, address SUBNET.N), and a veth
from the test's own namespace to the bridge (SUBNET.254), so that the test
reaches every node's etcd member and API. Cutting a node's link sets the
switch's end of its veth down: nothing of that node reaches anyone else,
and nothing reaches it, while its processes run on.

Names carry the test process's pid, so that runs of other worktrees at the
same time do not collide; everything is removed by close()."""
import ipaddress
import json
import os
import random
import shutil
import subprocess

IP = shutil.which("ip")


def why_not():
    """None when namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "network namespaces and veth pairs need root"
    if not IP:
        return "iproute2's ip is not installed"
    probe = "kvzprobe%d" % os.getpid()
    r = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return "cannot make a network namespace: " + r.stderr.strip()
    subprocess.run([IP, "netns", "del", probe], capture_output=True)
    return None


def ip(*args, ns=None):
    cmd = [IP] + (["-n", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r.stdout


def _free_subnet():
    """A 10.213.X.0/24 that no route of this namespace touches."""
    used = [ipaddress.ip_network(r["dst"], strict=False)
            for r in json.loads(ip("-j", "route", "show") or "[]")
            if r.get("dst", "default") != "default"]
    for x in random.sample(range(1, 255), 254):
        net = ipaddress.ip_network("10.213.%d.0/24" % x)
        if not any(net.overlaps(u) for u in used):
            return "10.213.%d" % x
    raise RuntimeError("no free 10.213.X.0/24 subnet")


class Net:
    def __init__(self, count):
        tag = "%d" % (os.getpid() % 100000)
        self.sw = "kvzsw%s" % tag
        self.ns = ["kvzn%d-%s" % (i + 1, tag) for i in range(count)]
        self.host_if = "kvzh%s" % tag
        self.subnet = _free_subnet()
        self.made = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def addr(self, i):
        """Node i's address (0-based)."""
        return "%s.%d" % (self.subnet, i + 1)

    def wrap(self, i):
        """The command prefix that runs a program in node i's namespace
        (ip execs it: the pid is the program's)."""
        return [IP, "netns", "exec", self.ns[i]]

    def _build(self):
        for ns in [self.sw] + self.ns:
            ip("netns", "add", ns)
            self.made.append(ns)
            ip("link", "set", "lo", "up", ns=ns)
        ip("link", "add", "br0", "type", "bridge", ns=self.sw)
        ip("link", "set", "br0", "up", ns=self.sw)
        for i, ns in enumerate(self.ns):
            port = "p%d" % (i + 1)
            ip("link", "add", port, "netns", self.sw, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            ip("link", "set", port, "master", "br0", ns=self.sw)
            ip("link", "set", port, "up", ns=self.sw)
            ip("addr", "add", self.addr(i) + "/24", "dev", "eth0", ns=ns)
            ip("link", "set", "eth0", "up", ns=ns)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", "uplink", "netns", self.sw)
        self.made.append("link:" + self.host_if)
        ip("link", "set", "uplink", "master", "br0", ns=self.sw)
        ip("link", "set", "uplink", "up", ns=self.sw)
        ip("addr", "add", self.subnet + ".254/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")

    def cut(self, i):
        """Node i's link down: it is alone."""
        ip("link", "set", "p%d" % (i + 1), "down", ns=self.sw)

    def mend(self, i):
        ip("link", "set", "p%d" % (i + 1), "up", ns=self.sw)

    def close(self):
        """Removes the namespaces (their veths go with them) and the
        test's veth. Processes still in a namespace keep it alive but
        unnamed: stop them first."""
        for what in reversed(self.made):
            if what.startswith("link:"):
                subprocess.run([IP, "link", "del", what[5:]], capture_output=True)
            else:
                subprocess.run([IP, "netns", "del", what], capture_output=True)
        self.made = []
