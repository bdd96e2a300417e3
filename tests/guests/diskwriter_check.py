"""Checks of a disk diskwriter.elf stamped (diskwriter.S): write n fills
sector n % NSECT with the qword n. Shared by the kvz-vmm and kvzd tests."""
import struct

NSECT = 8192


def disk_stamps(path):
    """Each stamped sector's stamp, after checking it is whole."""
    with open(path, "rb") as f:
        data = f.read(NSECT * 512)
    out = []
    for s in range(NSECT):
        q = struct.unpack_from("<64Q", data, s * 512)
        assert len(set(q)) == 1, "sector %d torn: %r" % (s, q[:2])
        out.append(q[0])
    return out


def contiguous_top(stamps):
    """The disk holds the last NSECT writes of one count, none lost: each
    sector s has the largest stamp <= the top one congruent to s. Returns
    the top stamp."""
    top = max(stamps)
    for s, v in enumerate(stamps):
        want = top - ((top - s) % NSECT)
        assert v == (want if want > 0 else 0), (s, v, top)
    return top
