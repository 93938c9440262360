from pathlib import Path

import pytest

from dicetalk.synthetic import generate_dataset


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The whole tiny preset, generated once, by two worker processes."""
    out = tmp_path_factory.mktemp("synth") / "tiny"
    summary = generate_dataset(out, preset="tiny", seed=0, workers=2, progress=False)
    assert summary.generated == summary.clips > 0
    return out


@pytest.fixture
def small_options() -> dict:
    """A slice of the tiny preset (5 clips) for tests that generate several worlds."""
    return dict(identities=2, hdtf_identities=1, emotions=("happy", "neutral"))
