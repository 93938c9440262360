import json
from pathlib import Path

import pytest

# The people of the held-out world: identities of the `default` world (seed 0: `data/world`, on
# which the shipped judges were trained) that are NOT training identities there. An identity is a
# pure function of (world seed, index) (`dicetalk.synthetic.identity.sample_identity`): MEAD-like
# `mead_XXX` has index XXX, HDTF-like `hdtf_XXX` has index 10000 + XXX. The shipped judges trained
# on mead_000..mead_015 and hdtf_000..hdtf_005 of seed 0 (their judges.json lists them).
# tiny preset name -> (held-out name, index, split in the held-out world)
HELDOUT_SEED = 0
HELDOUT = {
    "mead_000": ("mead_020", 20, "val"),
    "mead_001": ("mead_021", 21, "val"),
    "mead_002": ("mead_022", 22, "val"),
    "mead_003": ("mead_023", 23, "test"),
    "hdtf_000": ("hdtf_006", 10006, "val"),
    "hdtf_001": ("hdtf_007", 10007, "test"),
}


@pytest.fixture(scope="session")
def identity_index():
    """name -> index of a world identity (see `dicetalk.synthetic.dataset.identity_names`)."""
    from dicetalk.synthetic.dataset import HDTF_INDEX_OFFSET

    def index(name: str) -> int:
        dataset, number = name.split("_")
        return int(number) + (HDTF_INDEX_OFFSET if dataset == "hdtf" else 0)

    return index


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


@pytest.fixture(scope="session")
def heldout_world(tmp_path_factory) -> Path:
    """The tiny preset's clips (4 MEAD-like people x 8 emotions at level 3, 2 HDTF-like people), made of
    people no shipped judge trained on: `data/world`'s held-out identities (:data:`HELDOUT`).

    Its `splits.json` only picks clips for the tests (`test`: mead_023 and hdtf_007, the rest `val`);
    all six are val or test identities of `data/world`.
    """
    import concurrent.futures
    import multiprocessing
    from dataclasses import replace

    from dicetalk.synthetic.dataset import _init_worker, make_clip, plan_clips, resolve_options
    from dicetalk.synthetic.identity import sample_identity

    out = tmp_path_factory.mktemp("synth") / "heldout"
    out.mkdir()
    jobs = []
    for job in plan_clips(out, resolve_options("tiny"), HELDOUT_SEED):
        name, index, split = HELDOUT[job.identity]
        jobs.append(replace(job, relative=job.relative.replace(job.identity, name, 1), identity=name, identity_index=index, split=split))
    identities = {name: {**sample_identity(HELDOUT_SEED, index, name).to_json(), "split": split} for name, index, split in HELDOUT.values()}
    (out / "world.json").write_text(json.dumps({"preset": "tiny (held-out people)", "seed": HELDOUT_SEED, "identities": identities}))
    splits = {s: sorted(n for n, _, sp in HELDOUT.values() if sp == s) for s in ("train", "val", "test")}
    (out / "splits.json").write_text(json.dumps(splits))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context, initializer=_init_worker) as pool:
        assert sum(pool.map(make_clip, jobs)) > 0
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
