"""Speech (espeak-ng) and the motion it drives: lip-sync, blinks, nods; the example writer."""

import json

import cv2
import numpy as np
from safetensors.numpy import load_file

from dicetalk.synthetic import SENTENCES, emotion_prosody, sample_identity, synthesize, write_identity_example
from dicetalk.synthetic.expressions import EXPRESSION_INDEX, sample_habits
from dicetalk.synthetic.motion import AudioFrames, audio_frames, blink_track, head_pose, speech_mouth
from dicetalk.synthetic.speech import Voice, fit_to_frames
from dicetalk.utils.media import read_audio

VOICE = Voice(accent="en-us", variant="f3", pitch=55, speed=170, amplitude=70)
JAW = EXPRESSION_INDEX["jaw_drop"]


def test_espeak_speech_is_deterministic_16khz_float32():
    first = synthesize(SENTENCES[0], VOICE, emotion_prosody("happy", 3))
    again = synthesize(SENTENCES[0], VOICE, emotion_prosody("happy", 3))
    assert first.dtype == np.float32 and first.ndim == 1
    assert np.array_equal(first, again)
    assert 1.0 < first.size / 16000 < 6.0
    assert np.abs(first[: 16000 // 10]).max() == 0  # starts with silence: the mouth starts closed
    assert np.abs(first).max() > 0.1


def test_emotions_change_the_prosody():
    neutral = synthesize(SENTENCES[1], VOICE, emotion_prosody("neutral"))
    sad = synthesize(SENTENCES[1], VOICE, emotion_prosody("sad", 3))
    angry = synthesize(SENTENCES[1], VOICE, emotion_prosody("angry", 3))
    assert sad.size > neutral.size > angry.size  # sad speech is slow, angry speech fast
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(sad) < rms(neutral) < rms(angry)  # and loudness follows


def test_fit_to_frames_gives_whole_frames():
    audio, frames = fit_to_frames(np.ones(16000 + 400, np.float32), 25)  # 25.6 frames: padded
    assert frames == 26 and audio.size == 26 * 640 and audio[-1] == 0
    audio, frames = fit_to_frames(np.ones(16000 + 200, np.float32), 25)  # 25.3 frames: trimmed
    assert frames == 25 and audio.size == 25 * 640


def test_jaw_follows_the_audio_energy_of_every_clip(tiny_world):
    for meta_path in sorted(tiny_world.glob("*/**/*.json")):
        meta = json.loads(meta_path.read_text())
        jaw = load_file(meta_path.with_suffix(".safetensors"))["expression"][:, JAW]
        # The speech as stored in the video, decoded back: lip-sync is checked end to end.
        audio = read_audio(meta_path.with_suffix(".mp4"))
        energy = audio_frames(audio, meta["num_frames"]).rms
        assert np.corrcoef(jaw, energy)[0, 1] > 0.5, meta_path


def test_low_spectra_round_the_lips():
    t = np.arange(16000) / 16000
    low = (0.3 * np.sin(2 * np.pi * 250 * t)).astype(np.float32)  # an "oo"-like low vowel
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    high = (noise - np.convolve(noise, np.ones(8) / 8, mode="same")).astype(np.float32)  # hiss
    habits = sample_habits(np.random.default_rng(0))
    _, rounded = speech_mouth(audio_frames(low, 25), habits)
    _, spread = speech_mouth(audio_frames(high, 25), habits)
    assert rounded[2:-2].mean() > 0.3 and spread.max() < 0.05


def test_blinks_come_every_few_seconds():
    closure = blink_track(250, mean_interval=2.0, rng=np.random.default_rng(1))
    blinks = np.flatnonzero((closure[1:] >= 1.0) & (closure[:-1] < 1.0))
    assert 2 <= blinks.size <= 12
    assert closure.min() == 0.0 and closure.max() == 1.0


def test_head_nods_on_speech_onsets():
    loudness = np.zeros(100, np.float32)
    loudness[50:] = 0.8  # a phrase starts at frame 50
    frames = AudioFrames(rms=loudness, loudness=loudness, low_ratio=np.zeros(100, np.float32))
    habits = sample_habits(np.random.default_rng(2))
    pose = head_pose(frames, habits, np.random.default_rng(3))
    calm = head_pose(AudioFrames(np.zeros(100), np.zeros(100), np.zeros(100)), habits, np.random.default_rng(3))
    nod = pose[:, 1] - calm[:, 1]  # same sway, so the difference is the nod alone
    assert np.allclose(nod[:48], 0)
    assert nod[50:62].max() > 0.5 * habits.nod  # the chin dips after the onset


def test_write_identity_example(tmp_path):
    identity = sample_identity(0, 7)
    png, wav = write_identity_example(identity, tmp_path / "portrait.png", tmp_path / "speech.wav", size=128)
    image = cv2.imread(str(png))
    assert image.shape == (128, 128, 3)
    audio = read_audio(wav)
    assert audio.size > 16000 and np.abs(audio).max() > 0.05
