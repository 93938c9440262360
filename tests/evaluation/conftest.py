from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def eval_world(request, tmp_path_factory) -> Path:
    """The tiny preset of the synthetic world (shared with other test folders when they made it)."""
    try:
        return request.getfixturevalue("tiny_world")
    except pytest.FixtureLookupError:
        from dicetalk.synthetic import generate_dataset

        out = tmp_path_factory.mktemp("synth") / "tiny"
        generate_dataset(out, preset="tiny", seed=0, workers=2, progress=False)
        return out


@pytest.fixture(scope="session", autouse=True)
def decode_training_clips_once():
    """Training runs of this folder share their decoded clips: the read path runs once, training many times."""
    from dicetalk.evaluation import training

    decode, cache = training._decode, {}

    def decode_once(clips, *args):
        key = tuple(c.stem for c in clips)
        if key not in cache:
            cache[key] = decode(clips, *args)
        return cache[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "_decode", decode_once)
        yield


@pytest.fixture(scope="session")
def shipped_judges():
    from dicetalk.evaluation import load_judges

    return load_judges()


@pytest.fixture(scope="session")
def quick_judges(eval_world, tmp_path_factory) -> Path:
    """Judges trained for a few steps on the tiny world through the CLI (seed 0)."""
    from dicetalk.cli.main import main

    out = tmp_path_factory.mktemp("judges") / "quick"
    code = main(["train-judges", str(eval_world), "--out", str(out), "--seed", "0", "--epochs", "1", "--max-steps", "3", "--quiet"])
    assert code == 0
    return out
