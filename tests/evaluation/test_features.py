"""What the judges see: square frames, face images, mouth crops, log-mel audio."""

import numpy as np

from dicetalk.evaluation.features import (
    FACE_SIZE,
    MOUTH_SIZE,
    N_MELS,
    face_images,
    frame_mels,
    hz_to_mel,
    log_mel,
    mouth_colour_crops,
    mouth_crops,
    resample_frames,
    shift_audio,
    square,
)


def test_frames_of_any_shape_become_judge_inputs():
    frames = np.random.default_rng(0).integers(0, 255, (3, 90, 120, 3), dtype=np.uint8)
    assert square(frames).shape == (3, 90, 90, 3)
    assert face_images(frames).shape == (3, FACE_SIZE, FACE_SIZE, 3)
    assert mouth_crops(frames).shape == (3, *MOUTH_SIZE)
    colour = mouth_colour_crops(frames)
    assert colour.shape == (3, *MOUTH_SIZE, 3) and colour.dtype == np.uint8
    # The grey crop is the colour crop's luminance (the same box, resized the same way).
    import cv2

    grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in mouth_colour_crops(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2))])
    assert np.abs(grey.astype(int) - mouth_crops(np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)).astype(int)).mean() < 3
    assert face_images(frames[:, :64, :64]).dtype == np.uint8


def test_log_mel_puts_a_tone_in_the_right_band_and_aligns_with_video_frames():
    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    mel = log_mel(tone)
    assert mel.shape == (100, N_MELS)
    edges = np.linspace(hz_to_mel(60), hz_to_mel(7600), N_MELS + 2)
    expected = int(np.argmin(np.abs(edges[1:-1] - hz_to_mel(1000))))
    assert abs(int(np.argmax(mel[50])) - expected) <= 1
    grouped = frame_mels(tone, num_frames=25, pad_frames=3)
    assert grouped.shape == (31, 4, N_MELS)
    assert grouped[:2].max() < mel.min() + 1  # the padding is silence (the last padded window overlaps the tone)
    np.testing.assert_allclose(grouped[3 + 10], mel[40:44], atol=1e-4)


def test_shift_audio_delays_and_advances_keeping_the_length():
    x = np.arange(1, 11, dtype=np.float32)
    np.testing.assert_array_equal(shift_audio(x, 3 / 16000), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(shift_audio(x, -3 / 16000), [4, 5, 6, 7, 8, 9, 10, 0, 0, 0])


def test_resampling_to_25_fps():
    frames = np.arange(50)[:, None]
    assert len(resample_frames(frames, 50.0)) == 25
    assert resample_frames(frames, 25.0) is frames
    assert len(resample_frames(frames, 12.5)) == 100
