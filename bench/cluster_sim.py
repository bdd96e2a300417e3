"""The simulator behind bench/cluster_sim.sh (read its header)."""
import base64
import http.client
import json
import os
import statistics
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "daemon"))
from etcd_harness import Etcd3  # noqa: E402
from kvzd_harness import fake_kvzd, free_port  # noqa: E402

NODES, GUESTS = int(os.environ["NODES"]), int(os.environ["GUESTS"])
TTL = 10
KEEPALIVE_EVERY = TTL / 3
LOAD_EVERY = 10.0
THREADS = 8


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Client:
    """A keep-alive HTTP connection to one etcd member's JSON gateway."""
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path, body):
        for attempt in range(2):
            try:
                self.c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                return json.loads(self.c.getresponse().read())
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise

    def put(self, key, value, lease=None):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        return self.post("/v3/kv/put", body)

    def range(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return self.post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True})


def facts(i):
    # More free memory than the real node: the HA manager hands guests to
    # simulated nodes, which never start them (only the decision is timed).
    return json.dumps({"url": "http://10.0.%d.%d:8080" % (i // 250, i % 250 + 1), "cpus": 64,
                       "mem_total": 512 << 30, "mem_available": (400 << 30) + i,
                       "load": 1.5, "guests": GUESTS // NODES, "ts_ms": int(time.time() * 1000)})


class Sim:
    def __init__(self, etcd):
        self.etcd = etcd
        self.leases = {}
        self.stop = False
        self.dead = set()
        self.writes = 0
        self.keepalives = 0
        self.lock = threading.Lock()
        self.last_keepalive = {}
        self.expired = set()

    def setup(self):
        t0 = time.time()
        cl = [Client(self.etcd.client[i % 3]) for i in range(THREADS)]

        def guests(k):
            c = cl[k]
            for g in range(k, GUESTS, THREADS):
                c.put("/kvz/guests/g%05d" % g, json.dumps({
                    "owner": "sim%d" % (g % NODES), "state": "running", "ha": True, "type": "ct",
                    "restarts": 0, "relocations": 0,
                    "def": {"name": "g%05d" % g, "type": "ct", "template": "busybox"}}))
                c.put("/kvz/owned/sim%d/g%05d" % (g % NODES, g), "")

        def members(k):
            c = cl[k]
            for i in range(k, NODES, THREADS):
                lease = c.post("/v3/lease/grant", {"TTL": str(TTL)})["ID"]
                self.leases[i] = lease
                c.put("/kvz/members/sim%d" % i, json.dumps({"url": "http://10.0.0.1:8080"}))
                c.put("/kvz/alive/sim%d" % i, facts(i), lease)
        # Guests first, then the members, which start their keepalives at
        # once: leases granted before 20,000 puts would expire meanwhile.
        for fn in (guests, members):
            ts = [threading.Thread(target=fn, args=(k,)) for k in range(THREADS)]
            [t.start() for t in ts]
            [t.join() for t in ts]
        n = NODES * 3 + GUESTS * 2
        dt = time.time() - t0
        print("setup: %d writes in %.1f s: %.0f writes/s (puts of new keys, %d clients)" % (n, dt, n / dt, THREADS))

    def run_members(self):
        """Keepalives every KEEPALIVE_EVERY and load reports every LOAD_EVERY."""
        def work(k):
            c = Client(self.etcd.client[k % 3])
            nxt_load = time.time() + LOAD_EVERY
            while not self.stop:
                t0 = time.time()
                loads = t0 >= nxt_load
                for i in range(k, NODES, THREADS):
                    if i in self.dead:
                        continue
                    try:
                        r = c.post("/v3/lease/keepalive", {"ID": self.leases[i]})
                        if int(r.get("result", {}).get("TTL", "0")) <= 0:
                            with self.lock:
                                self.expired.add(i)
                            continue
                        self.last_keepalive[i] = time.time()
                        n = 1
                        if loads:
                            c.put("/kvz/alive/sim%d" % i, facts(i), self.leases[i])
                            n += 1
                    except Exception:
                        continue
                    with self.lock:
                        self.keepalives += 1
                        self.writes += n - 1
                if loads:
                    nxt_load += LOAD_EVERY
                time.sleep(max(0, KEEPALIVE_EVERY - (time.time() - t0)))
        self.threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(THREADS)]
        [t.start() for t in self.threads]


def api(d, path):
    t0 = time.time()
    st, body = d.api("GET", path, timeout=60)
    assert st == 200, body
    return time.time() - t0, body


def main():
    etcd = Etcd3([free_port() for _ in range(6)]).start()
    d = fake_kvzd()
    sim = Sim(etcd)
    try:
        port = free_port()
        tok = os.path.join(d.dir, "token")
        fd = os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"bench-token-0123456789abcdef\n")
        os.close(fd)
        d.start(["--listen", "127.0.0.1:%d" % port, "--token-file", tok, "--node-name", "real",
                 "--cluster-ttl", str(TTL)])
        st, out = d.api("POST", "/v1/cluster/init", {"etcd": ",".join(etcd.urls)})
        assert st == 200, out
        d.wait_for(lambda: d.api("GET", "/v1/cluster")[1].get("ha_manager") == "real", 20, "HA manager")
        sim.setup()
        sim.run_members()
        time.sleep(KEEPALIVE_EVERY * 2)
        k0, w0, t0 = sim.keepalives, sim.writes, time.time()
        time.sleep(LOAD_EVERY + 1)
        dt = time.time() - t0
        ka, wr = (sim.keepalives - k0) / dt, (sim.writes - w0) / dt
        print("members: %.0f keepalives/s + %.0f load puts/s sustained for %d nodes "
              "(keepalive every %.1f s, load every %.0f s)" % (ka, wr, NODES, KEEPALIVE_EVERY, LOAD_EVERY))
        alive = c0 = Client(etcd.client[1])
        alive = int(c0.post("/v3/kv/range", {"key": b64("/kvz/alive/"), "range_end": b64("/kvz/alive0"),
                                             "count_only": True}).get("count", "0"))
        print("members alive before the kill: %d of %d (+ the real kvzd); leases lost: %d" % (
            alive - 1, NODES, len(sim.expired)))
        lat = [api(d, "/v1/guests?all=1")[0] for _ in range(5)]
        n = len(api(d, "/v1/guests?all=1")[1])
        print("kvz list --all: %d guests, median %.0f ms" % (n, statistics.median(lat) * 1000))
        nl = [api(d, "/v1/nodes")[0] for _ in range(5)]
        print("kvz node list: %d members, median %.0f ms" % (NODES + 1, statistics.median(nl) * 1000))
        # Kill one simulated node: stop its keepalives, watch its lease go
        # and its guests being reassigned by kvzd's HA manager.
        victim = min(i for i in sim.last_keepalive if i not in sim.expired)
        owned = ["g%05d" % g for g in range(victim, GUESTS, NODES)]
        sim.dead.add(victim)
        time.sleep(0.5)
        last = sim.last_keepalive[victim]
        c = Client(etcd.client[0])
        key = b64("/kvz/alive/sim%d" % victim)
        while c.post("/v3/kv/range", {"key": key, "count_only": True}).get("count"):
            time.sleep(0.05)
        gone = time.time()

        def moved():
            for g in owned:
                r = c.post("/v3/kv/range", {"key": b64("/kvz/guests/" + g)})
                v = json.loads(base64.b64decode(r["kvs"][0]["value"]))
                if v["owner"] == "sim%d" % victim:
                    return False
            return True
        while not moved() and time.time() - gone < 60:
            time.sleep(0.05)
        decided = time.time()
        print("dead node: lease gone %.1f s after its last keepalive (TTL %d s); "
              "its %d HA guests reassigned %.2f s later" % (gone - last, TTL, len(owned), decided - gone))
        print("extrapolation to 10,000 nodes (x10 nodes, x10 guests, linear):")
        print("  keepalives %.0f/s + load puts %.0f/s; list --all ~%.1f s; node list ~%.1f s; "
              "HA decision ~%.1f s (one range of all guests per manager tick)" % (
                  ka * 10, wr * 10, statistics.median(lat) * 10, statistics.median(nl) * 10,
                  (decided - gone) * 10))
    finally:
        sim.stop = True
        d.cleanup()
        etcd.stop()


main()
