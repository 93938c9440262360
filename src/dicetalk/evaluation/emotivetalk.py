"""EmotiveTalk's measurements: the rendered evaluation sets, trajectory diversity, long-video drift.

``render_emotive_set`` renders, for every held-out clip of a split (one per identity, emotion and
level: level 3, neutral at level 1), a video ``evaluate`` scores against that clip (sidecar
``{"source", "emotion", "level", ...}``), by one of two systems on the same weights:

* ``dicetalk``: :class:`~dicetalk.pipeline.DiceTalkPipeline` with the label's prompt prior;
* ``emotivetalk``: :class:`~dicetalk.pipeline.pipeline_emotivetalk.EmotiveTalkPipeline` asked
  ``speech`` (the voice alone), ``label`` (the clip's label) or a reference video;

and one of two portraits:

* ``neutral``: the first frame of the person's neutral clip (a user's portrait);
* ``emotional``: the first frame of the person's level-3 clip of *another* emotion (the next one
  after the target in :data:`~dicetalk.EMOTIONS` order, neutral skipped) — the case EDI is for.

The speech is the clip's own (first ``max_frames`` frames). :func:`trajectory_diversity` measures
Di-CTE's spread across seeds against the spread of real trajectories; :func:`drift_report` scores
the first and last seconds of a long video.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import EMOTIONS
from ..errors import InputError

SYSTEMS = ("dicetalk", "emotivetalk")
PORTRAITS = ("neutral", "emotional")
REQUESTS = ("label", "speech")


@dataclass
class EmotiveRenderOptions:
    dataset: str
    out: str
    system: str = "emotivetalk"
    request: str = "speech"  # emotivetalk only: label or speech
    portrait: str = "neutral"
    weights: str | None = None
    split: str = "test"
    seed: int = 0
    max_frames: int = 125
    injection: bool | None = None  # emotivetalk: override its settings' EDI offsets
    settings: str | None = None  # emotivetalk: overrides of its settings, "name=value,..." (EmotiveTalkSettings.overridden)
    identities: int | None = None  # only the split's first N identities (sorted by name); None: all
    per_group: int = 1  # clips per identity x emotion (level 3; neutral level 1)


def other_emotion(target: str) -> str:
    """The emotion of the ``emotional`` portrait for a ``target``: the next non-neutral one after it."""
    ring = [e for e in EMOTIONS if e != "neutral"]
    start = ring.index(target) + 1 if target in ring else 0
    for k in range(len(ring)):
        candidate = ring[(start + k) % len(ring)]
        if candidate != target:
            return candidate
    raise ValueError(target)


def choose_clips(records, per_group: int = 1) -> list:
    """The first ``per_group`` clips of every identity x emotion at level 3 (neutral: level 1), in order."""
    chosen, taken = [], {}
    for r in records:
        key = (r.identity, r.emotion)
        if (r.level == 3 or r.emotion == "neutral") and taken.get(key, 0) < per_group:
            taken[key] = taken.get(key, 0) + 1
            chosen.append(r)
    return chosen


def evaluation_clips(dataset: str, split: str, per_group: int = 1):
    """(clips to render: ``per_group`` per identity x emotion at level 3 / neutral level 1, every clip of the split)."""
    from ..data.index import scan

    records = [r for r in scan(dataset, splits=(split,), datasets=("mead",)) if r.labelled]
    return choose_clips(records, per_group), records


def portrait_record(record, records, kind: str):
    emotion = "neutral" if kind == "neutral" else other_emotion(record.emotion)
    level = 1 if emotion == "neutral" else 3
    match = [r for r in records if r.identity == record.identity and r.emotion == emotion and r.level == level]
    if not match:
        raise InputError(f"no {emotion} level-{level} clip of {record.identity} for the {kind} portrait")
    return match[0]


def render_emotive_set(opts: EmotiveRenderOptions, pipe=None, progress: bool = True) -> list[Path]:
    """Render every clip of the set (finished videos are kept: resumable); returns the videos."""
    from tqdm.auto import tqdm

    from ..pipeline.emotivetalk import load_emotivetalk_pipeline
    from ..pipeline.loading import load_pipeline
    from ..utils.atomic import write_json
    from ..utils.media import VideoWriter, read_video

    if opts.system not in SYSTEMS or opts.portrait not in PORTRAITS or opts.request not in REQUESTS:
        raise InputError(f"system in {SYSTEMS}, portrait in {PORTRAITS}, request in {REQUESTS}; got {opts.system}, {opts.portrait}, {opts.request}")
    if pipe is None:
        pipe = load_emotivetalk_pipeline(opts.weights) if opts.system == "emotivetalk" else load_pipeline(opts.weights)
    pipe.set_progress_bar_config(disable=True)
    if opts.system == "emotivetalk" and (opts.injection is not None or opts.settings):
        settings = pipe.settings.overridden(opts.settings)
        if opts.injection is not None:
            settings = dataclasses.replace(settings, injection=opts.injection)
        pipe.register_to_config(emotivetalk=dataclasses.asdict(settings))
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    clips, records = evaluation_clips(opts.dataset, opts.split, opts.per_group)
    if opts.identities is not None:
        keep = sorted({r.identity for r in clips})[: opts.identities]
        clips = [r for r in clips if r.identity in keep]
    written = []
    for i, record in enumerate(tqdm(clips, desc=f"render {opts.system}", disable=not progress, unit="clip")):
        video = out / f"{record.rel.replace('/', '__')}.mp4"
        if video.is_file() and video.with_suffix(".json").is_file():
            written.append(video)
            continue
        clip = read_video(record.video, max_frames=opts.max_frames)
        audio = clip.audio[: int(round(len(clip.frames) / clip.fps * 16000))]
        source = portrait_record(record, records, opts.portrait)
        portrait = read_video(source.video, max_frames=1, with_audio=False).frames[0]
        recipe = pipe.recipe.replace(fps=clip.fps)
        generator = torch.Generator().manual_seed(opts.seed + i)
        sidecar = {"source": record.rel, "emotion": record.emotion, "level": record.level, "system": opts.system, "portrait": source.rel}
        with VideoWriter(video, clip.fps, audio=audio) as writer:
            if opts.system == "dicetalk":
                sidecar["request"] = "label"
                priors = pipe.priors.prior(record.emotion).reshape(1, -1).float().cpu().expand(recipe.generated_frames(len(audio)), -1)
                pipe(portrait, audio, priors, recipe=recipe, generator=generator, frame_sink=writer.write)
            else:
                sidecar["request"] = request = record.emotion if opts.request == "label" else "speech"
                pipe(portrait, audio, request, recipe=recipe, generator=generator, frame_sink=writer.write)
            writer.finish()
        write_json(video.with_suffix(".json"), sidecar)
        written.append(video)
    return written


def emotion_centroids(pipe, dataset: str, split: str = "train") -> tuple[np.ndarray, list[str]]:
    """(8, 12) the mean slow expression the expression encoder reads from each emotion's clips (level 3; neutral 1)."""
    from ..data.emotive import stream_targets
    from ..utils.media import read_video

    clips, _ = evaluation_clips(dataset, split)
    means: dict[str, list[np.ndarray]] = {}
    for record in clips:
        frames = read_video(record.video, with_audio=False).frames
        means.setdefault(record.emotion, []).append(stream_targets(pipe.read_expression(frames).cpu().numpy())[1].mean(0))
    names = [e for e in EMOTIONS if e in means]
    return np.stack([np.mean(means[e], axis=0) for e in names]), names


