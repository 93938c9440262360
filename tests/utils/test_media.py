"""Video files: small frames are encoded at a higher quality by default."""

import numpy as np

from dicetalk.synthetic import FaceRenderer, sample_identity
from dicetalk.synthetic.expressions import EXPRESSION_NAMES
from dicetalk.utils.media import DEFAULT_CRF, default_crf, read_video, write_video


def test_small_frames_default_to_a_higher_quality(tmp_path):
    assert default_crf(64, 64) < DEFAULT_CRF and default_crf(512, 512) == DEFAULT_CRF
    renderer = FaceRenderer(sample_identity(3, 1).appearance, 64)
    frames = []
    for t in range(12):  # a talking mouth
        expression = np.zeros(len(EXPRESSION_NAMES))
        expression[EXPRESSION_NAMES.index("jaw_drop")] = 0.8 * abs(np.sin(t / 2))
        frames.append(renderer.render(expression, np.zeros(3))[0])
    frames = np.stack(frames)
    errors = {}
    for name, crf in (("default", None), ("crf18", DEFAULT_CRF)):
        back = read_video(write_video(tmp_path / f"{name}.mp4", frames, 25.0, crf=crf), with_audio=False).frames
        errors[name] = np.abs(back.astype(np.float32) - frames)[:, 35:58, 15:50].mean()  # the lower face
    assert errors["default"] < 0.9 * errors["crf18"]
