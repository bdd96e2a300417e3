"""Fixtures of the kvz-ct tests (pytest loads this file for every test here)."""
import os
import shutil
import subprocess

import pytest

from ctenv import CACHE, PROBE, Env, kvz


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.cleanup()


@pytest.fixture(scope="session")
def bbroot(tmp_path_factory):
    """A busybox root directory (from the template cache) with ctprobe."""
    tmp = tmp_path_factory.mktemp("bb")
    kvz("create", "--name", "warmup", "--template", "busybox", "--disk", "128M",
        "--ct-root", str(tmp / "ct"))
    root = tmp / "root"
    root.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", os.path.join(CACHE, "busybox.tar.zst"), "-C", str(root)],
                   check=True)
    shutil.copy(PROBE, root / "bin" / "ctprobe")
    return str(root)
