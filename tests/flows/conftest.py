import pytest


@pytest.fixture(scope="session")
def harness():
    """A real, temporary Prefect server for the session (startup takes ~12 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def night_dir(tmp_path, monkeypatch):
    """A fresh project directory to run nights in (the working directory during the test)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
