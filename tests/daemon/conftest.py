"""Fixtures shared by the daemon's pytest files."""
import pytest

import kvzd_harness
from kvzd_harness import FAKE, fake_kvzd


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries every kvzd's log and its guests' logs
    (the daemons of this test; the list starts afresh with each test)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        rep.sections.append(("kvzd logs", kvzd_harness.logs_of_all()))
    if rep.when == "teardown":
        kvzd_harness.ALL.clear()


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
