"""Where lip sync is lost before the denoiser: Sync-C of ground truth and of the autoencoder, step by step.

The same held-out clips as ``quality.py`` (first ``--max-frames`` frames), scored by the lip-sync
judge after each thing a generated video goes through, so the denoiser's share of the gap to
ground truth can be read off::

    python benchmarks/sync_ceiling.py DATASET [--weights DIR] [--max-frames 50] [--threads 2]

Rows: the clips as stored; at the model's image size (uncompressed); that through H.264 at
crf 18 and at the writer's default for the size; temporally smoothed (1-2-1 over frames: what
the judge makes of soft motion); and the model's autoencoder round trip (no refiner,
uncompressed) decoding 1, 8 and a window of frames at a time (its decoder mixes frames in time).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--weights", default=None, help="weights folder (default: the embedded model)")
    parser.add_argument("--emotions", default="neutral,happy,surprised,angry")
    parser.add_argument("--max-frames", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import cv2

    from dicetalk.evaluation.features import mouth_crops, square
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.render import RenderOptions, _clips_to_render
    from dicetalk.evaluation.sync import sync_scores
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.utils.media import DEFAULT_CRF, default_crf, read_video, write_video

    torch.set_num_threads(args.threads)
    judge = load_judges().sync.eval()
    pipe = load_pipeline(args.weights)
    vae, size = pipe.vae.float().eval(), pipe.native_size
    scratch = Path(tempfile.mkdtemp())
    opts = RenderOptions(dataset=args.dataset, out=str(scratch / "unused"), emotions=tuple(args.emotions.split(",")), max_frames=args.max_frames)
    _, clips, _ = _clips_to_render(opts)
    chunks = {"1 frame": 1, "8 frames": 8, f"a window ({pipe.window})": pipe.window}
    rows: dict[str, list[float]] = {}

    def score(name: str, frames: np.ndarray, audio: np.ndarray) -> None:
        rows.setdefault(name, []).append(sync_scores(judge, mouth_crops(square(frames)), audio).confidence)

    def through_mp4(frames: np.ndarray, crf: int | None) -> np.ndarray:
        return read_video(write_video(scratch / "clip.mp4", frames, 25.0, crf=crf), with_audio=False).frames

    for record in clips:
        clip = read_video(record.video, max_frames=args.max_frames)
        audio = clip.audio[: int(round(len(clip.frames) / clip.fps * 16000))]
        small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in square(clip.frames)])
        score(f"ground truth as stored ({clip.frames.shape[2]} px)", clip.frames, audio)
        score(f"ground truth at {size} px, uncompressed", small, audio)
        score(f"  through H.264, crf {DEFAULT_CRF}", through_mp4(small, DEFAULT_CRF), audio)
        score(f"  through H.264, crf {default_crf(size, size)} (the writer's default at {size} px)", through_mp4(small, None), audio)
        soft = small.astype(np.float32)
        soft[1:-1] = 0.25 * soft[:-2] + 0.5 * soft[1:-1] + 0.25 * soft[2:]
        score("  smoothed in time (1-2-1)", soft.round().astype(np.uint8), audio)
        with torch.no_grad():
            x = torch.from_numpy(small).float().permute(0, 3, 1, 2) / 127.5 - 1
            z = vae.encode(x).latent_dist.mode()
            for label, chunk in chunks.items():
                y = torch.cat([vae.decode(z[s : s + chunk], num_frames=len(z[s : s + chunk])).sample for s in range(0, len(z), chunk)])
                frames = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
                score(f"autoencoder round trip, decoding {label} at a time, uncompressed", frames, audio)

    print(f"{len(clips)} clips, first {args.max_frames} frames each")
    print("| | Sync-C |\n| --- | ---: |")
    for name, values in rows.items():
        print(f"| {name} | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
