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
