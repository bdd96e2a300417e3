"""A three-member etcd cluster on loopback for cluster tests and the
cluster bench: Debian's etcd-server, each member with its own data
directory and ports, fast heartbeats so that a leader is re-elected in
about a second."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

ETCD = shutil.which("etcd")


def _post(url, body, timeout=2):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


class Etcd3:
    def __init__(self, ports, hosts=None, wraps=None, extra=()):
        """ports: six TCP ports (three client, three peer) free on hosts
        (three addresses, 127.0.0.1 if not given); wraps: for each member
        the command it runs under (["ip", "netns", "exec", NS]); extra:
        more etcd options for every member."""
        self.dir = tempfile.mkdtemp(prefix="kvz-etcd-", dir="/tmp")
        self.client = ports[:3]
        self.peer = ports[3:6]
        self.hosts = list(hosts or ["127.0.0.1"] * 3)
        self.wraps = list(wraps or [[]] * 3)
        self.extra = list(extra)
        self.names = ["e1", "e2", "e3"]
        self.procs = [None, None, None]
        self.urls = ["http://%s:%d" % hp for hp in zip(self.hosts, self.client)]
        self.peer_urls = ["http://%s:%d" % hp for hp in zip(self.hosts, self.peer)]

    def _args(self, i):
        cluster = ",".join("%s=%s" % nu for nu in zip(self.names, self.peer_urls))
        return self.wraps[i] + [
            ETCD, "--name", self.names[i], "--data-dir", os.path.join(self.dir, self.names[i]),
            "--listen-client-urls", self.urls[i], "--advertise-client-urls", self.urls[i],
            "--listen-peer-urls", self.peer_urls[i],
            "--initial-advertise-peer-urls", self.peer_urls[i],
            "--initial-cluster", cluster, "--initial-cluster-token", os.path.basename(self.dir),
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--log-level", "warn"] + self.extra

    def start_member(self, i):
        log = open(os.path.join(self.dir, self.names[i] + ".log"), "a")
        self.procs[i] = subprocess.Popen(self._args(i), stdout=log, stderr=log)
        log.close()

    def start(self, timeout=30):
        for i in range(3):
            self.start_member(i)
        self.wait_healthy(timeout)
        return self

    def status(self, i):
        return _post(self.urls[i] + "/v3/maintenance/status", {}, timeout=1)

    def leader_index(self):
        """Index of the member the others call leader, or None."""
        for i in range(3):
            if self.procs[i] is None or self.procs[i].poll() is not None:
                continue
            try:
                st = self.status(i)
            except OSError:
                continue
            for j in range(3):
                try:
                    if st.get("leader") and self.status(j)["header"]["member_id"] == st["leader"]:
                        return j
                except OSError:
                    pass
        return None

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.leader_index() is not None:
                try:
                    _post(self.urls[0] + "/v3/kv/put", {"key": "aGVhbHRo", "value": "b2s="}, 2)
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError("etcd cluster not healthy: " + self.logs())

    def move_leader(self, to):
        """Makes member `to` the leader (etcd's MoveLeader through the current one)."""
        cur = self.leader_index()
        if cur is None or cur == to:
            return
        target = int(self.status(to)["header"]["member_id"])
        subprocess.run([shutil.which("etcdctl"), "--endpoints=" + self.urls[cur], "move-leader",
                        "%x" % target], check=True, capture_output=True, timeout=20,
                       env=dict(os.environ, ETCDCTL_API="3"))

    def kill(self, i, sig=signal.SIGKILL):
        self.procs[i].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[i].wait()

    def logs(self):
        out = ""
        for n in self.names:
            p = os.path.join(self.dir, n + ".log")
            if os.path.exists(p):
                with open(p) as f:
                    out += "--- %s\n%s" % (n, f.read()[-3000:])
        return out

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
