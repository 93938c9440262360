"""Where the emotion of the voice is lost on its way to the video: the read-out, Di-CTE's expansion, or the denoiser.

For every level-3 clip of one split (``--per-group`` per person and emotion; neutral at level 1),
the person's neutral frame is animated twice with the clip's speech, the same seed each time:

* ``speech``: EmotiveTalk as shipped, the emotion read from the voice (the read-out names a label,
  Di-CTE expands it into a trajectory, EDI and DICE-Talk's denoiser render it);
* ``label``: the same with the clip's true label at the read-out's strength — a perfect read-out.

Per clip: the label the read-out named; the emotion of Di-CTE's trajectory (its mean against the
train split's per-emotion centroids, as ``trajectory_diversity`` reads it); the emotion judge's
reading of each video. The chain's shares, with 95 % bootstrap intervals:

    read-out right                P(read = true)
    expansion keeps it            P(trajectory = read)
    video right | read right      P(video = true | read = true)   (the renderer's conversion of a right label)
    video right | read wrong      P(video = true | read != true)
    Emo-8                         P(video = true)

and the perfect read-out's Emo-8 (the ``label`` videos)::

    python benchmarks/voice_diagnosis.py data/world --split val --per-group 3 --json runs/voice_diagnosis.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))




def bootstrap(values, resamples: int = 2000, seed: int = 0) -> list[float | None]:
    """[mean, low, high]: the mean over clips with its 95 % bootstrap interval (evaluation/stats.py)."""
    from dicetalk.evaluation.stats import mean_interval, resample_indices

    v = np.asarray(values, np.float64)
    if v.size == 0:
        return [None, None, None]
    low, high = mean_interval(v, resample_indices(len(v), resamples, seed))
    return [float(v.mean()), low, high]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--per-group", type=int, default=3)
    parser.add_argument("--json", required=True)
    parser.add_argument("--max-frames", type=int, default=50)
    parser.add_argument("--limit", type=int, default=None, help="the first N clips only (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tqdm.auto import tqdm

    from dicetalk import EMOTIONS
    from dicetalk.evaluation.emotivetalk import emotion_centroids, evaluation_clips, portrait_record
    from dicetalk.evaluation.features import face_images
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.scoring import video_emotion_logits
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.utils.atomic import write_json
    from dicetalk.utils.media import read_video

    pipe = load_emotivetalk_pipeline()
    pipe.set_progress_bar_config(disable=True)
    if pipe.settings.speech_emotion != "read":
        raise SystemExit("the shipped EmotiveTalk settings do not read the voice (speech_emotion != read)")
    strength = pipe.settings.speech_strength
    judge = load_judges().eval().emotion
    centroids, names = emotion_centroids(pipe, args.dataset, "train")
    clips, records = evaluation_clips(args.dataset, args.split, args.per_group)
    clips = clips[: args.limit]

    def judged(frames: np.ndarray) -> str:
        faces = torch.from_numpy(np.ascontiguousarray(face_images(frames)))
        with torch.no_grad():
            logits = judge(faces)[0].numpy()
        return EMOTIONS[int(np.argmax(video_emotion_logits(logits, judge.config.skip_frames)))]

    def trajectory_emotion(trajectory: torch.Tensor) -> str:
        mean = trajectory.numpy().mean(0)
        return names[int(np.argmin(((centroids - mean) ** 2).sum(1)))]

    rows = []
    start = time.perf_counter()
    for i, record in enumerate(tqdm(clips, desc="clips", unit="clip")):
        clip = read_video(record.video, max_frames=args.max_frames)
        audio = clip.audio[: int(round(len(clip.frames) / clip.fps * 16000))]
        portrait = read_video(portrait_record(record, records, "neutral").video, max_frames=1, with_audio=False).frames[0]
        recipe = pipe.recipe.replace(fps=clip.fps)
        row = {"source": record.rel, "emotion": record.emotion}
        for request in ("speech", f"{record.emotion}:{strength:g}"):
            out = pipe(portrait, audio, request, recipe=recipe, generator=torch.Generator().manual_seed(i))
            key = "speech" if request == "speech" else "label"
            row[f"{key}_video"] = judged(out.frames)
            row[f"{key}_trajectory"] = trajectory_emotion(out.trajectory)
            if key == "speech":
                row["read"] = out.voice_emotion
        rows.append(row)

    right = [r["read"] == r["emotion"] for r in rows]
    chain = {
        "read-out right": bootstrap(right),
        "expansion keeps the read label": bootstrap([r["speech_trajectory"] == r["read"] for r in rows]),
        "video right | read right": bootstrap([r["speech_video"] == r["emotion"] for r in rows if r["read"] == r["emotion"]]),
        "video right | read wrong": bootstrap([r["speech_video"] == r["emotion"] for r in rows if r["read"] != r["emotion"]]),
        "video shows the read label | read wrong": bootstrap([r["speech_video"] == r["read"] for r in rows if r["read"] != r["emotion"]]),
        "Emo-8, speech": bootstrap([r["speech_video"] == r["emotion"] for r in rows]),
        "perfect read-out: expansion keeps the label": bootstrap([r["label_trajectory"] == r["emotion"] for r in rows]),
        "perfect read-out: Emo-8": bootstrap([r["label_video"] == r["emotion"] for r in rows]),
    }
    per_emotion = {
        e: {k: float(np.mean([r[k] == e for r in rows if r["emotion"] == e])) for k in ("read", "speech_video", "label_video")}
        for e in EMOTIONS if any(r["emotion"] == e for r in rows)
    }  # fmt: skip
    print(f"split {args.split}: {len(rows)} clips, {time.perf_counter() - start:.0f} s")
    print("| step | share [95 % CI] |\n| --- | ---: |")
    for name, (v, lo, hi) in chain.items():
        print(f"| {name} | —|" if v is None else f"| {name} | {v:.3f} [{lo:.3f}, {hi:.3f}] |")
    print("| emotion | read right | video right (speech) | video right (true label) |\n| --- | ---: | ---: | ---: |")
    for e, v in per_emotion.items():
        print(f"| {e} | {v['read']:.2f} | {v['speech_video']:.2f} | {v['label_video']:.2f} |")
    write_json(args.json, {"split": args.split, "chain": chain, "per_emotion": per_emotion, "rows": rows})


if __name__ == "__main__":
    main()
