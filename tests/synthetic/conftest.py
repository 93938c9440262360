import pytest


@pytest.fixture
def small_options() -> dict:
    """A slice of the tiny preset (5 clips) for tests that generate several worlds."""
    return dict(identities=2, hdtf_identities=1, emotions=("happy", "neutral"))
