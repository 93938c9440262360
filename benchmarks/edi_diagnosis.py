"""Where an emotional portrait's expression gets into the video: which of the reference's carriers leaks it.

DICE-Talk's denoiser sees the portrait three ways: the reference latent (concatenated to every
frame's input), the CLIP image embedding (cross-attention), and — in the decoder — the reference
refiner's pixels. For every level-3 clip of one split (the target: its speech and label) the
portrait is the same person's level-3 frame of *another* emotion (``other_emotion``, as
``render-emotive --portrait emotional``), and the video is rendered with:

* ``emotional``: every carrier from the emotional portrait (today's DICE-Talk);
* ``neutral``: every carrier from the person's neutral frame (what the label alone draws);
* ``latent`` / ``clip`` / ``refiner``: the emotional portrait, one carrier replaced by the neutral frame's;
* ``edi``: EmotiveTalk as shipped (EDI's priors and token offsets, and its reference decoupler if
  the model has one or ``--decoupler`` gives one) on the emotional portrait;
* ``decoupled``: DICE-Talk with only the reference latent passed through the reference decoupler;
* ``edi_no_offsets``: ``edi`` without EDI's token offsets.

Per video, in the expression encoder's 12 coefficients (standardised by EDI's scale), with ``o`` the
video's mean expression, ``t`` the target clip's and ``p`` the portrait's (all read by the same encoder)::

    portrait share = <o - t, p - t> / |p - t|^2      (0: the target's expression, 1: the portrait's)

and the emotion judge's reading of the video: the share read as the target's emotion and as the
portrait's. Means over clips with 95 % bootstrap intervals; the same seeds in every condition::

    python benchmarks/edi_diagnosis.py data/world --split val --json runs/edi_diagnosis.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CONDITIONS = ("emotional", "neutral", "latent", "clip", "refiner", "edi")
MORE = ("decoupled", "edi_no_offsets")  # with a reference decoupler: DICE-Talk with it alone; EmotiveTalk without EDI's offsets




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
    parser.add_argument("--json", required=True)
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated, of {', '.join(CONDITIONS + MORE)}")
    parser.add_argument("--decoupler", default=None, help="a trained reference decoupler (train-decoupler's OUT/decoupler) to attach")
    parser.add_argument("--max-frames", type=int, default=50)
    parser.add_argument("--limit", type=int, default=None, help="the first N clips only (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from tqdm.auto import tqdm

    from dicetalk import EMOTIONS
    from dicetalk.evaluation.emotivetalk import evaluation_clips, portrait_record
    from dicetalk.evaluation.features import face_images
    from dicetalk.evaluation.judges import load_judges
    from dicetalk.evaluation.scoring import video_emotion_logits
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.pipeline.pipeline_dicetalk import DiceTalkPipeline
    from dicetalk.utils.atomic import write_json
    from dicetalk.utils.media import read_video

    pipe = load_emotivetalk_pipeline()
    pipe.set_progress_bar_config(disable=True)
    if args.decoupler:
        from dicetalk.models.reference_decoupler import ReferenceDecoupler

        pipe.register_modules(decoupler=ReferenceDecoupler.from_pretrained(args.decoupler).float().eval())
    settings = dict(pipe.config.emotivetalk)
    judge = load_judges().eval().emotion
    scale = pipe.edi.sd.float().numpy()
    clips, records = evaluation_clips(args.dataset, args.split)
    clips = [r for r in clips if r.emotion != "neutral"][: args.limit]
    conditions = args.conditions.split(",")
    original = DiceTalkPipeline.prepare_conditions

    def swapped(carrier: str, neutral_image):
        """prepare_conditions with one carrier taken from the neutral frame (the same noise)."""

        def prepare(self, image, audio, priors, recipe, face_mask, size, padding, generator):
            cond = original(self, image, audio, priors, recipe, face_mask, size, padding, generator)
            other = original(self, neutral_image, audio, priors, recipe, face_mask, size, padding, torch.Generator().manual_seed(0))
            if carrier == "latent":
                cond.image_latents, cond.reference_latents = other.image_latents, other.reference_latents
            elif carrier == "clip":
                cond.image_embeds = other.image_embeds
            elif carrier == "refiner":
                cond.pixels = other.pixels
            elif carrier == "decoupled":
                cond.image_latents = self.decoupler(cond.image_latents)
            return cond

        return prepare

    def expression(frames: np.ndarray) -> np.ndarray:
        return pipe.read_expression(frames).mean(0).cpu().numpy() / scale

    def judged(frames: np.ndarray) -> np.ndarray:
        faces = torch.from_numpy(np.ascontiguousarray(face_images(frames)))
        with torch.no_grad():
            logits = judge(faces)[0].numpy()
        return video_emotion_logits(logits, judge.config.skip_frames)

    rows = {c: [] for c in conditions}
    start = time.perf_counter()
    for i, record in enumerate(tqdm(clips, desc="clips", unit="clip")):
        clip = read_video(record.video, max_frames=args.max_frames)
        audio = clip.audio[: int(round(len(clip.frames) / clip.fps * 16000))]
        emotional = portrait_record(record, records, "emotional")
        portrait = read_video(emotional.video, max_frames=1, with_audio=False).frames[0]
        neutral = read_video(portrait_record(record, records, "neutral").video, max_frames=1, with_audio=False).frames[0]
        t, p = expression(clip.frames), expression(portrait[None])
        recipe = pipe.recipe.replace(fps=clip.fps)
        priors = pipe.priors.prior(record.emotion).reshape(1, -1).float().cpu().expand(recipe.generated_frames(len(audio)), -1)
        for condition in conditions:
            generator = torch.Generator().manual_seed(i)
            if condition in ("edi", "edi_no_offsets"):
                pipe.register_to_config(emotivetalk={**settings, "injection": settings["injection"] and condition == "edi"})
                frames = pipe(portrait, audio, record.emotion, recipe=recipe, generator=generator).frames
            else:
                image = neutral if condition == "neutral" else portrait
                if condition in ("latent", "clip", "refiner", "decoupled"):
                    pipe.prepare_conditions = swapped(condition, neutral).__get__(pipe)
                try:
                    frames = DiceTalkPipeline.__call__(pipe, image, audio, priors, recipe=recipe, generator=generator).frames
                finally:
                    pipe.__dict__.pop("prepare_conditions", None)
            o = expression(frames)
            d = p - t
            share = float(np.dot(o - t, d) / np.dot(d, d))
            predicted = EMOTIONS[int(np.argmax(judged(frames)))]
            rows[condition].append(
                {"source": record.rel, "target": record.emotion, "portrait": emotional.emotion, "portrait_share": share,
                 "predicted": predicted, "distance_to_target": float(np.linalg.norm(o - t)), "distance_to_portrait": float(np.linalg.norm(o - p))}
            )  # fmt: skip

    summary = {}
    print(f"split {args.split}: {len(clips)} clips (emotional portraits), {time.perf_counter() - start:.0f} s")
    print("| condition | portrait share [95 % CI] | read as the target | read as the portrait's emotion |")
    print("| --- | ---: | ---: | ---: |")
    for condition, r in rows.items():
        share = bootstrap([x["portrait_share"] for x in r])
        target = bootstrap([x["predicted"] == x["target"] for x in r])
        leaked = bootstrap([x["predicted"] == x["portrait"] for x in r])
        summary[condition] = {"portrait_share": share, "target": target, "portrait": leaked}
        cell = lambda v: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # noqa: E731
        print(f"| {condition} | {cell(share)} | {cell(target)} | {cell(leaked)} |")
    write_json(args.json, {"split": args.split, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
