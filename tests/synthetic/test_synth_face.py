"""The parametric face: identities differ, every coefficient and pose angle shows, edges are anti-aliased."""

import numpy as np
import pytest

from dicetalk.synthetic import EXPRESSION_NAMES, FaceRenderer, face_box, render_face, sample_identity
from dicetalk.synthetic.expressions import expression_vector

NEUTRAL = np.zeros(len(EXPRESSION_NAMES), np.float32)
FRONTAL = (0.0, 0.0, 0.0)


def changed_pixels(a: np.ndarray, b: np.ndarray, threshold: int = 20) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).max(axis=-1) > threshold).sum())


def test_render_face_returns_an_rgb_frame_of_the_requested_size():
    identity = sample_identity(0, 0)
    for size in (64, 128, 256):
        frame = render_face(identity, NEUTRAL, FRONTAL, size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
        box = face_box(identity, NEUTRAL, FRONTAL, size)
        assert box.dtype == np.float32 and 0 <= box[0] < box[2] <= size and 0 <= box[1] < box[3] <= size
        # The face is big: the head box covers a good part of the frame.
        assert 0.25 < (box[2] - box[0]) * (box[3] - box[1]) / size**2 < 0.8


def test_sample_identity_is_deterministic_and_identities_differ():
    assert sample_identity(5, 3).to_json() == sample_identity(5, 3).to_json()
    assert sample_identity(5, 3).to_json() != sample_identity(6, 3).to_json()
    frames = [render_face(sample_identity(0, i), NEUTRAL, FRONTAL, 64).astype(int) for i in range(6)]
    for i in range(6):
        for j in range(i + 1, 6):
            assert np.abs(frames[i] - frames[j]).mean() > 10, (i, j)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_every_expression_coefficient_visibly_changes_the_face_at_64px(index):
    renderer = FaceRenderer(sample_identity(0, index).appearance, 64)
    neutral, _ = renderer.render(NEUTRAL, FRONTAL)
    for name in EXPRESSION_NAMES:
        for value in (1.0, -1.0) if name == "eye_open" else (1.0,):
            frame, _ = renderer.render(expression_vector(**{name: value}), FRONTAL)
            assert changed_pixels(frame, neutral) >= 12, (name, value)


def test_every_pose_angle_changes_the_face():
    renderer = FaceRenderer(sample_identity(0, 1).appearance, 64)
    neutral, box = renderer.render(NEUTRAL, FRONTAL)
    for axis in range(3):
        pose = np.zeros(3)
        pose[axis] = 0.12
        frame, _ = renderer.render(NEUTRAL, pose)
        assert changed_pixels(frame, neutral) > 50, axis
    # The head pivots on the neck: rolling it moves its box sideways.
    _, rolled_box = renderer.render(NEUTRAL, (0.0, 0.0, 0.15))
    assert rolled_box[0] < box[0] - 1 and rolled_box[2] < box[2] - 1


def test_edges_are_anti_aliased():
    # A head motion of a tenth of a pixel changes edge pixels only a little: coverage is fractional.
    renderer = FaceRenderer(sample_identity(0, 2).appearance, 64)
    frame, _ = renderer.render(NEUTRAL, FRONTAL)
    nudged, _ = renderer.render(NEUTRAL, (0.0, 0.0, 0.002))
    diff = np.abs(frame.astype(int) - nudged.astype(int))
    assert 0 < diff.mean() < 1.0
    assert diff.max() < 100
    # And many pixels hold blends between flat colours.
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 300


def test_renderer_is_a_pure_function_of_its_inputs():
    renderer = FaceRenderer(sample_identity(0, 0).appearance, 64)
    smile = expression_vector(lip_corner_pull=0.8, cheek_raise=0.6)
    first, box = renderer.render(smile, (0.05, -0.02, 0.03))
    renderer.render(expression_vector(jaw_drop=1.0), (-0.1, 0.1, -0.1))  # no state carries over
    again, box_again = renderer.render(smile, (0.05, -0.02, 0.03))
    assert np.array_equal(first, again) and np.array_equal(box, box_again)
    assert np.array_equal(box, renderer.face_box(smile, (0.05, -0.02, 0.03)))