@torch.no_grad()
def trajectory_diversity(
    pipe, dataset: str, split: str = "test", seeds: int = 8, requests: tuple[str, ...] = ("speech", "label"), centroids: tuple[np.ndarray, list[str]] | None = None
) -> dict:
    """Di-CTE's trajectories of the split's evaluation clips under ``seeds`` seeds.

    Per request: ``seed_spread`` — the standard deviation across seeds of each frame's coefficients,
    averaged over frames, coefficients and clips (in coefficient units); ``repeat_difference`` — the
    largest difference between two draws with the same seed (0: repeatable); ``real_spread`` — the
    standard deviation of the real clips' slow expression across the 3 clips of the same person,
    emotion and level (each clip's mean over time, then across clips), for scale; and ``moving`` —
    the mean over clips of the standard deviation over time of a trajectory (does it move?).
    """
    from ..data.emotive import stream_targets
    from ..pipeline.pipeline_emotivetalk import parse_request
    from ..utils.media import read_video

    clips, records = evaluation_clips(dataset, split)
    report: dict = {}
    for kind in requests:
        spreads, repeats, moving, hits = [], [], [], []
        for record in clips:
            clip = read_video(record.video)
            recipe = pipe.recipe.replace(fps=clip.fps)
            n = recipe.generated_frames(len(clip.audio))
            hidden = pipe.audio_hidden(clip.audio, n, recipe)
            stream = pipe.decouple(hidden, n, recipe.generated_fps).expression
            request = parse_request("speech" if kind == "speech" else record.emotion)
            draws = torch.stack([pipe.expression_trajectory(request, stream, torch.Generator().manual_seed(s)) for s in range(seeds)])
            again = pipe.expression_trajectory(request, stream, torch.Generator().manual_seed(0))
            spreads.append(float(draws.std(0).mean()))
            repeats.append(float((again - draws[0]).abs().max()))
            moving.append(float(draws.std(1).mean()))
            if centroids is not None:
                table, names = centroids
                nearest = np.linalg.norm(draws.mean(1).cpu().numpy()[:, None] - table[None], axis=-1).argmin(1)
                hits += [names[k] == record.emotion for k in nearest]
        report[kind] = {"seed_spread": float(np.mean(spreads)), "repeat_difference": float(np.max(repeats)), "moving": float(np.mean(moving)), "clips": len(clips)}
        if hits:
            report[kind]["emotion_accuracy"] = float(np.mean(hits))
    real, people, means = [], [], {}
    for record in clips:
        group = [r for r in records if (r.identity, r.emotion, r.level) == (record.identity, record.emotion, record.level)]
        means[record.rel] = [stream_targets(pipe.read_expression(read_video(r.video, with_audio=False).frames).cpu().numpy())[1].mean(0) for r in group]
        if len(means[record.rel]) > 1:
            real.append(float(np.std(np.stack(means[record.rel]), axis=0, ddof=1).mean()))
    for emotion in {r.emotion for r in clips}:
        firsts = [means[r.rel][0] for r in clips if r.emotion == emotion]
        if len(firsts) > 1:
            people.append(float(np.std(np.stack(firsts), axis=0, ddof=1).mean()))
    report["real_spread"] = float(np.mean(real)) if real else None  # one person, one emotion: across their clips
    report["real_spread_people"] = float(np.mean(people)) if people else None  # one emotion: across people
    return report


