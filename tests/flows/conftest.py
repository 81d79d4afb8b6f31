import pytest


@pytest.fixture(scope="session")
def harness():
    """A real, temporary Prefect server for the session (startup takes ~12 s here)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
