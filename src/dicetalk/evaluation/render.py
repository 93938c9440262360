"""Render the evaluation set: one generated video per held-out clip, with the sidecar ``evaluate`` reads.

For every chosen clip of a split (default: the test identities' MEAD clips at level 3), the
model animates a reference frame with the clip's speech and an emotion condition. The reference
frame is the clip's own first frame (``reference_frame="clip"``, which already shows the emotion)
or the first frame of the same person's neutral clip (``"neutral"``, as a user's portrait: the
emotion must then come from the condition). The emotion condition is:

* ``label`` — the stored prompt prior of the clip's emotion (the paper's "Ours-P");
* ``reference`` — the embedder's prior of *another* clip of the same identity and emotion ("Ours-V");
* ``other-identity`` — the prior of a clip of the same emotion by a *different* identity (the
  identity-leakage test: the output should keep the target's identity).

Each ``OUT/<name>.mp4`` gets ``OUT/<name>.json``: ``{"source", "emotion", "level", "mode", ...}``.

:func:`render_autoencoder_set` writes the same clips through the model's autoencoder alone
(encode, decode: no diffusion): the ceiling of every judge score a latent model of this
autoencoder can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.index import ClipRecord, scan
from ..errors import InputError
from ..utils.atomic import write_json
from ..pipeline.recipe import parse_recipe
from ..utils.media import VideoWriter, read_video
from ..utils.pixels import resize, to_pixels, to_uint8

MODES = ("label", "reference", "other-identity")
REFERENCE_FRAMES = ("clip", "neutral")


@dataclass
class RenderOptions:
    dataset: str
    out: str
    weights: str | None = None
    split: str | None = "test"  # None: every split
    levels: tuple[int, ...] = (3,)
    emotions: tuple[str, ...] | None = None
    per_group: int = 1  # clips per (identity, emotion, level)
    mode: str = "label"
    reference_frame: str = "clip"
    recipe: str | None = None  # sampling recipe spec on the model's own (pipeline/recipe.py); None: the model's
    seed: int = 0
    max_frames: int = 125


def choose_clips(records: list[ClipRecord], opts: RenderOptions) -> list[ClipRecord]:
    chosen, seen = [], {}
    for r in records:
        if not r.labelled or (r.level or 1) not in opts.levels and r.emotion != "neutral":
            continue
        if opts.emotions and r.emotion not in opts.emotions:
            continue
        key = (r.identity, r.emotion, r.level)
        if seen.get(key, 0) < opts.per_group:
            seen[key] = seen.get(key, 0) + 1
            chosen.append(r)
    return chosen


def _emotion_reference(record: ClipRecord, pool: list[ClipRecord], mode: str) -> ClipRecord:
    if mode == "reference":
        same = [r for r in pool if r.identity == record.identity and r.emotion == record.emotion and r.level == record.level and r.rel != record.rel]
    else:
        same = [r for r in pool if r.identity != record.identity and r.emotion == record.emotion and r.level == record.level]
    if not same:
        raise InputError(f"no {mode} emotion reference for {record.rel}")
    return same[0]


def _neutral_clip(record: ClipRecord, pool: list[ClipRecord]) -> ClipRecord:
    same = [r for r in pool if r.identity == record.identity and r.emotion == "neutral"]
    if not same:
        raise InputError(f"no neutral clip of {record.identity} for a neutral reference frame")
    return same[0]


def _portrait(record: ClipRecord, records: list[ClipRecord], opts: RenderOptions, first: np.ndarray) -> tuple[np.ndarray, str]:
    """The reference frame a clip is generated from (``first``: the clip's own first frame) and its clip."""
    if opts.reference_frame != "neutral":
        return first, record.rel
    portrait = _neutral_clip(record, records)
    return read_video(portrait.video, max_frames=1, with_audio=False).frames[0], portrait.rel


def _clips_to_render(opts: RenderOptions) -> tuple[list[ClipRecord], list[ClipRecord], Path]:
    """(every MEAD record of the split, the chosen ones, the created output folder)."""
    records = scan(opts.dataset, splits=None if opts.split is None else (opts.split,), datasets=("mead",))
    clips = choose_clips(records, opts)
    if not clips:
        raise InputError(f"{opts.dataset}: no clips to render for split {opts.split!r}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    return records, clips, out


def render_evaluation_set(opts: RenderOptions, pipe=None, progress: bool = True) -> list[Path]:
    """Generate every chosen clip; returns the written videos."""
    from ..pipeline.loading import load_pipeline

    if opts.mode not in MODES:
        raise InputError(f"unknown mode {opts.mode!r}; expected one of {', '.join(MODES)}")
    if opts.reference_frame not in REFERENCE_FRAMES:
        raise InputError(f"unknown reference frame {opts.reference_frame!r}; expected one of {', '.join(REFERENCE_FRAMES)}")
    pipe = pipe or load_pipeline(opts.weights)
    pipe.set_progress_bar_config(disable=True)
    recipe = parse_recipe(opts.recipe, pipe.recipe)
    records, clips, out = _clips_to_render(opts)
    written = []
    for i, record in enumerate(tqdm(clips, desc=f"render {opts.mode}", disable=not progress, unit="clip")):
        name = record.rel.replace("/", "__")
        video = out / f"{name}.mp4"
        if video.is_file() and video.with_suffix(".json").is_file():
            written.append(video)  # resumable: finished videos are kept
            continue
        clip = read_video(record.video, max_frames=opts.max_frames)
        n = len(clip.frames)
        audio = clip.audio[: int(round(n / clip.fps * 16000))]
        sidecar = {"source": record.rel, "emotion": record.emotion, "level": record.level, "mode": opts.mode}
        first, sidecar["reference_frame"] = _portrait(record, records, opts, clip.frames[0])
        if opts.mode == "label":
            prior = pipe.priors.prior(record.emotion)
        else:
            ref = _emotion_reference(record, records, opts.mode)
            prior = pipe.embed_reference_video(ref.video)
            sidecar["emotion_reference"] = ref.rel
        clip_recipe = recipe.replace(fps=clip.fps)
        priors = prior.reshape(1, -1).float().cpu().expand(clip_recipe.generated_frames(len(audio)), -1)
        generator = torch.Generator().manual_seed(opts.seed + i)
        with VideoWriter(video, clip.fps, audio=audio) as writer:
            pipe(first, audio, priors, recipe=clip_recipe, generator=generator, frame_sink=writer.write)
            writer.finish()
        write_json(video.with_suffix(".json"), sidecar)
        written.append(video)
    return written


@torch.no_grad()
def render_autoencoder_set(opts: RenderOptions, pipe=None, progress: bool = True) -> list[Path]:
    """The chosen clips (``opts.max_frames`` frames) encoded and decoded by the model's VAE at its image size.

    A model with a reference refiner refines the decoded frames from the clip's portrait (as
    ``opts.reference_frame`` chooses it), as generation does: no diffusion, everything else the same.
    """
    from ..pipeline.loading import load_pipeline

    pipe = pipe or load_pipeline(opts.weights)
    records, clips, out = _clips_to_render(opts)
    size, vae = pipe.native_size, pipe.vae
    written = []
    for record in tqdm(clips, desc="render autoencoder", disable=not progress, unit="clip"):
        video = out / (record.rel.replace("/", "__") + ".mp4")
        if not (video.is_file() and video.with_suffix(".json").is_file()):
            clip = read_video(record.video, max_frames=opts.max_frames)
            pixels = to_pixels(np.stack([resize(frame, size, size) for frame in clip.frames])).to(pipe.device, vae.dtype)
            latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
            audio = clip.audio[: int(round(len(clip.frames) / clip.fps * 16000))]
            first, reference_frame = _portrait(record, records, opts, clip.frames[0])
            reference = to_pixels(resize(first, size, size)).to(pipe.device)
            with VideoWriter(video, clip.fps, audio=audio) as writer:
                pipe.decode(latents, chunk=pipe.window, sink=lambda px: writer.write(to_uint8(px).cpu().numpy()), reference=reference)
                writer.finish()
            sidecar = {"source": record.rel, "emotion": record.emotion, "level": record.level, "mode": "autoencoder", "reference_frame": reference_frame}
            write_json(video.with_suffix(".json"), sidecar)
        written.append(video)
    return written


@torch.no_grad()
def embed_clips(dataset: str, pipe, split: str = "test", modalities: str = "both", levels: tuple[int, ...] = (1, 2, 3)) -> dict[str, np.ndarray]:
    """Embedder priors (mu) of every MEAD clip of a split: ``embeddings``, ``labels`` (emotion index), ``identities``.

    ``modalities``: ``both``, ``video`` or ``audio`` — the paper's Table 5 ablation.
    """
    from .. import EMOTIONS
    from ..models.audio_encoder import encode_audio, frame_features

    if modalities not in ("both", "video", "audio"):
        raise InputError(f"modalities must be both, video or audio, got {modalities!r}")
    emb, enc = pipe.emotion_embedder, pipe.expression_encoder
    if emb is None or enc is None:
        raise InputError("this model has no emotion embedder / expression encoder")
    records = [r for r in scan(dataset, splits=(split,), datasets=("mead",)) if (r.level or 1) in levels]
    out, labels, idents = [], [], []
    names = sorted({r.identity for r in records})
    for r in tqdm(records, desc=f"embed ({modalities})", unit="clip"):
        clip = read_video(r.video, max_frames=int(emb.config.max_frames))
        n = len(clip.frames)
        expression = audio = None
        if modalities in ("both", "video"):
            expression = enc(to_pixels(clip.frames))[None]
        if modalities in ("both", "audio"):
            hidden = encode_audio(pipe.audio_encoder, pipe.audio_feature_extractor, clip.audio, n, clip.fps)
            audio = frame_features(hidden, n, clip.fps)[None]
        out.append(emb.eval()(expression=expression, audio=audio, sample=False).mu[0].numpy())
        labels.append(EMOTIONS.index(r.emotion))
        idents.append(names.index(r.identity))
    return {"embeddings": np.stack(out).astype(np.float32), "labels": np.array(labels, np.int64), "identities": np.array(idents, np.int64)}


def save_embeddings(arrays: dict[str, np.ndarray], path: str | Path) -> Path:
    from safetensors.numpy import save_file

    from ..utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp))
    return Path(path)
