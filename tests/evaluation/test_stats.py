"""Bootstrap intervals over clips, the resampled Fréchet distance and the paired comparison."""

import json

import numpy as np
import pytest

from dicetalk.evaluation.metrics import frechet_distance
from dicetalk.evaluation.stats import compare_metric, frechet_interval, mean_interval, resample_indices, weighted_frechet


def test_mean_intervals_are_seeded_cover_the_mean_and_narrow_with_more_clips():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.5, 0.1, 10), rng.normal(0.5, 0.1, 400)
    low, high = mean_interval(list(few), resample_indices(10, 1000, seed=0))
    assert low < few.mean() < high
    assert mean_interval(list(few), resample_indices(10, 1000, seed=0)) == (low, high)
    assert mean_interval(list(few), resample_indices(10, 1000, seed=1)) != (low, high)
    low_m, high_m = mean_interval(list(many), resample_indices(400, 1000, seed=0))
    assert high_m - low_m < (high - low) / 3  # ~ 1 / sqrt(n)
    # The standard error of a mean of 400 draws of sd 0.1 is 0.005: the 95 % interval spans about 4 of them.
    assert high_m - low_m == pytest.approx(4 * 0.1 / np.sqrt(400), rel=0.25)


def test_missing_values_are_left_out_of_each_resample():
    values = [1.0, None, 3.0, None]
    low, high = mean_interval(values, resample_indices(4, 500, seed=0))
    assert 1.0 <= low <= high <= 3.0
    assert mean_interval([None, None], resample_indices(2, 10, seed=0)) is None
    assert mean_interval([0.5, 0.7], resample_indices(2, 0, seed=0)) is None  # no resamples, no interval


def test_weighted_frechet_equals_the_plain_one_and_counts_weights_as_repeats():
    rng = np.random.default_rng(0)
    for n, d in ((40, 8), (300, 8), (20, 64)):  # both ways of taking the trace of the square root
        x, y = rng.normal(0, 1, (n, d)), rng.normal(0.3, 1.5, (n + 5, d))
        assert weighted_frechet(x, np.ones(n), y, np.ones(n + 5)) == pytest.approx(frechet_distance(x, y), rel=1e-6, abs=1e-6)
    x, y = rng.normal(0, 1, (30, 4)), rng.normal(1, 1, (25, 4))
    w = rng.integers(0, 3, 30).astype(float)
    repeated = np.repeat(x, w.astype(int), axis=0)
    assert weighted_frechet(x, w, y, np.ones(25)) == pytest.approx(frechet_distance(repeated, y), rel=1e-6)


def test_frechet_intervals_resample_clips_with_their_sources():
    rng = np.random.default_rng(0)
    sources = [f"clip_{i}" for i in range(12)]
    reference = {s: rng.normal(0, 1, (20, 6)) for s in sources}
    index = resample_indices(12, 100, seed=0)
    # Ground truth against itself: every resample is 0.
    low, high = frechet_interval([reference[s] for s in sources], sources, reference, index)
    assert low == pytest.approx(0.0, abs=1e-6) and high == pytest.approx(0.0, abs=1e-6)
    shifted = [reference[s] + 1.0 for s in sources]  # a model off by 1 in every feature: FD ~ 6
    low, high = frechet_interval(shifted, sources, reference, index)
    assert low <= frechet_distance(np.concatenate(shifted), np.concatenate(list(reference.values()))) <= high + 1e-9
    assert 4.0 < low < high < 9.0


def _rows(values, key="sync_c"):
    return [{"source": f"s{i}", "emotion": "happy", "level": 3, key: v} for i, v in enumerate(values)]


