"""The real-face judges on a 10 s video: seconds per stage on this CPU (aim: <= 60 s for identity, sync and emotion).

    python benchmarks/real_judges.py                 # 10 s, 25 fps, 720 x 720, every core
    python benchmarks/real_judges.py --seconds 30 --threads 1
    python benchmarks/real_judges.py --identity        # same / different person pairs, real and synthetic judges

The video is a public-domain photo (tests/assets/faces/grace_hopper.jpg) moving a little from
frame to frame, with the example speech looped under it. SyncNet and EMO-AffectNet carry random
weights of the public architectures (their cost does not depend on the values; the public weights
cannot be fetched here); identity and landmarks are dlib's real models. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "assets" / "faces" / "grace_hopper.jpg"


def make_video(path: Path, seconds: float, side: int) -> None:
    import cv2

    from dicetalk.utils.image import load_image
    from dicetalk.utils.media import read_audio, write_video

    photo = cv2.resize(load_image(PHOTO), (side, side), interpolation=cv2.INTER_AREA)
    count = int(round(seconds * 25))
    frames = np.empty((count, side, side, 3), np.uint8)
    for i in range(count):
        angle, dx, dy = 2.0 * np.sin(i / 17), 6 * np.sin(i / 11), 4 * np.cos(i / 13)
        m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0 + 0.02 * np.sin(i / 7))
        m[:, 2] += (dx, dy)
        frames[i] = cv2.warpAffine(photo, m, (side, side), borderMode=cv2.BORDER_REFLECT)
    speech = read_audio(ROOT / "examples" / "speech.wav")
    speech = np.tile(speech, int(np.ceil(seconds * 16000 / len(speech))))[: int(seconds * 16000)]
    write_video(path, frames, 25, audio=speech)


def random_judges(folder: Path) -> None:
    import torch

    from dicetalk.evaluation.real.emotion import EmoAffectNet
    from dicetalk.evaluation.real.syncnet import SyncNet

    torch.manual_seed(0)
    SyncNet().save_pretrained(folder / "sync")
    EmoAffectNet().save_pretrained(folder / "emotion")


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """Same-person variants of a photo (the bug report's case last)."""
    import cv2

    h, w = image.shape[:2]

    def rotate(img, deg=8.0):
        return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h), borderMode=cv2.BORDER_REPLICATE)

    def dark(img):
        return (img.astype(np.float32) * 0.6).round().astype(np.uint8)

    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 20])
    return {
        "mirrored": image[:, ::-1].copy(),
        "rotated 8 deg": rotate(image),
        "darkened x0.6": dark(image),
        "JPEG q20": cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED),
        "mirrored + rotated + darkened": dark(rotate(image[:, ::-1].copy())),
    }


def identity_pairs() -> None:
    """Cosine of each variant to its own person's photo and to the other person's, with both identity judges."""
    import torch

    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.real.identity import DlibFaceRecognizer
    from dicetalk.utils.image import load_image

    people = {name: load_image(ROOT / "tests" / "assets" / "faces" / f"{name}.jpg") for name in ("grace_hopper", "eileen_collins")}
    dlib_judge, synthetic = DlibFaceRecognizer(), load_judges().identity

    def synthetic_embedding(image: np.ndarray) -> np.ndarray:
        from dicetalk.evaluation.features import face_images

        with torch.inference_mode():
            return synthetic(torch.from_numpy(np.ascontiguousarray(face_images(image[None]))))[0].numpy()[0]

    originals = {n: (dlib_judge.embed(img), synthetic_embedding(img)) for n, img in people.items()}
    print("| variant of | variant | dlib: same person | dlib: other person | synthetic judge: same | synthetic judge: other |")
    print("|---|---|---:|---:|---:|---:|")
    same_real, other_real = [], []
    for name, image in people.items():
        other = next(n for n in people if n != name)
        for label, variant in variants(image).items():
            real, syn = dlib_judge.embed(variant), synthetic_embedding(variant)
            row = (real @ originals[name][0], real @ originals[other][0], syn @ originals[name][1], syn @ originals[other][1])
            same_real.append(row[0])
            other_real.append(row[1])
            print(f"| {name} | {label} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.3f} |")
    print(f"\ndlib: lowest same-person {min(same_real):.3f}, highest other-person {max(other_real):.3f}; the two originals {originals['grace_hopper'][0] @ originals['eileen_collins'][0]:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--side", type=int, default=720)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--identity", action="store_true", help="instead: same / different person pairs")
    args = parser.parse_args()
    if args.identity:
        identity_pairs()
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from dicetalk.evaluation.real.judges import load_real_judges
    from dicetalk.evaluation.real.score import score_real_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "clip.mp4"
        make_video(video, args.seconds, args.side)
        random_judges(tmp / "judges")
        load_started = time.perf_counter()
        judges = load_real_judges(tmp / "judges")
        loading = time.perf_counter() - load_started
        marks: list[tuple[str, float]] = []
        report = score_real_video(video, PHOTO, judges, progress=lambda name: marks.append((name, time.perf_counter())))
        marks.append(("end", time.perf_counter()))
    stages = {name: end - start for (name, start), (_, end) in zip(marks, marks[1:])}
    scored = stages.get("identity", 0) + stages.get("emotion", 0) + stages.get("lip sync", 0) + stages.get("tracking the face", 0)
    print(f"| {args.seconds:g} s video, {args.side} x {args.side}, {torch.get_num_threads()} threads | seconds |")
    print("|---|---:|")
    print(f"| loading the judges | {loading:.1f} |")
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **face track + identity + emotion + sync** (aim <= 60) | **{scored:.1f}** |")
    print(f"| total (`score_real_video`) | {report['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
