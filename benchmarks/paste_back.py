"""Full-frame output: compositing cost per 1920 x 1080 frame, and memory against video length.

    python benchmarks/paste_back.py                # both parts
    python benchmarks/paste_back.py --no-memory    # the compositing cost only (seconds)

1. ``PasteBack.paste`` on one CPU core (torch, BLAS and OpenCV held to one thread): a 1920 x 1080 photo, the
   face's box 600 px, generated crops of 64 px (the embedded default model) and 512 px (the release).
2. Peak RSS of ``dicetalk generate --frame full`` (default model, the example portrait padded to a
   1920 x 1080 photo) on 10 s and 60 s of speech (the example speech looped): it must not grow with
   the length, since frames are composited and encoded as they come.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def compositing(generated: int, frames: int = 48) -> float:
    """Milliseconds per composited 1920 x 1080 frame."""
    from dicetalk.pipeline.paste_back import PasteBack
    from dicetalk.pipeline.portrait import Portrait

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    box = (660, 200, 600, 600)
    paste = PasteBack(Portrait(photo[200:800, 660:1260], None, None, photo, box), (generated, generated))
    crops = rng.integers(0, 255, (8, generated, generated, 3), dtype=np.uint8)
    paste.paste(crops)  # warm-up
    start = time.perf_counter()
    for _ in range(frames // len(crops)):
        paste.paste(crops)
    return (time.perf_counter() - start) / frames * 1000


def peak_rss(seconds: float, tmp: Path) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one `generate --frame full` run on ``seconds`` of speech."""
    from PIL import Image

    from dicetalk.utils.media import read_audio, write_audio

    speech = read_audio(ROOT / "examples" / "speech.wav", 16000)
    looped = np.tile(speech, int(np.ceil(seconds * 16000 / len(speech))))[: int(seconds * 16000)]
    write_audio(tmp / f"speech{seconds:g}.wav", looped, 16000)
    portrait = Image.open(ROOT / "examples" / "portrait.png").convert("RGB")
    photo = Image.new("RGB", (1920, 1080), (200, 190, 180))
    photo.paste(portrait.resize((700, 700)), (610, 190))
    photo.save(tmp / "photo.png")
    script = (
        "import resource, sys\n"
        "from dicetalk.cli.main import main\n"
        f"code = main(['generate', {str(tmp / 'photo.png')!r}, {str(tmp / f'speech{seconds:g}.wav')!r}, '-o', {str(tmp / 'out.mp4')!r}])\n"
        "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2] == "0", out
    return float(out[-1]), time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # the resize and blend run in OpenCV: one core, as the aim says
    print("| generated crop | ms per 1920 x 1080 frame (1 core) |\n| ---: | ---: |")
    for size in (64, 512):
        print(f"| {size} px | {compositing(size):.1f} |")
    if not a.no_memory:
        with tempfile.TemporaryDirectory() as tmp:
            print("\n| speech | peak RSS (MB) | wall (s) |\n| ---: | ---: | ---: |")
            for seconds in (10.0, 60.0):
                rss, wall = peak_rss(seconds, Path(tmp))
                print(f"| {seconds:g} s | {rss:.0f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