def test_paired_comparison_finds_a_consistent_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    a = rng.normal(0.6, 0.1, 16)
    better = compare_metric("sync_c", list(zip(_rows(a), _rows(a + 0.05 + rng.normal(0, 0.01, 16)))), 1000, 0)
    assert better["excludes_zero"] and better["better"] == "B" and better["low"] > 0 and better["p_value"] < 0.01
    assert better["difference"] == pytest.approx(better["b"] - better["a"])
    same = compare_metric("sync_c", list(zip(_rows(a), _rows(a))), 1000, 0)
    assert same["difference"] == 0 and not same["excludes_zero"] and same["better"] is None and same["p_value"] == 1.0
    noise = rng.normal(0, 0.1, 16)
    noisy = compare_metric("sync_c", list(zip(_rows(a), _rows(a + noise - noise.mean()))), 1000, 0)  # no change on average
    assert not noisy["excludes_zero"] and noisy["low"] < 0 < noisy["high"]
    worse = compare_metric("sync_d", list(zip(_rows(a, "sync_d"), _rows(a + 0.05, "sync_d"))), 1000, 0)
    assert worse["better"] == "A"  # a larger Sync-D is worse


def test_paired_emotion_scores_use_the_sign_test_on_discordant_clips():
    a = [{"source": f"s{i}", "emotion": "happy", "level": 3, "correct": i < 4} for i in range(16)]
    b = [{**r, "correct": True} for r in a]
    result = compare_metric("emo_score", list(zip(a, b)), 1000, 0)
    assert result["a"] == 0.25 and result["b"] == 1.0 and result["test"].startswith("sign test")
    assert result["p_value"] == pytest.approx(2 * 0.5**12) and result["better"] == "B"
    fear = [{**r, "emotion": "fear"} for r in a]  # not one of the paper's four: not in emo_score
    assert compare_metric("emo_score", list(zip(fear, fear)), 100, 0) is None
    assert compare_metric("emo_score_all8", list(zip(fear, fear)), 100, 0)["pairs"] == 16


def _report(path, rows, split="test"):
    path.write_text(json.dumps({"split": split, "videos": rows}))
    return path


def test_compare_command_pairs_reports_by_clip(tmp_path, capsys):
    from dicetalk.cli.main import main

    rng = np.random.default_rng(0)
    a = [{"video": f"v{i}.mp4", "source": f"mead/x/{i}", "emotion": "happy", "level": 3, "correct": True, "fsim": 0.9, "sync_c": float(v), "sync_d": 0.5}
         for i, v in enumerate(rng.normal(0.6, 0.05, 12))]  # fmt: skip
    b = [{**r, "video": f"other_{r['video']}", "sync_c": r["sync_c"] + 0.1} for r in reversed(a[2:])]  # other names, order, a subset
    out = tmp_path / "cmp.json"
    assert main(["evaluate", "--compare", str(_report(tmp_path / "a.json", a)), str(_report(tmp_path / "b.json", b)), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pairs"] == 10 and result["only_in_a"] == 2 and result["only_in_b"] == 0
    assert result["metrics"]["sync_c"]["difference"] == pytest.approx(0.1) and result["metrics"]["sync_c"]["excludes_zero"]
    assert result["metrics"]["fsim"]["difference"] == 0 and not result["metrics"]["fsim"]["excludes_zero"]
    text = capsys.readouterr().out
    assert "sync_c" in text and "+0.100" in text and "10 clips in both" in text


@pytest.mark.parametrize(
    "b_rows, message",
    [
        ([{"video": "x.mp4", "source": "mead/y/0", "emotion": "happy", "level": 3}], "share no clip"),
        ("not json", "not a JSON report"),
        ({"emo_score": 1.0}, "not an 'evaluate' report"),
        (None, "no such report"),
    ],
)
def test_compare_refuses_what_it_cannot_pair_with_one_line(tmp_path, capsys, b_rows, message):
    from dicetalk.cli.main import main

    a = _report(tmp_path / "a.json", [{"video": "v.mp4", "source": "mead/x/0", "emotion": "happy", "level": 3, "sync_c": 0.5}])
    b = tmp_path / "b.json"
    if isinstance(b_rows, list):
        _report(b, b_rows)
    elif isinstance(b_rows, dict):
        b.write_text(json.dumps(b_rows))
    elif isinstance(b_rows, str):
        b.write_text(b_rows)
    code = main(["evaluate", "--compare", str(a), str(b)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
