"""The mouth's true shape, the mouth-shape judge and the lip-sync measures against the truth."""

import numpy as np
import pytest

from dicetalk.evaluation.data import list_clips, load_video_arrays
from dicetalk.evaluation.mouth import mouth_measures, mouth_shape, pearson, regress_mouths, regression_checks, true_mouth_shape


@pytest.mark.parametrize("index", [20, 5])
def test_the_true_shape_is_what_the_renderer_draws(index):
    """Rendered frontally at 512 px, the mouth's corner-to-corner extent and its open interior match the formulas."""
    from dicetalk.synthetic.expressions import expression_vector
    from dicetalk.synthetic.face import FaceRenderer
    from dicetalk.synthetic.identity import sample_identity

    size = 512
    a = sample_identity(0, index).appearance
    renderer = FaceRenderer(a, size)
    skin, lip = np.array(a.skin), np.array(a.lip_colour)
    centre_y = int(round((a.head_y + a.mouth_y * a.head_scale) * size))
    for coefficients in ({}, {"jaw_drop": 1.0}, {"lip_round": 1.0}, {"jaw_drop": 0.7, "lip_press": 0.4}, {"jaw_drop": 0.6, "lip_round": 0.5}):
        e = expression_vector(**coefficients)
        frame = renderer.render(e, (0.0, 0.0, 0.0))[0].astype(int)
        opening, width = mouth_shape(e[None], a.head_scale, a.mouth_width)[0]
        # Width: the run of non-skin pixels through the centre of the mouth, along its centre line.
        off_skin = np.abs(frame[centre_y] - skin).sum(axis=1) > 12
        left = right = size // 2
        while off_skin[left - 1]:
            left -= 1
        while off_skin[right + 1]:
            right += 1
        assert (right - left + 1) / size * 100 == pytest.approx(width, abs=0.5), coefficients
        if coefficients.get("jaw_drop", 0) >= 0.6:  # the open interior (mouth, teeth, the seam across it) down the middle
            column = frame[:, size // 2]
            inside = (np.abs(column - lip).sum(axis=1) > 40) & (np.abs(column - skin).sum(axis=1) > 40)
            rows = np.arange(size)
            near = (rows > centre_y - 0.2 * a.head_scale * size) & (rows < centre_y + 0.4 * a.head_scale * size)
            assert (inside & near).sum() / size * 100 == pytest.approx(opening, abs=1.0), coefficients


def test_the_true_shape_follows_the_coefficients():
    from dicetalk.synthetic.expressions import expression_vector

    rows = np.stack([expression_vector(), expression_vector(jaw_drop=1.0), expression_vector(lip_round=1.0), expression_vector(lip_corner_pull=1.0), expression_vector(jaw_drop=5.0)])
    shape = mouth_shape(rows, head_scale=0.4, mouth_width=0.25)
    assert shape[0, 0] == 0 and shape[0, 1] == pytest.approx(0.25 * 2 * 0.4 * 100)
    assert shape[1, 0] == pytest.approx(0.34 * 0.4 * 100) and shape[1, 1] == shape[0, 1]  # the jaw opens, the width stays
    assert shape[2, 1] < shape[0, 1] < shape[3, 1]  # rounded lips narrow the mouth, a smile widens it
    np.testing.assert_array_equal(shape[4], shape[1])  # coefficients are clamped as the renderer clamps them


def test_mouth_measures_of_aligned_and_misaligned_shapes():
    t = np.arange(50)
    true = np.stack([5 + 4 * np.sin(t / 3), 20 + np.cos(t / 5)], axis=1)
    same = mouth_measures(true, true)
    assert same["mouth_error"] == 0 and same["mouth_open_corr"] == pytest.approx(1.0) and same["mouth_frames"] == 50
    shifted = mouth_measures(true + [1.0, -0.5], true[:40])  # the shorter length counts
    assert shifted["mouth_open_error"] == pytest.approx(1.0) and shifted["mouth_width_error"] == pytest.approx(0.5)
    assert shifted["mouth_error"] == pytest.approx(0.75) and shifted["mouth_frames"] == 40
    late = mouth_measures(np.roll(true, 5, axis=0), true)
    assert late["mouth_open_corr"] < 0.5 < same["mouth_open_corr"]
    assert mouth_measures(np.full((10, 2), 3.0), true)["mouth_open_corr"] is None  # a mouth that never moves
    assert pearson([1, 2], [2, 4]) is None and mouth_measures(true[:0], true)["mouth_error"] is None
    checks = regression_checks([true, true[:10]], [true, true[:10] + [0.5, 0.0]])
    assert checks["frames"] == 60 and checks["width_r2"] == pytest.approx(1.0) and 0.9 < checks["opening_r2"] < 1.0


def test_true_shapes_need_the_world_description(heldout_world, tmp_path):
    import shutil

    from dicetalk.errors import InputError

    clip = list_clips(heldout_world, ("test",))[0]
    assert true_mouth_shape(clip).shape == (load_video_arrays(clip.video).num_frames, 2)
    copy = tmp_path / "copy"
    shutil.copytree(heldout_world, copy)
    (copy / "world.json").unlink()
    with pytest.raises(InputError, match="no world.json"):
        true_mouth_shape(list_clips(copy, ("test",))[0])


def test_shipped_mouth_judge_reads_the_mouth_of_people_it_never_saw(shipped_judges, heldout_world):
    """On every clip of the held-out people (64 px frames; the judge trained on 128 px): close to the truth, and in time."""
    predicted, true, late = [], [], []
    for clip in list_clips(heldout_world, None):
        arr = load_video_arrays(clip.video)
        p, t = regress_mouths(shipped_judges.mouth, arr.lips), true_mouth_shape(clip)
        predicted.append(p)
        true.append(t)
        late.append(mouth_measures(p, np.roll(t, 12, axis=0))["mouth_open_corr"])  # the truth half a second off
    checks = regression_checks(predicted, true)
    pixel = 100 / 64  # one pixel of these frames, in percent of the frame side
    assert checks["clips"] == 34
    assert checks["opening_r2"] > 0.9 and checks["opening_mae"] < pixel / 2, checks
    assert checks["width_r2"] > 0.6 and checks["width_mae"] < pixel, checks
    assert checks["opening_corr"] > 0.8 and np.mean(late) < checks["opening_corr"] - 0.4, (checks, np.mean(late))
