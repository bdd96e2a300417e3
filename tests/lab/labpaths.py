"""Where a lab test finds the tree: SOURCE_DIR, BUILD_DIR, and lab/kvzlab.py
on sys.path. Every lab test starts with

    from labpaths import BUILD_DIR, SOURCE_DIR, kvzlab

pytest (and python3 running a script) puts the file's own folder first on
sys.path, so the files in tests/lab import this directly; those elsewhere put
tests/lab on sys.path first (tests/ct/ctlab.py does it for the kvz-ct lab
tests). meson sets KVZ_SOURCE_DIR and KVZ_BUILD_DIR; by hand both default to
this tree and its build/ (kvzlab.build_dir())."""
import os
import sys

SOURCE_DIR = os.environ.get("KVZ_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE_DIR, "lab"))
import kvzlab  # noqa: E402

BUILD_DIR = kvzlab.build_dir()
# For the tools the tests start (they find their build through it too).
os.environ.setdefault("KVZ_BUILD_DIR", BUILD_DIR)

# The VMM and the static QMP client the VM lab tests copy into L1.
KVZ_VMM = os.path.join(BUILD_DIR, "src", "vmm", "kvz-vmm")
QMP_SEND = os.path.join(BUILD_DIR, "tests", "virtio", "qmp-send")


def skip_unless_vmm_lab():
    """Skips (saying why) unless the lab can run and kvz-vmm and qmp-send are
    built; qmp-send is static, so a sanitizer build has none."""
    import pytest
    kvzlab.skip_unless_lab()
    for path in (QMP_SEND, KVZ_VMM):
        if not os.path.exists(path):
            pytest.skip(f"{path} not built (qmp-send is not built under sanitizers)")
