"""A link cut during a live migration between two kvzd, each in a network
namespace of its own joined by a switch (netns_harness: the cut sets the
target's port down, both kvzd run on), with the stand-in kvz-vmm sending a
64 MiB stream over about 5 s (fake-migrate=long: more than the sockets
between the two buffer, so that a cut stalls it). The source fails within
its link timeout (TCP_USER_TIMEOUT, 15 s) and a discard that cannot reach
the target, the job says why, the guest runs on at the source with its
state; the target gives up on its own (30 s without data) and keeps
nothing: no record, no supervisor, no disk file; once the link is back a
second move completes. Skips without root and network namespaces."""
import json
import os
import time

import pytest

from kvzd_harness import FAKE, fake_kvzd, no_sanitizer_report, stop_all
from netns_harness import Net, why_not
from test_migrate import TOKEN_A, TOKEN_B, fake_qmp, types, write_token

# TCP_USER_TIMEOUT of the migration socket (migration_source.c).
LINK_TIMEOUT_S = 15


@pytest.fixture
def cut_hosts():
    why = why_not()
    if why:
        pytest.skip(why)
    a, b = fake_kvzd(), fake_kvzd()
    if not a or not b:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    b.images_dirs += a.images_dirs     # the same kernel path on both "hosts"
    net = Net(2)
    try:
        for i, (d, tok) in enumerate(((a, TOKEN_A), (b, TOKEN_B))):
            d.wrap = net.wrap(i)
            d.start(["--listen", "%s:7000" % net.addr(i), "--token-file",
                     write_token(d, tok, "own")])
        a.kvz("node", "add", "b", "http://%s:7000" % net.addr(1), "--token-file",
              write_token(a, TOKEN_B, "b-token"))
        yield net, a, b
    finally:
        logs = stop_all(a, b)
        net.close()
    no_sanitizer_report(logs)


def supervisors(d, name):
    """Pids of d's supervisors of guest name (d's copies of the stand-in,
    for the guest; the other's may name d's kernel file)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if cmd.startswith(d.dir.encode() + b"/") and b"--name\0%s\0" % name.encode() in cmd:
            found.append(int(pid))
    return found


def test_link_cut_mid_move_then_move_again(cut_hosts):
    net, a, b = cut_hosts
    a.kvz("create", "vm", "lc", "--kernel", a.kernel, "--memory", "64M", "--disk", "8M",
          "--cmdline", "fake-migrate=long")
    a.kvz("start", "lc")
    fake_qmp(a.guest("lc")["qmp"], "x-fake-set", {"value": "before-the-cut"})
    job = json.loads(a.kvz("--json", "migrate", "lc", "--to", "b", "--detach").stdout)
    jid = str(job["id"])
    a.wait_for(lambda: a.kvz_json("job", "show", jid)["done"] >= 8 << 20, timeout=30,
               what="the stream under way")
    # The target's copy of the disk exists now (made at the reservation).
    target_disk = os.path.join(b.state, "images/lc.img")
    assert os.path.exists(target_disk) and supervisors(b, "lc")
    net.cut(1)
    t0 = time.time()
    a.kvz("job", "wait", jid, check=False)
    failed_after = time.time() - t0
    j = a.kvz_json("job", "show", jid)
    assert j["state"] == "failed", j
    # The link timeout, then a discard that cannot connect (2 s), and polls.
    assert LINK_TIMEOUT_S - 1 <= failed_after <= LINK_TIMEOUT_S + 10, (failed_after, j)
    assert "Connection timed out" in j["error"], j["error"]
    g = a.guest("lc")
    assert g["state"] == "running" and "state_reason" not in g, g
    assert fake_qmp(g["qmp"], "query-status")["return"]["status"] == "running"
    assert fake_qmp(g["qmp"], "x-fake-get")["return"]["value"] == "before-the-cut"
    assert "migration-failed" in types(a, "lc")
    net.mend(1)
    # The target, which the source could not tell, gives up on its own.
    b.wait_for(lambda: b.api("GET", "/v1/guests/lc")[0] == 404, timeout=60,
               what="b to discard on its own")
    clean_after = time.time() - t0
    assert clean_after < 30 + 20, clean_after
    assert "migration-discarded" in types(b, "lc")
    assert not supervisors(b, "lc")
    assert not os.path.exists(target_disk)
    mig = os.path.join(b.state, "migrations")
    assert not os.path.exists(mig) or os.listdir(mig) == []
    # Back: the move completes.
    r = a.kvz("migrate", "lc", "--to", "b")
    assert r.stdout.strip().split("\n")[-1].startswith("migrated lc to b: "), r.stdout
    assert a.api("GET", "/v1/guests/lc")[0] == 404 and not supervisors(a, "lc")
    g = b.guest("lc")
    assert g["state"] == "running"
    assert fake_qmp(g["qmp"], "x-fake-get")["return"]["value"] == "before-the-cut"
    print("link cut: the source failed %.1f s after the cut, the target was clean %.1f s "
          "after it" % (failed_after, clean_after))
