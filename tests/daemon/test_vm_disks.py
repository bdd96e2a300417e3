"""A VM's several disks (issue 13, vm_disks.h) with the stand-in kvz-vmm
(real kvz-vmm where /dev/kvm allows): `kvz create vm --disk A --disk
B,format=qcow2`, the ordered list in the store (disk 0 also in the flat
disk_* keys, kept equal by the store), kvz-vmm's --disk options in order,
growth of any disk (live: block_resize vdN), --add-disk/--remove-disk on
a stopped VM only, destroy, snapshots and live migration carrying every
disk (offline too), monitoring of
every disk, the schema migration of an
older store, hostile requests and files, and `kvz set --eject --force`."""
import hashlib
import json
import os
import sqlite3
import subprocess

import pytest

from kvzd_harness import BUILD, KVZ, Kvzd, parse_prometheus
from test_jobs import qmp
from test_migrate import SNAPCOUNT, TOKEN_B, hosts, reservation, tcp_api  # noqa: F401
from test_vm_install_media import argv_of, make_iso

KIMG = os.path.join(BUILD, "src/image/kvz-image")
KVZ_VMM = os.path.join(BUILD, "src/vmm/kvz-vmm")
IDLE = os.path.join(BUILD, "tests/guests/idle.elf")


def img(d, name):
    return os.path.join(d.state, "images", name)


def disks_of(argv):
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--disk"]


def one_line_failure(r, why):
    assert r.returncode == 1 and why in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def image_files(d):
    return sorted(os.listdir(os.path.join(d.state, "images")))


