"""Fixtures of the web UI tests."""
import pytest

from webui_harness import FAKE, fake_kvzd


@pytest.fixture
def fake():
    """kvzd with stand-in supervisors, not started: tests pass options."""
    d = fake_kvzd()
    if not d:
        pytest.skip("stand-in supervisor not built: " + FAKE)
    yield d
    d.cleanup()
