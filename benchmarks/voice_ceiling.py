"""How much of a clip's emotion a new speaker's voice gives away: clip-level read-outs on the val people.

For every labelled clip of the train and val splits, its first ``--seconds`` of speech becomes one
feature vector per kind: the mean and spread over frames of V-AID's expression stream (the shipped
V-AID), of the Whisper window DICE-Talk reads, and 14 hand-made prosody features of the waveform
(pitch level, range and movement; loudness level and range; voiced and pitched shares; syllable
rate; periodicity). Multinomial logistic regression (``evaluation/probes.py``, weight decay chosen
on val) is fitted on the train people and scored on the val people's level-3 clips (neutral: level
1), the set the videos are judged on. Writes ``--json``::

    OMP_NUM_THREADS=1 python benchmarks/voice_ceiling.py data/world --json runs/voice_ceiling.json --cache-dir runs/cache

``--people 4 8 12`` adds a learning curve: the same read-outs fitted on that many train people.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000


def prosody(audio: np.ndarray, frame: float = 0.04, hop: float = 0.01) -> np.ndarray:
    """14 prosody features of mono 16 kHz speech (autocorrelation pitch between 60 and 500 Hz)."""
    a = np.asarray(audio, np.float64)
    n, h = int(frame * SAMPLE_RATE), int(hop * SAMPLE_RATE)
    count = max(1, (len(a) - n) // h + 1)
    frames = a[np.minimum(np.arange(n)[None] + h * np.arange(count)[:, None], len(a) - 1)] * np.hanning(n)
    db = 20 * np.log10(np.sqrt((frames**2).mean(1)) + 1e-8)
    voiced = db > db.max() - 30
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    lo, hi = SAMPLE_RATE // 500, SAMPLE_RATE // 60
    lag = lo + ac[:, lo:hi].argmax(1)
    periodicity = ac[np.arange(count), lag] / (ac[:, 0] + 1e-12)
    pitched = voiced & (periodicity > 0.3)
    f0 = np.log(SAMPLE_RATE / lag[pitched]) if pitched.sum() > 3 else np.zeros(4)
    loud = db[voiced] if voiced.sum() > 3 else db
    envelope = np.convolve(db, np.ones(5) / 5, "same")
    peaks = ((envelope[1:-1] > envelope[:-2]) & (envelope[1:-1] >= envelope[2:]) & voiced[1:-1] & (envelope[1:-1] > envelope.max() - 20)).sum()
    p10, p90 = np.percentile(f0, 10), np.percentile(f0, 90)
    return np.array([
        f0.mean(), f0.std(), p10, p90, p90 - p10, np.abs(np.diff(f0)).mean() if len(f0) > 1 else 0.0,
        loud.mean(), loud.std(), np.percentile(loud, 90), np.percentile(loud, 90) - np.percentile(loud, 10),
        voiced.mean(), pitched.mean(), peaks / max(voiced.sum() * hop, 0.1), periodicity[voiced].mean() if voiced.any() else 0.0,
    ], np.float32)  # fmt: skip


def clip_features(vaid, dataset: Path, split: str, seconds: float, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Every labelled clip's three feature vectors of its first ``seconds``, its label and level."""
    from dicetalk.cli.emotivetalk import split_features
    from dicetalk.utils.media import read_video

    features = split_features(dataset, None, split, cache_dir, progress=False)
    frames = int(round(seconds * features.cache.fps))
    stats = lambda x: torch.cat([x.mean(0), x.std(0)]).numpy()  # noqa: E731
    rows = {"expression stream": [], "Whisper window": [], "prosody": [], "label": [], "level": [], "identity": []}
    for c, record in enumerate(features.cache.records):
        if not record.labelled:
            continue
        windows = features.clip_windows(c)[:frames]
        with torch.no_grad():
            rows["expression stream"].append(stats(vaid(windows[None]).expression[0]))
        rows["Whisper window"].append(stats(windows.flatten(1)))
        audio = read_video(record.video, max_frames=1).audio
        rows["prosody"].append(prosody(audio[: int(seconds * SAMPLE_RATE)]))
        rows["label"].append(record.emotion_id)
        rows["level"].append(record.level or 1)
        rows["identity"].append(record.identity)
    return {k: np.asarray(v) for k, v in rows.items()}


def main() -> None:
    from dicetalk import EMOTIONS
    from dicetalk.evaluation.probes import logistic_probe
    from dicetalk.pipeline.emotivetalk import load_parts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--people", type=int, nargs="*", default=None, help="Also fit on only this many train people (a learning curve; seeded draw).")
    args = parser.parse_args()
    vaid = load_parts(None)[0]["vaid"].float()
    data = {split: clip_features(vaid, args.dataset, split, args.seconds, args.cache_dir) for split in ("train", "val")}
    val = data["val"]
    judged = (val["level"] == 3) | (val["label"] == EMOTIONS.index("neutral"))
    kinds = {
        "expression stream": ["expression stream"], "Whisper window": ["Whisper window"], "prosody": ["prosody"],
        "expression stream + prosody": ["expression stream", "prosody"], "all three": ["expression stream", "Whisper window", "prosody"],
    }  # fmt: skip
    report = {"seconds": args.seconds, "val_clips_judged": int(judged.sum()), "chance": 1 / len(EMOTIONS), "accuracy": {}}
    inputs = {name: {s: np.concatenate([data[s][p] for p in parts], 1) for s in data} for name, parts in kinds.items()}
    for name, x in inputs.items():
        train = (x["train"], data["train"]["label"])
        result = logistic_probe(train, (x["val"][judged], val["label"][judged]), (x["val"], val["label"]), classes=len(EMOTIONS))
        report["accuracy"][name] = {"val_level3": result["val"], "val_all_levels": result["test"]}
        print(f"{name:30s} val level 3: {result['val']:.3f}   all levels: {result['test']:.3f}", flush=True)
    people = sorted(set(data["train"]["identity"]))
    report["train_people"] = len(people)
    for count in args.people or []:
        # Does more speakers help? The same fit on a seeded subset of the train people.
        chosen = set(np.random.default_rng(count).choice(people, size=min(count, len(people)), replace=False))
        keep = np.isin(data["train"]["identity"], list(chosen))
        for name in ("expression stream", "prosody", "expression stream + prosody"):
            x = inputs[name]
            result = logistic_probe((x["train"][keep], data["train"]["label"][keep]), (x["val"][judged], val["label"][judged]), (x["val"], val["label"]), classes=len(EMOTIONS))
            report.setdefault("by_train_people", {}).setdefault(str(count), {})[name] = result["val"]
            print(f"{count:3d} train people  {name:30s} val level 3: {result['val']:.3f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