def test_create_several_disks(kvzd):
    d = kvzd
    d.kvz("create", "vm", "m", "--kernel", d.kernel, "--disk", "64M", "--disk-format", "qcow2",
          "--disk", "32M", "--disk", "16M,format=qcow2", "--disk", "8M,mode=fixed")
    cfg = d.guest("m")["config"]
    paths = [img(d, "m.img"), img(d, "m@1.img"), img(d, "m@2.img"), img(d, "m@3.img")]
    assert [x["path"] for x in cfg["disks"]] == paths
    assert [x["size"] for x in cfg["disks"]] == [64 << 20, 32 << 20, 16 << 20, 8 << 20]
    assert [x["format"] for x in cfg["disks"]] == ["qcow2", "raw", "qcow2", "raw"]
    assert [x["mode"] for x in cfg["disks"]] == ["sparse", "sparse", "sparse", "fixed"]
    # disk 0 is the flat keys too, as older clients read it
    assert (cfg["disk_path"], cfg["disk_size"], cfg["disk_format"]) == (paths[0], 64 << 20, "qcow2")
    assert os.path.getsize(paths[1]) == 32 << 20
    assert os.stat(paths[3]).st_blocks * 512 >= 8 << 20          # fixed: allocated
    info = json.loads(subprocess.run([KIMG, "--json", "info", paths[2]], capture_output=True,
                                     check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 16 << 20
    # kvz list --json and kvz show carry the list
    listed = [g for g in d.kvz_json("list") if g["name"] == "m"][0]
    assert listed["config"]["disks"] == cfg["disks"]
    assert json.loads(d.kvz("show", "m").stdout)["config"]["disks"] == cfg["disks"]
    d.kvz("start", "m")
    assert disks_of(argv_of(d, "m")) == [paths[0] + ",format=qcow2", paths[1],
                                        paths[2] + ",format=qcow2", paths[3]]
    d.kvz("stop", "m", "--force")
    # the REST form: a list of sizes or objects
    st, g = d.api("POST", "/v1/guests", {"name": "r", "type": "vm", "kernel": d.kernel,
                                         "disks": ["8M", {"size": 4 << 20, "format": "qcow2"}]})
    assert st == 201, g
    assert [x["format"] for x in d.guest("r")["config"]["disks"]] == ["raw", "qcow2"]
    d.kvz("destroy", "m")
    d.kvz("destroy", "r")
    assert image_files(d) == []


def test_grow_add_remove(kvzd):
    d = kvzd
    d.kvz("create", "vm", "g", "--kernel", d.kernel, "--disk", "16M", "--disk", "8M")
    d.kvz("start", "g")
    pid = d.guest("g")["pid"]
    d.kvz("set", "g", "--disk", "1:24M")                     # live: block_resize vdb
    assert os.path.getsize(img(d, "g@1.img")) == 24 << 20
    assert os.path.getsize(img(d, "g.img")) == 16 << 20
    assert d.guest("g")["config"]["disks"][1]["size"] == 24 << 20
    assert d.events("g")[-1]["detail"] == "disk 1 24M (live)"
    d.kvz("set", "g", "--disk", "0:20M")
    assert d.guest("g")["config"]["disk_size"] == 20 << 20
    assert d.guest("g")["config"]["disks"][0]["size"] == 20 << 20
    for args, why in ((["--disk", "2:1G"], "no disk 2"), (["--disk", "1:8M"], "only grows"),
                      (["--add-disk", "8M"], "no live hotplug"),
                      (["--remove-disk", "1"], "no live hotplug"),
                      (["--force"], "goes with ejecting")):
        one_line_failure(d.kvz("set", "g", *args, check=False), why)
    assert d.guest("g")["pid"] == pid
    d.kvz("stop", "g", "--force")
    d.kvz("set", "g", "--disk", "1:32M")                     # stopped: in the image
    assert os.path.getsize(img(d, "g@1.img")) == 32 << 20
    d.kvz("set", "g", "--add-disk", "4M,format=qcow2")
    d.kvz("set", "g", "--add-disk", "2M")
    assert d.events("g")[-1]["type"] == "disks" and d.events("g")[-1]["detail"] == \
        "disk 3 added: 2M raw"
    d.kvz("set", "g", "--remove-disk", "1")
    assert not os.path.exists(img(d, "g@1.img"))
    cfg = d.guest("g")["config"]
    assert [x["path"] for x in cfg["disks"]] == [img(d, "g.img"), img(d, "g@2.img"),
                                                img(d, "g@3.img")]
    d.kvz("set", "g", "--add-disk", "1M")                    # the freed name again, last
    assert d.guest("g")["config"]["disks"][-1]["path"] == img(d, "g@1.img")
    d.kvz("start", "g")
    assert disks_of(argv_of(d, "g")) == [img(d, "g.img"), img(d, "g@2.img") + ",format=qcow2",
                                        img(d, "g@3.img"), img(d, "g@1.img")]
    d.kvz("set", "g", "--disk", "2:4M")            # vdc: the third --disk, g@3.img
    assert os.path.getsize(img(d, "g@3.img")) == 4 << 20
    assert os.path.getsize(img(d, "g@1.img")) == 1 << 20
    d.kvz("stop", "g", "--force")
    one_line_failure(d.kvz("set", "g", "--remove-disk", "0", check=False), "disk 0")
    one_line_failure(d.kvz("set", "g", "--remove-disk", "9", check=False), "no disk 9")
    while len(d.guest("g")["config"]["disks"]) < 8:
        d.kvz("set", "g", "--add-disk", "1M")
    one_line_failure(d.kvz("set", "g", "--add-disk", "1M", check=False), "the most")
    # A VM without a disk gets its disk 0 from --add-disk.
    d.kvz("create", "vm", "nd", "--kernel", d.kernel)
    d.kvz("set", "nd", "--add-disk", "4M")
    cfg = d.guest("nd")["config"]
    assert cfg["disk_path"] == img(d, "nd.img") and cfg["disks"][0]["path"] == cfg["disk_path"]
    d.kvz("destroy", "g")
    d.kvz("destroy", "nd")
    assert image_files(d) == []


def put(path, data):
    with open(path, "r+b") as f:
        f.write(data)


def got(path, n):
    with open(path, "rb") as f:
        return f.read(n)


def test_snapshot_carries_every_disk(kvzd):
    """A snapshot copies every disk at its instant (disk.img, disk1.img)
    and a restore puts every one back, running or stopped; a VM whose
    disks no longer match the snapshot's is refused with one line and
    left as it is."""
    d = kvzd
    d.kvz("create", "vm", "s", "--kernel", d.kernel, "--disk", "8M", "--disk", "4M")
    disks = [img(d, "s.img"), img(d, "s@1.img")]
    for p, tag in zip(disks, (b"COLD-0", b"COLD-1")):
        put(p, tag)
    d.kvz("snapshot", "create", "s", "cold")
    snap = os.path.join(d.state, "snapshots", "s")
    assert sorted(os.listdir(os.path.join(snap, "cold"))) == ["disk.img", "disk1.img"]
    d.kvz("start", "s")
    for p, tag in zip(disks, (b"HOT--0", b"HOT--1")):
        put(p, tag)
    d.kvz("snapshot", "create", "s", "hot")
    assert sorted(os.listdir(os.path.join(snap, "hot"))) == ["disk.img", "disk1.img", "state"]
    for p, tag in zip(disks, (b"LATE-0", b"LATE-1")):
        put(p, tag)
    d.kvz("snapshot", "restore", "s", "hot")
    assert d.guest("s")["state"] == "running"
    assert [got(p, 6) for p in disks] == [b"HOT--0", b"HOT--1"]
    d.kvz("snapshot", "restore", "s", "cold")
    assert d.guest("s")["state"] == "stopped"
    assert [got(p, 6) for p in disks] == [b"COLD-0", b"COLD-1"]
    assert sorted(f for f in image_files(d) if f.startswith("s")) == ["s.img", "s@1.img"]
    # A disk added since: refused, nothing touched.
    d.kvz("set", "s", "--add-disk", "4M")
    put(img(d, "s@2.img"), b"NEW--2")
    r = d.kvz("snapshot", "restore", "s", "hot", check=False)
    one_line_failure(r, "snapshot hot holds 2 disks and s has 3 now")
    assert got(img(d, "s@2.img"), 6) == b"NEW--2"
    assert sorted(f for f in image_files(d) if f.startswith("s")) == ["s.img", "s@1.img", "s@2.img"]
    d.kvz("set", "s", "--remove-disk", "2")
    d.kvz("snapshot", "restore", "s", "hot")
    assert [got(p, 6) for p in disks] == [b"HOT--0", b"HOT--1"]
    d.kvz("snapshot", "delete", "s", "hot")
    assert os.listdir(snap) == ["cold"]


def test_monitoring_counts_every_disk(fake):
    """The usage sample sums every disk's space and I/O (kvz-vmm's
    query-blockstats; the stand-in's disk N read N+1 MiB and wrote 3x),
    and lists each disk, in usage, in the stored series and in /metrics
    (kvz_vm_disk_*, label device); a device name from kvz-vmm that would break the metrics text
    is not taken."""
    d = fake
    d.interval = 1
    d.start()
    d.kvz("create", "vm", "m", "--kernel", d.kernel, "--disk", "8M", "--disk", "4M")
    put(img(d, "m@1.img"), b"x" * 65536)
    d.kvz("start", "m")
    u = d.wait_for(lambda: (d.guest("m").get("usage") or {}).get("disks"), timeout=20,
                   what="a usage sample with the disks")
    u = d.guest("m")["usage"]
    assert [x["device"] for x in u["disks"]] == ["vda", "vdb"], u
    assert [x["size"] for x in u["disks"]] == [8 << 20, 4 << 20], u
    assert u["disks"][1]["used"] >= 65536, u
    assert u["disk_size"] == 12 << 20 and u["disk_used"] == sum(x["used"] for x in u["disks"]), u
    assert [(x["rd_bytes"], x["wr_bytes"]) for x in u["disks"]] == [(1 << 20, 3 << 20),
                                                                   (2 << 20, 6 << 20)], u
    assert (u["disk_rd_bytes"], u["disk_wr_bytes"]) == (3 << 20, 9 << 20), u
    st, metrics = d.api("GET", "/metrics")
    assert st == 200 and 'kvz_guest_disk_read_bytes_total{name="m",type="vm"} 3145728' in metrics
    # Each disk on its own, labelled by device: the same figures as usage.
    parsed = parse_prometheus(metrics)
    for metric, key in (("used_bytes", "used"), ("size_bytes", "size"),
                        ("read_bytes_total", "rd_bytes"), ("written_bytes_total", "wr_bytes")):
        got = [(lb["device"], v) for lb, v in parsed["kvz_vm_disk_" + metric]["samples"]
               if lb["name"] == "m"]
        assert got == [(x["device"], x[key]) for x in u["disks"]], (metric, got, u)
    # The stored series keeps each disk of every sample (the web UI's graph).
    series = d.kvz_json("stats", "m")["samples"]
    assert series and all([x["device"] for x in smp["disks"]] == ["vda", "vdb"] for smp in series)
    assert [(x["rd_bytes"], x["wr_bytes"]) for x in series[-1]["disks"]] == [(1 << 20, 3 << 20),
                                                                            (2 << 20, 6 << 20)]
    d.kvz("stop", "m", "--force")
    # A kvz-vmm naming a disk with what would break the text format: the
    # disk keeps its name by position, nothing else gets in.
    d.kvz("create", "vm", "h", "--kernel", d.kernel, "--disk", "8M", "--disk", "4M",
          "--cmdline", "fake-blockstats=hostile")
    d.kvz("start", "h")
    d.wait_for(lambda: (d.guest("h").get("usage") or {}).get("disks"), timeout=20,
               what="a usage sample of h")
    assert [x["device"] for x in d.guest("h")["usage"]["disks"]] == ["vda", "vdb"]
    parsed = parse_prometheus(d.api("GET", "/metrics")[1])
    assert [(lb["device"], v) for lb, v in parsed["kvz_vm_disk_read_bytes_total"]["samples"]
            if lb["name"] == "h"] == [("vda", 1 << 20), ("vdb", 2 << 20)], parsed
    d.kvz("stop", "h", "--force")


def test_hostile_disk_requests(fake):
    """Bad and hostile disk specs are refused with one line and leave no
    file: bases outside the image directories (a path, links out, FIFOs,
    devices), bad sizes, formats and shapes, more disks than kvz-vmm
    takes, more space than the filesystem has; a disk file replaced by a
    link or FIFO is refused at start."""
    d = fake
    d.start()
    images = d.images_dirs[0]
    outside = os.path.join(d.dir, "outside")
    os.mkdir(outside)
    with open(os.path.join(outside, "base.raw"), "wb") as f:
        f.truncate(1 << 20)
    os.mkfifo(os.path.join(images, "fifo"))
    os.symlink(os.path.join(outside, "base.raw"), os.path.join(images, "escape"))
    os.symlink("/dev/zero", os.path.join(images, "dev"))
    for base in ("/etc/shadow", os.path.join(outside, "base.raw"), images + "/escape",
                 images + "/fifo", images + "/dev", images + "/../outside/base.raw", "/dev/sda"):
        for body in ({"disks": ["8M", {"size": "8M", "base": base}]},
                     {"disks": [{"size": "8M", "base": base}]}):
            st, r = d.api("POST", "/v1/guests", dict(body, name="h", type="vm", kernel=d.kernel),
                          timeout=5)
            assert st == 400 and "image directories" in r["error"]["message"], (base, r)
    bad = [("disks", "8M"), ("disks", []), ("disks", ["8M"] * 9), ("disks", ["8M", "x"]),
           ("disks", ["8M", {"size": "8M", "format": "vmdk"}]),
           ("disks", ["8M", {"size": "8M", "mode": "fixed", "format": "qcow2"}]),
           ("disks", ["8M", {"size": "8M", "path": "/etc/passwd"}]),
           ("disks", ["8M", {"size": "1000"}]), ("disks", ["8M", {"size": -1}]),
           ("disks", ["8M", {"format": "raw"}]), ("disks", ["8M", None]),
           ("disks", ["8M", {"size": "8M", "base": 7}])]
    for key, v in bad:
        st, r = d.api("POST", "/v1/guests", {"name": "h", "type": "vm", "kernel": d.kernel, key: v})
        assert st == 400 and "\n" not in r["error"]["message"], (v, r)
    st, r = d.api("POST", "/v1/guests", {"name": "h", "type": "vm", "kernel": d.kernel,
                                         "disks": ["8M", {"size": "8M", "path": "/x"}]})
    assert r["error"]["message"] == 'disks[1]: unknown field "path"', r
    st, r = d.api("POST", "/v1/guests", {"name": "h", "type": "vm", "kernel": d.kernel,
                                         "disks": ["8M", {"size": "8M", "format": "vmdk"}]})
    assert r["error"]["message"] == 'disks[1]: format must be "raw" or "qcow2"', r
    for src in ({"template": "debian"}, {"import": os.path.join(images, "escape")}):
        st, r = d.api("POST", "/v1/guests", dict(src, name="h", type="vm", disks=["8M", "8M"]))
        assert st == 400 and "add more once it is made" in r["error"]["message"], r
    st, r = d.api("POST", "/v1/guests", {"name": "h", "type": "vm", "kernel": d.kernel,
                                         "disk": "8M", "disks": ["8M"]})
    assert st == 400 and "not both" in r["error"]["message"]
    r = d.kvz("create", "vm", "h", "--kernel", d.kernel, "--disk", "8M", "--disk", "8M,path=/x",
              check=False)
    one_line_failure(r, "unknown disk option")
    r = d.kvz("create", "vm", "h", "--kernel", d.kernel, "--disk", "8M", "--disk", "50T",
              check=False)
    one_line_failure(r, "not enough space")
    assert d.kvz_json("list") == [] and image_files(d) == []

    # PATCH: the same checks, and numbers that are numbers.
    d.kvz("create", "vm", "v", "--kernel", d.kernel, "--disk", "8M", "--disk", "4M")
    for body in ({"add_disk": {"size": "4M", "base": "/etc/shadow"}}, {"add_disk": "lots"},
                 {"add_disk": "4M", "memory": "64M"}, {"remove_disk": "1"}, {"remove_disk": -1},
                 {"remove_disk": 1.0}, {"disk": "8M", "disk_index": 99}, {"disk_index": 1},
                 {"disk": "8M", "disk_index": "1"}, {"cdrom": None, "force": "yes"},
                 {"add_disk": {"size": "4M", "base": images + "/fifo"}}):
        st, r = d.api("PATCH", "/v1/guests/v", body, timeout=5)
        assert st == 400, (body, r)
    assert len(d.guest("v")["config"]["disks"]) == 2
    assert image_files(d) == ["v.img", "v@1.img"]

    # kvzd's own disk file replaced behind its back: not handed to kvz-vmm.
    os.unlink(img(d, "v@1.img"))
    os.symlink("/etc/shadow", img(d, "v@1.img"))
    r = d.kvz("start", "v", check=False)
    one_line_failure(r, "not a plain file")
    os.unlink(img(d, "v@1.img"))
    os.mkfifo(img(d, "v@1.img"))
    one_line_failure(d.kvz("start", "v", check=False), "not a plain file")
    assert d.guest("v")["state"] == "stopped"


def test_old_store_migrates(fake):
    """A store of schema 3 (before the list): at kvzd's start each VM's
    disk becomes disks[0]; containers and diskless VMs keep no list."""
    d = fake
    d.start()
    d.kvz("create", "vm", "old", "--kernel", d.kernel, "--disk", "8M", "--disk-format", "qcow2")
    d.kvz("create", "vm", "bare", "--kernel", d.kernel)
    want = d.guest("old")["config"]["disks"]
    d.terminate()
    db = sqlite3.connect(os.path.join(d.state, "kvzd.db"))
    assert db.execute("SELECT MAX(version) FROM migrations").fetchone()[0] >= 4
    # back to what schema 3 stored: no list, no later columns (schema 5's, 6's),
    # and no version from 4 on applied
    for name, cfg in db.execute("SELECT name, config FROM guests").fetchall():
        c = json.loads(cfg)
        c.pop("disks", None)
        db.execute("UPDATE guests SET config = ? WHERE name = ?", (json.dumps(c), name))
    db.execute("ALTER TABLE guests DROP COLUMN state_reason")
    db.execute("ALTER TABLE jobs DROP COLUMN result")
    db.execute("ALTER TABLE samples DROP COLUMN disks")
    db.execute("DELETE FROM migrations WHERE version >= 4")
    db.commit()
    db.close()
    d.start()
    assert d.guest("old")["config"]["disks"] == want
    assert want == [{"path": img(d, "old.img"), "size": 8 << 20, "format": "qcow2",
                     "mode": "sparse", "base": None}]
    assert "disks" not in d.guest("bare")["config"]
    d.kvz("set", "old", "--add-disk", "4M")
    assert len(d.guest("old")["config"]["disks"]) == 2


def test_eject_force(kvzd):
    """A guest that locked the tray keeps its CD against --eject (kvz-vmm's
    reason, and the hint); --eject --force takes it out."""
    d = kvzd
    iso = make_iso(os.path.join(d.images_dirs[0], "a.iso"))
    d.kvz("create", "vm", "cd", "--cdrom", iso, "--disk", "8M", "--boot", "disk")
    d.kvz("start", "cd")
    qmp(d.guest("cd")["qmp"], "x-fake-cd-lock", {"locked": True})
    r = d.kvz("set", "cd", "--eject", check=False)
    one_line_failure(r, "is locked")
    assert "--force" in r.stderr and d.guest("cd")["config"]["cdrom"] == iso
    d.kvz("set", "cd", "--eject", "--force")
    assert "cdrom" not in d.guest("cd")["config"]
    block = qmp(d.guest("cd")["qmp"], "query-block")
    assert "inserted" not in block[0], block


def fill(path, seed):
    """Fills a disk file with data of its own; its sha256."""
    size = os.path.getsize(path)
    data = hashlib.sha256(seed.encode()).digest() * (size // 32)
    with open(path, "r+b") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_live_migration_copies_every_disk(hosts):  # noqa: F811
    """Without shared storage every disk goes with the guest (kvz-vmm's
    blk copy): the target's disk 0 and disk 1 match the source's by
    checksum, the source's files go; and back again."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    a.kvz("create", "vm", "two", "--kernel", SNAPCOUNT, "--memory", "64M", "--no-balloon",
          "--disk", "8M", "--disk", "4M")
    sums = [fill(img(a, "two.img"), "zero"), fill(img(a, "two@1.img"), "one")]
    a.kvz("start", "two")
    r = a.kvz("migrate", "two", "--to", "b")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    assert a.api("GET", "/v1/guests/two")[0] == 404
    assert not [f for f in image_files(a) if f.startswith("two")]
    g = b.guest("two")
    assert g["state"] == "running"
    assert [x["path"] for x in g["config"]["disks"]] == [img(b, "two.img"), img(b, "two@1.img")]
    assert "incoming_disks" not in g["config"]
    assert disks_of(argv_of(b, "two")) == [img(b, "two.img"), img(b, "two@1.img")]
    assert [sha(img(b, "two.img")), sha(img(b, "two@1.img"))] == sums
    r = b.kvz("migrate", "two", "--to", "a", "--copy-storage")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    assert [sha(img(a, "two.img")), sha(img(a, "two@1.img"))] == sums
    assert not [f for f in image_files(b) if f.startswith("two")]
    a.kvz("stop", "two", "--force")


def test_offline_migration_copies_every_disk(hosts):  # noqa: F811
    """Offline (stop, move, start) every disk travels in the stream ('D'
    for disk 0, 'X' for each further disk): stopped and running VMs arrive
    with both disks equal by checksum, the source's files gone."""
    ha, hb = hosts
    a, b = ha.d, hb.d
    a.kvz("create", "vm", "off", "--kernel", SNAPCOUNT, "--memory", "64M", "--no-balloon",
          "--disk", "8M", "--disk", "4M", "--disk", "2M")
    sums = [fill(img(a, f), f) for f in ("off.img", "off@1.img", "off@2.img")]
    r = a.kvz("migrate", "off", "--to", "b", "--offline")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    assert not [f for f in image_files(a) if f.startswith("off")]
    g = b.guest("off")
    assert g["state"] == "stopped"
    assert [x["path"] for x in g["config"]["disks"]] == [img(b, f) for f in ("off.img", "off@1.img",
                                                                            "off@2.img")]
    assert [sha(img(b, f)) for f in ("off.img", "off@1.img", "off@2.img")] == sums
    b.kvz("start", "off")
    r = b.kvz("migrate", "off", "--to", "a", "--offline")
    assert r.stdout.strip().endswith("disk copied"), r.stdout
    assert a.guest("off")["state"] == "running"
    assert [sha(img(a, f)) for f in ("off.img", "off@1.img", "off@2.img")] == sums
    assert not [f for f in image_files(b) if f.startswith("off")]
    assert disks_of(argv_of(a, "off")) == [img(a, f) for f in ("off.img", "off@1.img", "off@2.img")]
    a.kvz("stop", "off", "--force")


def test_hostile_disks_in_a_reservation(hosts):  # noqa: F811
    """A peer's disks 1.. are checked as a client's: file names other than
    NAME@N.img, bad sizes, formats, too many; a peer's disks[0] is never
    stored (the target makes it from the flat keys)."""
    ha, hb = hosts
    bad = [
        [{"path": "/etc/shadow"}, {"path": "/etc/passwd", "size": 1 << 20}],
        [{}, {"path": "/x/evil4@1.img/../../etc/passwd", "size": 1 << 20}],
        [{}, {"path": "/x/other@1.img", "size": 1 << 20}],
        [{}, {"path": "/x/evil4@01.img", "size": 1 << 20}],
        [{}, {"path": "/x/evil4@1.img", "size": 1000}],
        [{}, {"path": "/x/evil4@1.img", "size": 1 << 20, "format": "vmdk"}],
        [{}, {"path": "/x/evil4@1.img", "size": "big"}],
        [{}] + [{"path": "/x/evil4@%d.img" % i, "size": 1 << 20} for i in range(1, 9)],
        {"not": "a list"},
    ]
    for disks in bad:
        req = reservation("evil4")
        req["disk"] = "copy"
        req["config"].update(disk_path="/x/evil4.img", disk_size=1 << 20, disks=disks)
        st, r = tcp_api(hb, "POST", "/v1/migrations", req, TOKEN_B)
        assert st == 400, (disks, st, r)
        assert hb.d.api("GET", "/v1/guests/evil4")[0] == 404
    req = reservation("evil3")
    req["config"]["disks"] = [{"path": "/etc/shadow", "size": 1}]
    st, r = tcp_api(hb, "POST", "/v1/migrations", req, TOKEN_B)
    assert st == 201, r
    assert "disks" not in hb.d.guest("evil3")["config"]        # no disk: no list
    assert tcp_api(hb, "DELETE", "/v1/migrations/evil3", None, TOKEN_B)[0] == 200
    assert not [f for f in image_files(hb.d) if f.startswith("evil")]


@pytest.fixture
def real():
    """kvzd with the real kvz-vmm, the idle test guest's folder an image dir."""
    if not os.path.exists(KVZ_VMM) or not os.path.exists(IDLE):
        pytest.skip("kvz-vmm or the idle test guest not built")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("no usable /dev/kvm on this machine")
    d = Kvzd(vmm=KVZ_VMM, images_dirs=[os.path.dirname(IDLE)])
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def test_real_vmm_several_disks(real):
    """The real kvz-vmm takes kvzd's --disk options and grows the second
    disk live (block_resize vdb)."""
    d = real
    d.kvz("create", "vm", "rv", "--kernel", IDLE, "--memory", "32M", "--no-balloon",
          "--disk", "8M", "--disk", "4M,format=qcow2", "--disk", "2M")
    d.kvz("start", "rv")
    d.kvz("set", "rv", "--disk", "2:6M")
    assert os.path.getsize(img(d, "rv@2.img")) == 6 << 20
    d.kvz("set", "rv", "--disk", "1:12M")
    assert d.guest("rv")["config"]["disks"][1]["size"] == 12 << 20
    assert d.events("rv")[-1]["detail"] == "disk 1 12M (live)"
    with open(os.path.join(d.state, "logs", "rv.log")) as f:
        log = f.read()
    assert "block_resize: vdc is now 6291456 bytes" in log, log
    d.kvz("stop", "rv", "--force")


def test_real_vmm_snapshot_of_every_disk(real):
    """The real kvz-vmm: a running VM with three disks (two raw, one
    qcow2) snapshotted and restored: kvz-vmm comes back from the state file
    with all three, and both raw disks hold what they held at the
    snapshot."""
    d = real
    d.kvz("create", "vm", "rs", "--kernel", IDLE, "--memory", "32M", "--no-balloon",
          "--disk", "8M", "--disk", "4M", "--disk", "2M,format=qcow2")
    raw = [img(d, "rs.img"), img(d, "rs@1.img")]
    d.kvz("start", "rs")
    for p, tag in zip(raw, (b"SNAP-0", b"SNAP-1")):
        put(p, tag)
    d.kvz("snapshot", "create", "rs", "s")
    assert sorted(os.listdir(os.path.join(d.state, "snapshots", "rs", "s"))) == [
        "disk.img", "disk1.img", "disk2.img", "state"]
    for p, tag in zip(raw, (b"LATE-0", b"LATE-1")):
        put(p, tag)
    pid = d.guest("rs")["pid"]
    d.kvz("snapshot", "restore", "rs", "s")
    g = d.wait_for(lambda: d.running_again("rs", pid), what="rs restored")
    argv = argv_of(d, "rs")
    assert "--incoming" in argv
    assert disks_of(argv) == [raw[0], raw[1], img(d, "rs@2.img") + ",format=qcow2"]
    assert [got(p, 6) for p in raw] == [b"SNAP-0", b"SNAP-1"]
    assert g["state"] == "running"
    d.kvz("stop", "rs", "--force")


def test_cli_usage_lines():
    r = subprocess.run([KVZ, "set", "x", "--disk", "a:1G"], capture_output=True, text=True)
    one_line_failure(r, "bad disk number")
    r = subprocess.run([KVZ, "set", "x", "--remove-disk", "two"], capture_output=True, text=True)
    one_line_failure(r, "--remove-disk")
    r = subprocess.run([KVZ, "create", "vm", "x", "--disk", "8M,format"], capture_output=True,
                       text=True)
    one_line_failure(r, "want format=")
