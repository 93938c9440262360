"""The embedded default model: small, loaded when no weights are given, and it follows an emotion
schedule as the synthetic world's emotion judge sees it."""

from pathlib import Path

import numpy as np
import torch

from dicetalk import EMOTIONS
from dicetalk.pipeline.generate import GenerateOptions, generate
from dicetalk.pipeline.loading import DEFAULT_MODEL_DIR, load_pipeline
from dicetalk.utils.media import SPEECH_SAMPLE_RATE, read_audio, read_video, write_audio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_default_model_is_small_and_loads_without_weights():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 30 * 2**20
    pipe = load_pipeline()
    assert pipe.unet.dtype == torch.float32  # stored in float16, computed in float32 on CPU
    assert set(pipe.priors.emotions) == set(EMOTIONS)
    assert pipe.config.default_steps <= 12  # the recipe that keeps a 5 s clip under a minute on CPU


def test_schedule_changes_the_emotion_the_judge_sees(tmp_path):
    from dicetalk.evaluation.judges import load_judges

    seconds, switch = 4.0, 2.0
    speech = read_audio(EXAMPLES / "speech.wav")[: int(seconds * SPEECH_SAMPLE_RATE)]
    audio = write_audio(tmp_path / "speech.wav", speech)
    out = generate(
        GenerateOptions(
            image=EXAMPLES / "portrait.png", audio=audio, output=tmp_path / "scheduled.mp4",
            emotion=f"0:sad,{switch}:happy", crop=False, seed=0,
        )
    )  # fmt: skip
    frames = read_video(out, with_audio=False).frames
    judge = load_judges().eval().emotion
    with torch.no_grad():
        probs = torch.softmax(judge(frames)[0], dim=-1).numpy()
    fps = 25
    first = probs[5 : int((switch - 0.5) * fps)].mean(0)  # away from the start and the crossfade
    second = probs[int((switch + 0.5) * fps) :].mean(0)
    sad, happy = EMOTIONS.index("sad"), EMOTIONS.index("happy")
    assert EMOTIONS[int(np.argmax(first))] == "sad", dict(zip(EMOTIONS, first.round(2)))
    assert EMOTIONS[int(np.argmax(second))] == "happy", dict(zip(EMOTIONS, second.round(2)))
    assert first[sad] > second[sad] + 0.3 and second[happy] > first[happy] + 0.3