def drift_report(video: str | Path, portrait: str | Path, seconds: float = 10.0, judges=None) -> dict:
    """The first and the last ``seconds`` of a long video scored alike, and the Fréchet distance between them."""
    from .data import load_video_arrays
    from .features import FPS
    from .judges import load_judges
    from .metrics import frechet_distance, segment_features
    from .scoring import score_frames
    from .single import score_video

    judges = judges or load_judges()
    arr = load_video_arrays(video)
    total = arr.num_frames / FPS
    if total < 2 * seconds:
        raise InputError(f"{video}: {total:.1f} s is too short to compare its first and last {seconds:g} s")
    first = score_video(video, portrait, judges, segment=(0.0, seconds))
    last = score_video(video, portrait, judges, segment=(total - seconds, None))
    k = int(round(seconds * FPS))
    feats = [segment_features(score_frames(judges.emotion, judges.identity, faces).features) for faces in (arr.faces[:k], arr.faces[-k:])]
    return {
        "video": str(video), "seconds": total, "segment_seconds": seconds,
        "first": {key: first[key] for key in ("emotion", "probabilities", "fsim", "fsim_min", "sync_c", "sync_d")},
        "last": {key: last[key] for key in ("emotion", "probabilities", "fsim", "fsim_min", "sync_c", "sync_d")},
        "fvd_first_last": frechet_distance(*feats),
    }  # fmt: skip
