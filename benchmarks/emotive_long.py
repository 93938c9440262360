"""EmotiveTalk over a long speech: drift of the last seconds against the first, and peak memory.

A held-out person's clips (``--identity``, sorted by path) are concatenated into ``--seconds`` of
speech; ``dicetalk generate --model emotivetalk`` (or ``--model dicetalk``) renders it and a ``--short``-second prefix of
it, each in a process of its own (peak resident memory from ``/usr/bin/time -v``), from the
person's neutral frame; ``dicetalk evaluate VIDEO --portrait IMG --drift S`` scores the long
video's first and last ``--drift`` seconds alike. Writes ``OUT/long.json``::

    OMP_NUM_THREADS=1 python benchmarks/emotive_long.py data/world --out runs/emotive_long [--emotion happy] [--memory-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np


def held_out_speech(dataset: str, identity: str, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(speech of ``seconds`` at 16 kHz from the identity's clips in path order, its neutral level-1 first frame)."""
    from dicetalk.utils.media import read_video

    clips = sorted(Path(dataset).glob(f"mead/{identity}/*/level_*/*.mp4"))
    if not clips:
        raise SystemExit(f"no clips of {identity} in {dataset}")
    portrait = read_video(sorted(Path(dataset).glob(f"mead/{identity}/neutral/level_1/*.mp4"))[0], max_frames=1, with_audio=False).frames[0]
    pieces, total = [], 0
    for clip in clips:
        audio = read_video(clip).audio
        pieces.append(audio)
        total += len(audio)
        if total >= seconds * 16000:
            break
    speech = np.concatenate(pieces)
    if len(speech) < seconds * 16000:
        raise SystemExit(f"{identity}'s clips hold {len(speech) / 16000:.1f} s of speech, fewer than {seconds:g}")
    return speech[: int(seconds * 16000)], portrait


def generate(portrait: Path, speech: Path, out: Path, emotion: str, steps: int | None, model: str = "emotivetalk") -> dict:
    """One `generate --model MODEL` in a process of its own: its wall seconds and peak memory."""
    cmd = [sys.executable, "-m", "dicetalk", "generate", str(portrait), str(speech), "-o", str(out), "--model", model, "--emotion", emotion, "--no-crop"]
    if steps:
        cmd += ["--steps", str(steps)]
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"generate failed: {run.stderr.strip().splitlines()[-1]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", run.stderr).group(1)
    seconds = sum(float(x) * 60**k for k, x in enumerate(reversed(wall.split(":"))))
    return {"video": str(out), "peak_rss_mb": peak_kb / 1024, "wall_seconds": seconds}


def main() -> None:
    from PIL import Image

    from dicetalk.utils.media import write_audio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--out", required=True)
    parser.add_argument("--identity", default="mead_020", help="a held-out (test) identity")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--short", type=float, default=5.0)
    parser.add_argument("--drift", type=float, default=10.0)
    parser.add_argument("--emotion", default="speech", help="generate's --emotion: speech, LABEL[:s]")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--model", default="emotivetalk", help="generate's --model: emotivetalk, or dicetalk for comparison")
    parser.add_argument("--memory-repeats", type=int, default=0, help="then measure peak memory N more times per length, alternating")
    parser.add_argument("--memory-steps", type=int, default=2, help="sampling steps of those memory-only runs (memory does not depend on them)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    speech, portrait = held_out_speech(args.dataset, args.identity, args.seconds)
    Image.fromarray(portrait).save(out / "portrait.png")
    report = {"identity": args.identity, "emotion": args.emotion, "steps": args.steps, "model": args.model}
    for name, seconds in (("short", args.short), ("long", args.seconds)):
        wav = out / f"{name}.wav"
        write_audio(wav, speech[: int(seconds * 16000)], 16000)
        report[name] = {"seconds": seconds, **generate(out / "portrait.png", wav, out / f"{name}.mp4", args.emotion, args.steps, args.model)}
        print(name, report[name], flush=True)
    peaks = {"short": [report["short"]["peak_rss_mb"]], "long": [report["long"]["peak_rss_mb"]]}
    for k in range(args.memory_repeats):  # the peak resident size varies from process to process: repeat, alternating
        for name in ("short", "long"):
            peaks[name].append(generate(out / "portrait.png", out / f"{name}.wav", out / f"memory_{name}.mp4", args.emotion, args.memory_steps, args.model)["peak_rss_mb"])
            print(name, "peak", round(peaks[name][-1], 1), flush=True)
    report["peak_rss_mb"] = {name: {"runs": [round(v, 1) for v in values], "min": min(values), "median": float(np.median(values)), "max": max(values)} for name, values in peaks.items()}
    drift = out / "drift.json"
    cmd = [sys.executable, "-m", "dicetalk", "evaluate", str(out / "long.mp4"), "--portrait", str(out / "portrait.png"), "--drift", str(args.drift), "--json", str(drift)]
    subprocess.run(cmd, check=True, capture_output=True)
    report["drift"] = json.loads(drift.read_text())
    (out / "long.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
