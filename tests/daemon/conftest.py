"""Fixtures shared by the daemon's pytest files."""
import pytest

from kvzd_harness import FAKE, fake_kvzd


@pytest.fixture
def kvzd():
    """A started kvzd whose supervisors are the stand-in (fake_supervisor.c)."""
    d = fake_kvzd()
    if not d:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    d.start()
    yield d
    d.cleanup()


@pytest.fixture
def fake():
    """kvzd with stand-in supervisors, not started: tests pass options."""
    d = fake_kvzd()
    if not d:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    yield d
    d.cleanup()
