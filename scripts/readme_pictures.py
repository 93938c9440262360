"""The README's two pictures, made with the embedded default model (no weights to fetch).

    .venv/bin/python scripts/readme_pictures.py      # writes docs/demo_strip.png and docs/full_frame.png

1. ``docs/demo_strip.png``: six frames of ``make demo`` (the bundled held-out portrait, surprised then sad).
2. ``docs/full_frame.png``: a photo next to one frame of ``dicetalk generate photo.png speech.wav``
   (``--frame full``, the default): the face is found, cropped, animated and pasted back; the rest
   of the photo is the photo's own. The default model knows only the synthetic world's faces, so the
   "photo" is the bundled portrait set into a larger scene (a wall, shoulders), built here.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dicetalk.utils.atomic import atomic_path
from dicetalk.utils.media import read_video

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DICETALK = [str(Path(sys.executable).with_name("dicetalk"))]  # the installed command, as a user runs it


def scene(portrait: Image.Image, size=(960, 540)) -> Image.Image:
    """The portrait as the head of a person in a room: a lit wall, a shelf line, shoulders in the shirt's colour."""
    width, height = size
    ramp = np.linspace(0, 1, width)[None, :, None]
    wall = (np.array([214, 206, 190]) * (1 - ramp) + np.array([150, 158, 170]) * ramp)
    image = np.broadcast_to(wall, (height, width, 3)).astype(np.uint8).copy()
    image[int(height * 0.78) :] = (96, 80, 68)  # a desk
    photo = Image.fromarray(image)
    draw = ImageDraw.Draw(photo)
    shirt = tuple(int(c) for c in np.asarray(portrait)[-4:, 100:156].reshape(-1, 3).mean(axis=0))
    side, left, top = 300, 520, 60
    draw.rounded_rectangle((left - 70, top + side - 30, left + side + 70, height + 40), radius=90, fill=shirt)
    photo.paste(portrait.resize((side, side), Image.LANCZOS), (left, top))
    draw.rectangle((60, 70, 300, 300), outline=(120, 110, 96), width=8)  # a picture frame on the wall
    return photo


def frames_of(video: Path) -> np.ndarray:
    return read_video(video, with_audio=False).frames


def save_png(image: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:  # a failed run leaves the README's picture as it was
        Image.fromarray(image).save(tmp, optimize=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = tmp / "demo.mp4"
        subprocess.run([*DICETALK, "generate", "examples/portrait.png", "examples/speech.wav", "--emotion", "0:surprised,3:sad",
                        "--no-crop", "-o", str(demo)], cwd=ROOT, check=True)  # fmt: skip
        frames = frames_of(demo)
        picks = np.linspace(0, len(frames) - 1, 6).round().astype(int)
        strip = np.concatenate([np.asarray(Image.fromarray(frames[i]).resize((128, 128), Image.NEAREST)) for i in picks], axis=1)
        save_png(strip, DOCS / "demo_strip.png")

        photo = scene(Image.open(ROOT / "examples" / "portrait.png").convert("RGB"))
        photo.save(tmp / "photo.png")
        full = tmp / "full.mp4"
        subprocess.run([*DICETALK, "generate", str(tmp / "photo.png"), "examples/speech.wav", "--emotion", "happy", "--seed", "0",
                        "-o", str(full)], cwd=ROOT, check=True)  # fmt: skip
        frame = frames_of(full)[50]  # two seconds in, mid-sentence
        half = (480, 270)
        pair = np.concatenate([np.asarray(photo.resize(half, Image.LANCZOS)), np.full((270, 8, 3), 255, np.uint8),
                               np.asarray(Image.fromarray(frame).resize(half, Image.LANCZOS))], axis=1)  # fmt: skip
        save_png(pair, DOCS / "full_frame.png")
    print(f"wrote {DOCS / 'demo_strip.png'} and {DOCS / 'full_frame.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
