"""qcow2 against qemu-img: images qemu-img makes are read back by kvz's
code, images kvz's code writes pass `qemu-img check` and `qemu-img compare`,
a writer killed with SIGKILL leaves a consistent image holding every write
acknowledged by a flush, and `kvz-image` answers bad input with one line."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import pytest

BUILD = os.environ.get("KVZ_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
WRITER = os.path.join(BUILD, "tests/block/qcow2_writer")
KIMG = os.path.join(BUILD, "src/image/kvz-image")
QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")

pytestmark = pytest.mark.skipif(
    not QEMU_IMG or not QEMU_IO,
    reason="qemu-img/qemu-io not installed (Debian package qemu-utils)")

MiB = 1 << 20


def run(*args, ok=True):
    p = subprocess.run(list(args), capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"{args} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p


def qcheck(path):
    """qemu-img check: no corruption (leaks allowed); returns the report."""
    p = run(QEMU_IMG, "check", "--output=json", path, ok=False)
    assert p.returncode in (0, 3), f"qemu-img check {path}: {p.returncode} {p.stdout}{p.stderr}"
    rep = json.loads(p.stdout)
    assert rep.get("corruptions", 0) == 0, rep
    return rep


def compare(a, b):
    run(QEMU_IMG, "compare", a, b)


def random_raw(path, size, seed, holes=True):
    """Random data with zero runs, so images get zero and absent clusters."""
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        pos = 0
        while pos < size:
            n = min(size - pos, rnd.choice([4096, 65536, 200000, MiB]))
            if not holes or rnd.random() < 0.6:
                f.seek(pos)
                # compressible and incompressible data both
                f.write(rnd.randbytes(n) if rnd.random() < 0.5 else bytes([rnd.randrange(4)]) * n)
            pos += n


def kvz_to_raw(img, out):
    run(KIMG, "convert", "-O", "raw", img, out)


@pytest.fixture
def d(tmp_path):
    return tmp_path


@pytest.mark.parametrize("opts", ["cluster_size=65536", "cluster_size=512",
                                  "cluster_size=2M", "compat=0.10"])
def test_reads_qemu_images(d, opts):
    raw = str(d / "src.raw")
    random_raw(raw, 24 * MiB, 1)
    img = str(d / "q.qcow2")
    run(QEMU_IMG, "convert", "-f", "raw", "-O", "qcow2", "-o", opts, raw, img)
    # zero clusters (v3 only sets the flag; v2 writes zeros) and a rewrite
    run(QEMU_IO, "-f", "qcow2", "-c", "write -z 1M 3M", "-c", "write -P 0x5a 7M 100k", img)
    out = str(d / "out.raw")
    kvz_to_raw(img, out)
    compare(img, out)


def test_reads_compressed(d):
    raw = str(d / "src.raw")
    random_raw(raw, 16 * MiB, 2)
    img = str(d / "c.qcow2")
    run(QEMU_IMG, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img)
    rep = run(QEMU_IMG, "check", "--output=json", img).stdout
    assert json.loads(rep)["compressed-clusters"] > 0
    out = str(d / "out.raw")
    kvz_to_raw(img, out)
    compare(raw, out)


def test_reads_backing_chain(d):
    raw = str(d / "base.raw")
    random_raw(raw, 16 * MiB, 3)
    base = str(d / "base.qcow2")
    run(QEMU_IMG, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, base)
    mid = str(d / "mid.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 0x11 2M 1M", "-c", "write -z 5M 64k", mid)
    top = str(d / "top.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top, "20M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 0x22 2500k 10k", "-c", "write -P 3 18M 1M", top)
    out = str(d / "out.raw")
    kvz_to_raw(top, out)
    compare(top, out)
    # raw base too
    top2 = str(d / "top2.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top2)
    out2 = str(d / "out2.raw")
    kvz_to_raw(top2, out2)
    compare(raw, out2)


@pytest.mark.parametrize("opts,seed", [("cluster_size=65536", 1), ("cluster_size=512", 2),
                                       ("cluster_size=2M", 3), ("compat=0.10", 4),
                                       ("cluster_size=4096", 5)])
def test_writes_pass_qemu_check(d, opts, seed):
    img, mirror = str(d / "w.qcow2"), str(d / "m.raw")
    run(QEMU_IMG, "create", "-f", "qcow2", "-o", opts, img, "64M")
    with open(mirror, "wb") as f:
        f.truncate(64 * MiB)
    run(WRITER, "exercise", img, mirror, str(seed), "400")
    qcheck(img)
    compare(img, mirror)


def test_small_clusters_grow_refcount_table(d):
    """512-byte clusters: one refcount-table cluster covers 8 MiB, so
    filling 40 MiB makes kvz grow the table (and qemu-img accept it)."""
    img, mirror = str(d / "g.qcow2"), str(d / "m.raw")
    run(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=512", img, "40M")
    with open(img, "rb") as f:
        hdr = f.read(64)
    before = struct.unpack(">Q", hdr[48:56])[0]
    raw = str(d / "src.raw")
    random_raw(raw, 40 * MiB, 9, holes=False)
    with open(mirror, "wb") as f:
        f.truncate(40 * MiB)
    run(WRITER, "exercise", img, mirror, "11", "300")
    with open(img, "rb") as f:
        hdr = f.read(64)
    assert struct.unpack(">Q", hdr[48:56])[0] != before, "refcount table did not move"
    qcheck(img)
    compare(img, mirror)


def test_writes_over_backing(d):
    raw = str(d / "base.raw")
    random_raw(raw, 32 * MiB, 4)
    base = str(d / "base.qcow2")
    run(QEMU_IMG, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, base)
    top = str(d / "top.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, "48M")
    mirror = str(d / "m.raw")
    shutil.copy(raw, mirror)
    os.truncate(mirror, 48 * MiB)
    run(WRITER, "exercise", top, mirror, "6", "400")
    qcheck(top)
    compare(top, mirror)
    compare(base, raw)  # the base is untouched


def test_overwrites_compressed(d):
    """Writes into compressed clusters reallocate them and free the old."""
    raw = str(d / "src.raw")
    random_raw(raw, 16 * MiB, 5)
    img = str(d / "c.qcow2")
    run(QEMU_IMG, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, img)
    mirror = str(d / "m.raw")
    shutil.copy(raw, mirror)
    run(WRITER, "exercise", img, mirror, "8", "300")
    qcheck(img)
    compare(img, mirror)


def test_kvz_image_create_info_check(d):
    img = str(d / "n.qcow2")
    run(KIMG, "create", img, "3G")
    info = json.loads(run(QEMU_IMG, "info", "--output=json", img).stdout)
    assert info["virtual-size"] == 3 << 30 and info["format"] == "qcow2"
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert run(QEMU_IMG, "check", img).returncode == 0
    mine = json.loads(run(KIMG, "--json", "info", img).stdout)
    assert mine["virtual-size"] == 3 << 30 and mine["cluster-size"] == 65536
    chk = json.loads(run(KIMG, "--json", "check", img).stdout)
    assert chk["corruptions"] == 0 and chk["leaks"] == 0
    small = str(d / "s.qcow2")
    run(KIMG, "create", "--cluster-size", "512", small, "2G")  # big L1 table
    assert run(QEMU_IMG, "check", small).returncode == 0
    base = str(d / "b.raw")
    random_raw(base, 8 * MiB, 6)
    top = str(d / "t.qcow2")
    run(KIMG, "create", "-b", "b.raw", top)
    info = json.loads(run(QEMU_IMG, "info", "--output=json", top).stdout)
    assert info["backing-filename"] == "b.raw" and info["backing-filename-format"] == "raw"
    assert info["virtual-size"] == 8 * MiB
    compare(top, base)
    raw = str(d / "r.raw")
    run(KIMG, "create", "-f", "raw", "--preallocate", raw, "4M")
    assert os.stat(raw).st_blocks * 512 >= 4 * MiB


def test_kvz_check_agrees_with_qemu(d):
    """A leak made on purpose (a refcount raised by hand) is a leak for both."""
    img = str(d / "l.qcow2")
    run(KIMG, "create", img, "16M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 7 0 1M", img)
    assert run(KIMG, "check", img).returncode == 0
    with open(img, "r+b") as f:
        hdr = f.read(64)
        rt = struct.unpack(">Q", hdr[48:56])[0]
        f.seek(rt)
        rb = struct.unpack(">Q", f.read(8))[0]
        f.truncate(256 * 65536)  # clusters past the data, inside the file
        f.seek(rb + 2 * 200)  # cluster 200: unused, refcount 0 -> 1
        f.write(struct.pack(">H", 1))
    assert run(QEMU_IMG, "check", img, ok=False).returncode == 3
    p = run(KIMG, "--json", "check", img, ok=False)
    assert p.returncode == 3 and json.loads(p.stdout)["leaks"] == 1
    with open(img, "r+b") as f:  # now a used cluster counted 0: corruption
        f.seek(rb + 2 * 200)
        f.write(struct.pack(">H", 0))
        f.seek(rb + 2 * 4)
        f.write(struct.pack(">H", 0))
    assert run(QEMU_IMG, "check", img, ok=False).returncode == 2
    assert run(KIMG, "check", img, ok=False).returncode == 2


@pytest.mark.parametrize("compress", [False, True])
def test_kvz_image_convert(d, compress):
    raw = str(d / "src.raw")
    random_raw(raw, 20 * MiB + 12345 // 512 * 512, 7)
    q = str(d / "o.qcow2")
    args = [KIMG, "convert", "-O", "qcow2"] + (["-c"] if compress else []) + [raw, q]
    run(*args)
    rep = qcheck(q)
    if compress:
        assert rep["compressed-clusters"] > 0
    compare(raw, q)
    back = str(d / "back.raw")
    run(KIMG, "convert", "-O", "raw", q, back)
    compare(raw, back)
    assert open(raw, "rb").read() == open(back, "rb").read()
    q2 = str(d / "o2.qcow2")
    run(KIMG, "convert", "-O", "qcow2", "--cluster-size", "4096", q, q2)
    qcheck(q2)
    compare(raw, q2)
    assert not [p for p in os.listdir(d) if "partial" in p]


def test_kvz_image_resize(d):
    img = str(d / "r.qcow2")
    run(KIMG, "create", "--cluster-size", "512", img, "1M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 9 0 1M", img)
    run(KIMG, "resize", "-f", "qcow2", img, "+200M")  # L1 table must grow
    info = json.loads(run(QEMU_IMG, "info", "--output=json", img).stdout)
    assert info["virtual-size"] == 201 * MiB
    qcheck(img)
    run(QEMU_IO, "-f", "qcow2", "-c", "read -P 9 0 1M", "-c", "read -P 0 1M 200M", img)
    raw = str(d / "r.raw")
    run(KIMG, "create", "-f", "raw", raw, "1M")
    run(KIMG, "resize", "-f", "raw", raw, "5M")
    assert os.path.getsize(raw) == 5 * MiB


def one_error_line(p):
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("kvz-image: error: ")
    return lines[0]


def test_kvz_image_errors(d):
    img = str(d / "e.qcow2")
    run(KIMG, "create", img, "1M")
    assert "exists" in one_error_line(run(KIMG, "create", img, "1M", ok=False))
    assert "No such file" in one_error_line(run(KIMG, "info", str(d / "missing"), ok=False))
    assert "shrinking" in one_error_line(run(KIMG, "resize", "-f", "qcow2", img, "512K", ok=False))
    # a writable image is never probed: the format must be named
    assert "-f raw|qcow2" in one_error_line(run(KIMG, "resize", img, "2M", ok=False))
    other = str(d / "x.raw")
    run(KIMG, "create", "-f", "raw", other, "1M")
    assert "not overwriting" in one_error_line(run(KIMG, "convert", "-O", "raw", img, other, ok=False))
    one_error_line(run(KIMG, "create", "-f", "vmdk", str(d / "v"), "1M", ok=False))
    one_error_line(run(KIMG, "create", str(d / "z.qcow2"), "1X", ok=False))
    one_error_line(run(KIMG, "frobnicate", ok=False))
    # a chain that loops
    a, b = str(d / "la.qcow2"), str(d / "lb.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", a, "1M")
    run(QEMU_IMG, "create", "-f", "qcow2", "-u", "-b", "la.qcow2", "-F", "qcow2", b, "1M")
    run(QEMU_IMG, "rebase", "-u", "-f", "qcow2", "-b", "lb.qcow2", "-F", "qcow2", a)
    assert "loops" in one_error_line(run(KIMG, "info", a, ok=False))
    assert "loops" in one_error_line(run(KIMG, "convert", "-O", "raw", b, str(d / "o"), ok=False))
    assert not os.path.exists(str(d / "o"))


def patch(path, off, fmt, val):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, val))


HOSTILE = [
    ("version 9", 4, ">I", 9, "version"),
    ("cluster bits 30", 20, ">I", 30, "cluster bits"),
    ("absurd size", 24, ">Q", 1 << 62, "too large"),
    ("L1 beyond the file", 40, ">Q", 1 << 40, "L1 table offset"),
    ("L1 unaligned", 40, ">Q", 65536 + 8, "L1 table offset"),
    ("L1 too small", 36, ">I", 0, "L1 table"),
    ("L1 huge", 36, ">I", 1 << 30, "L1 table"),
    ("reftable beyond the file", 48, ">Q", 1 << 45, "refcount table"),
    ("reftable over L1", 48, ">Q", 3 * 65536, "overlap"),
    ("reftable huge", 56, ">I", 1 << 20, "refcount table"),
    ("encrypted", 32, ">I", 1, "encrypted"),
    ("unknown incompatible feature", 72, ">Q", 1 << 40, "incompatible"),
    ("header length", 100, ">I", 7, "header length"),
    ("backing name outside", 8, ">Q", 1 << 20, "backing"),
]


@pytest.mark.parametrize("name,off,fmt,val,msg", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_headers(d, name, off, fmt, val, msg):
    img = str(d / "h.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", img, "64M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", img)
    patch(img, off, fmt, val)
    if name == "backing name outside":
        patch(img, 16, ">I", 10)
    line = one_error_line(run(KIMG, "info", img, ok=False))
    assert msg in line, line


def l2_entry_offset(img, index):
    with open(img, "rb") as f:
        hdr = f.read(64)
        l1 = struct.unpack(">Q", hdr[40:48])[0]
        f.seek(l1)
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
    return l2 + 8 * index


@pytest.mark.parametrize("what", ["outside", "reserved", "l1", "reftable", "itself",
                                  "unaligned"])
def test_hostile_l2_entries(d, what):
    img = str(d / "h.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", img, "64M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 1 0 1M", img)
    with open(img, "rb") as f:
        hdr = f.read(64)
    l1 = struct.unpack(">Q", hdr[40:48])[0]
    rt = struct.unpack(">Q", hdr[48:56])[0]
    ent = l2_entry_offset(img, 3)
    target = {"outside": 1 << 40, "reserved": 1 << 57, "l1": l1, "reftable": rt,
              "itself": ent & ~0xffff, "unaligned": 5 * 65536 + 512}[what]
    if what == "reserved":  # a valid offset with a reserved bit set
        target |= 5 * 65536
    patch(img, ent, ">Q", (1 << 63) | target)
    out = str(d / "o.raw")
    line = one_error_line(run(KIMG, "convert", "-O", "raw", img, out, ok=False))
    assert "qcow2" in line
    assert not os.path.exists(out)
    # writing into that cluster (guest cluster 3) is refused the same way
    p = run(WRITER, "write", img, str(3 * 65536 + 100), "1000", ok=False)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "qcow2_writer: " in p.stderr


def test_hostile_l1_entry_on_refcount_block(d):
    img = str(d / "h.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", img, "64M")
    with open(img, "rb") as f:
        hdr = f.read(64)
    rt = struct.unpack(">Q", hdr[48:56])[0]
    with open(img, "rb") as f:
        f.seek(rt)
        rb = struct.unpack(">Q", f.read(8))[0]
    l1 = struct.unpack(">Q", hdr[40:48])[0]
    patch(img, l1, ">Q", (1 << 63) | rb)
    assert "overlap" in one_error_line(run(KIMG, "info", img, ok=False))


def pattern(off, ln, seed):
    """qcow2_writer's fill(): byte i is ((off + i) * 31 + seed * 7 + 1) mod 256,
    which repeats every 256 bytes."""
    base = (off * 31 + seed * 7 + 1) & 255
    cycle = bytes((base + 31 * i) & 255 for i in range(256))
    return (cycle * (ln // 256 + 1))[:ln]


def replay(log, size):
    """Expected content from the writer's log: bytes of writes acknowledged
    by a flush, with a mask of the bytes a later (unflushed) write touched."""
    exp = bytearray(size)
    known = bytearray(size)  # 1: must match exp
    pending = []
    for line in open(log):
        f = line.split()
        if not f:
            continue
        if f[0] == "F":
            for off, ln, seed in pending:
                if seed is None:
                    exp[off:off + ln] = bytes(ln)
                else:
                    exp[off:off + ln] = pattern(off, ln, seed)
                known[off:off + ln] = b"\1" * ln
            pending = []
        elif f[0] == "I":
            pending.append((int(f[1]), int(f[2]), int(f[3])))
        elif f[0] == "Z":
            pending.append((int(f[1]), int(f[2]), None))
    for off, ln, _ in pending:  # issued, maybe half done: unknown
        known[off:off + ln] = bytes(ln)
    return exp, known


WRITER_LAYERS = {"library": {}, "block-layer": {"KVZ_WRITER_BLK": "1"}}


@pytest.mark.parametrize("layer", WRITER_LAYERS)
def test_crash_consistency_sigkill(d, layer):
    """20 SIGKILLs at random moments of a writer (allocations, L2 tables,
    refcount blocks and a growing refcount table with 512-byte clusters):
    qemu-img check finds no corruption each time, and every write that a
    completed flush acknowledged reads back. The writer drives the library,
    or the block layer as kvz-vmm's virtio-blk does (metadata cached until
    a flush, quiesced now and then as by a VM's pause)."""
    img, log = str(d / "c.qcow2"), str(d / "log")
    size = 24 * MiB
    run(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=512", img, str(size))
    rnd = random.Random(1234)
    flushed_total = 0
    for rnd_i in range(20):
        open(log, "w").close()
        w = subprocess.Popen([WRITER, "crash", img, log, str(rnd_i + 1)],
                             stderr=subprocess.PIPE,
                             env=dict(os.environ, **WRITER_LAYERS[layer]))
        try:
            time.sleep(rnd.uniform(0.1, 0.8))
            assert w.poll() is None, w.stderr.read()
        finally:
            w.send_signal(signal.SIGKILL)
            w.wait()
        flushed_total += check_round(d, img, log, size, rnd_i)
    assert flushed_total >= 5, "too few rounds reached a flush"


def check_round(d, img, log, size, rnd_i):
    """qemu-img check clean (leaks allowed) and the writes of the round's
    log that a flush acknowledged read back; whether any was flushed."""
    qcheck(img)
    exp, known = replay(log, size)
    out = str(d / "now.raw")
    if os.path.exists(out):
        os.unlink(out)
    run(QEMU_IMG, "convert", "-O", "raw", img, out)
    got = open(out, "rb").read()
    bad = [i for i in range(0, size, 512) if known[i] and got[i] != exp[i]]
    assert not bad, f"round {rnd_i}: flushed data lost at {bad[:5]}"
    # the next round's log covers only its own writes; bytes it does not
    # touch keep what this round checked
    return any(known)


@pytest.mark.parametrize("layer", WRITER_LAYERS)
def test_crash_at_write_boundaries(d, layer):
    """The writer stopped just before its N-th pwrite (an LD_PRELOAD shim),
    for 60 values of N on one image that grows its refcount table: every
    point between a data, refcount, L2, L1 or header write is a crash."""
    shim = os.path.join(BUILD, "tests/block/libqcow2_crash_shim.so")
    if "libasan" in run("ldd", WRITER).stdout:
        pytest.skip("sanitizer build: LD_PRELOAD of the crash shim is not possible")
    img, log = str(d / "b.qcow2"), str(d / "log")
    size = 12 * MiB
    run(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=512", img, str(size))
    rnd = random.Random(99)
    for i in range(60):
        open(log, "w").close()
        env = dict(os.environ, LD_PRELOAD=shim, KVZ_SMALL_WRITES="1",
                   KVZ_CRASH_AT=str(rnd.randint(1, 1500)), **WRITER_LAYERS[layer])
        p = subprocess.run([WRITER, "crash", img, log, str(1000 + i)], env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 137, p.stderr
        check_round(d, img, log, size, i)
    with open(img, "rb") as f:
        assert struct.unpack(">I", f.read(60)[56:60])[0] > 1, "refcount table never grew"


def test_kvz_cli_runs_kvz_image(d):
    """`kvz image` is kvz-image, --json passed on, no kvzd needed."""
    kvz = os.path.join(BUILD, "src/cli/kvz")
    img = str(d / "k.qcow2")
    env = dict(os.environ, KVZ_SOCKET=str(d / "no-kvzd.sock"))
    p = subprocess.run([kvz, "image", "create", img, "5M"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([kvz, "--json", "image", "info", img], env=env, capture_output=True, text=True)
    assert json.loads(p.stdout)["virtual-size"] == 5 * MiB
    p = subprocess.run([kvz, "image", "check", str(d / "none")], env=env, capture_output=True,
                       text=True)
    one_error_line(p)


def test_kvz_image_convert_cancel(d):
    """Ctrl-C in the middle of a (compressing, so slow) convert: exit 1 with
    one line, no destination and no partial file left."""
    raw = str(d / "src.raw")
    with open(raw, "wb") as f:
        f.write(random.Random(3).randbytes(96 * MiB))
    dst = str(d / "out.qcow2")
    p = subprocess.Popen([KIMG, "convert", "-c", "-O", "qcow2", raw, dst],
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    assert p.poll() is None, "convert finished before it could be cancelled"
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=30)[1]
    assert p.returncode == 1 and err.strip() == "kvz-image: error: cancelled", err
    assert os.listdir(d) == ["src.raw"]


@pytest.mark.parametrize("bit,word", [(0, "dirty"), (1, "corrupt")])
def test_dirty_or_corrupt_images_read_only(d, bit, word):
    """An image with dirty lazy refcounts or marked corrupt reads, but is
    refused for writing until repaired."""
    img = str(d / "z.qcow2")
    run(QEMU_IMG, "create", "-f", "qcow2", "-o", "lazy_refcounts=on", img, "8M")
    run(QEMU_IO, "-f", "qcow2", "-c", "write -P 4 0 64k", img)
    patch(img, 72, ">Q", 1 << bit)
    out = str(d / "o.raw")
    run(KIMG, "convert", "-O", "raw", img, out)
    assert open(out, "rb").read(65536) == b"\4" * 65536
    p = run(WRITER, "write", img, "0", "10", ok=False)
    assert p.returncode == 1 and word in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert "repair" in one_error_line(run(KIMG, "resize", "-f", "qcow2", img, "16M", ok=False))


def test_many_tables_in_falling_order_open_fast(d):
    """512K L2 tables listed from the end of the file backwards: opening
    must stay quick (the metadata set is sorted once, not per table)."""
    n, cs = 1 << 19, 512
    l1_clusters = n * 8 // cs
    first_l2 = 2 + l1_clusters
    img = str(d / "falling.qcow2")
    hdr = struct.pack(">IIQIIQIIQQIIQQQQII", 0x514649FB, 3, 0, 0, 9, n * 64 * cs, 0, n,
                      2 * cs, cs, 1, 0, 0, 0, 0, 0, 4, 104)
    with open(img, "wb") as f:
        f.write(hdr)
        f.seek(2 * cs)
        f.write(b"".join(struct.pack(">Q", (first_l2 + n - 1 - i) * cs) for i in range(n)))
        f.truncate((first_l2 + n) * cs)
    start = time.monotonic()
    p = run(KIMG, "--json", "info", img)
    assert json.loads(p.stdout)["virtual-size"] == n * 64 * cs
    assert time.monotonic() - start < 4  # a sorted insert each: ~25 s
