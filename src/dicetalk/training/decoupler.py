"""``dicetalk train-decoupler``: EDI's reference decoupler, by regression on pairs the world renders.

For every MEAD clip of a split, ``frames_per_clip`` frames (the first, which is what a portrait is
taken from, and random others): the frame as the clip's video shows it, and the same person in the
same pose re-rendered by the world's face model at the person's neutral expression
(:func:`~dicetalk.synthetic.expressions.emotion_expression` ``("neutral", 1, habits)``: mouth closed,
no emotion). Both are resized to the model's size as the pipeline resizes a portrait and encoded by
the frozen autoencoder (the latent the denoiser's reference path gets). The pairs are made once per
split and kept in ``OUT/pairs_<split>.safetensors``.

An emotion also holds the head (sadness hangs it, surprise lifts it: the world's
:data:`~dicetalk.synthetic.motion.EMOTION_POSTURE`), and a denoiser keeps the reference's pose for
the whole video. ``rest_posture`` takes that posture out of the target's pose as well, so the
decoupled portrait shows the person upright and at rest (``OUT/pairs_<split>_rest_posture.safetensors``).

Sixteen train people are few to learn "this face at rest" from (train pairs 0.003, val 0.100 after
3,000 steps): ``fresh_people`` adds pairs of people the world's generator draws outside every split
(indices from :data:`FRESH_INDEX`; no clip of them exists), each shown at a random emotion and
level, mouth opening, blink and head pose, against the same person and pose at rest
(``OUT/pairs_fresh.safetensors``). The val people stay unseen. With 3,000 of them (12,000 pairs) the
val latent error falls from 0.100 to 0.025.

:class:`~dicetalk.models.reference_decoupler.ReferenceDecoupler` is fitted by mean squared error
in latent space; at the end the val pairs are scored against leaving the latent as it is
(``OUT/val.json``, the train pairs' too) and the module is exported to ``OUT/decoupler``. Every draw of step ``t`` comes
from ``(seed, t)``: ``--resume`` continues the same curve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..models.reference_decoupler import ReferenceDecoupler
from ..utils.atomic import atomic_dir, write_bytes, write_json
from .common import Run, fit, make_accelerator


FRESH_INDEX = 1_000_000
"""Identity indices of the extra people: far above the world's (MEAD from 0, HDTF from 10,000)."""


@dataclass
class DecouplerOptions:
    dataset: str
    out: str
    weights: str | None = None  # whose autoencoder the latents come from (None: the embedded default)
    steps: int = 3000
    batch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    frames_per_clip: int = 8
    fresh_people: int = 0  # extra people drawn outside every split (their pairs are rendered, not read)
    fresh_frames: int = 4  # pairs per extra person
    rest_posture: bool = False  # the target's head pose without the emotion's posture (sadness hangs the head...)
    channels: int = 64
    blocks: int = 4
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    log_every: int = 50


def _world_people(dataset: Path) -> tuple[int, dict[str, int], int]:
    """(the world's seed, identity name -> index, frame size) from ``world.json``."""
    path = dataset / "world.json"
    try:
        world = json.loads(path.read_text())
        return int(world["seed"]), {k: int(v["index"]) for k, v in world["identities"].items()}, int(world["options"]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a 'dicetalk synth' world (the decoupler's neutral targets are re-rendered from it)") from None


@torch.no_grad()
def encode_frames(vae, size: int, frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 frames -> (N, C, h, w) unscaled latents, resized to the model's size as a portrait is."""
    from ..utils.pixels import resize, to_pixels

    pixels = to_pixels(np.stack([resize(f, size, size) for f in frames])).to(vae.device, vae.dtype)
    return vae.encode(pixels).latent_dist.mode().float().cpu()


@torch.no_grad()
def neutral_pairs(
    dataset: str | Path, split: str, vae, size: int, frames_per_clip: int, seed: int = 0, progress: bool = True, rest_posture: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(portrait latents, neutral latents), each (N, C, h, w) unscaled, of the split's MEAD clips;
    ``rest_posture``: the neutral frame's head pose without the clip's emotional posture."""
    from tqdm.auto import tqdm

    from ..data.index import scan
    from ..synthetic.expressions import emotion_expression
    from ..synthetic.face import FaceRenderer
    from ..synthetic.identity import sample_identity
    from ..utils.media import read_video

    dataset = Path(dataset)
    world_seed, people, world_size = _world_people(dataset)
    records = scan(dataset, splits=(split,), datasets=("mead",))
    if not records:
        raise InputError(f"{dataset}: no MEAD clips in the {split} split")
    renderers: dict[str, tuple] = {}
    inputs, targets = [], []

    for c, record in enumerate(tqdm(records, desc=f"decoupler pairs ({split})", unit="clip", disable=not progress)):
        if record.identity not in renderers:
            person = sample_identity(world_seed, people[record.identity], record.identity)
            renderers[record.identity] = (FaceRenderer(person.appearance, world_size), emotion_expression("neutral", 1, person.habits))
        renderer, neutral = renderers[record.identity]
        rest = target_pose(record, rest_posture)
        rng = np.random.default_rng((seed, 4177, c))
        picks = sorted({0, *rng.integers(0, len(rest), max(0, frames_per_clip - 1)).tolist()})
        frames = read_video(record.video, max_frames=picks[-1] + 1, with_audio=False).frames
        picks = [t for t in picks if t < len(frames)]
        inputs.append(encode_frames(vae, size, [frames[t] for t in picks]))
        targets.append(encode_frames(vae, size, [renderer.render(neutral, rest[t])[0] for t in picks]))
    return torch.cat(inputs), torch.cat(targets)


def fresh_frame(habits, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expression (12,), pose (3,), the emotion's posture in that pose (3,)) of one frame of a
    labelled clip, drawn as the world animates one."""
    from .. import EMOTIONS
    from ..synthetic.expressions import clip_expression, emotion_expression
    from ..synthetic.motion import EYE_OPEN, JAW, ROUND, emotion_posture, held_expression

    emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
    level = 1 if emotion == "neutral" else int(rng.integers(1, 4))
    expression = clip_expression(held_expression(emotion_expression(emotion, level, habits), 1, habits.liveliness, rng)[0])
    loudness = rng.uniform(0.0, 1.0) if rng.uniform() < 0.7 else 0.0  # a syllable, or a pause
    expression[JAW] += (1.0 - expression[JAW]) * habits.articulation * loudness**1.2
    expression[ROUND] += (1.0 - expression[ROUND]) * habits.rounding * loudness * rng.uniform(0.0, 1.0) * (rng.uniform() < 0.3)
    if rng.uniform() < 0.1:
        expression[EYE_OPEN] += (-1.0 - expression[EYE_OPEN]) * rng.uniform(0.0, 1.0)
    sway = rng.uniform(-1.0, 1.0, 3) * habits.sway * np.array([1.0, 0.5, 0.6])
    posture = emotion_posture(emotion, level)
    return expression.astype(np.float32), (posture + sway).astype(np.float32), posture


@torch.no_grad()
def fresh_pairs(
    dataset: str | Path, vae, size: int, people: int, frames: int, seed: int = 0, progress: bool = True, rest_posture: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(portrait latents, neutral latents) of ``people`` people of the world's generator in no split."""
    from tqdm.auto import tqdm

    from ..synthetic.expressions import emotion_expression
    from ..synthetic.face import FaceRenderer
    from ..synthetic.identity import sample_identity

    world_seed, known, world_size = _world_people(Path(dataset))
    assert max(known.values(), default=0) < FRESH_INDEX, "the world's people reach the extra people's indices"

    inputs, targets = [], []
    for k in tqdm(range(people), desc="decoupler pairs (extra people)", unit="person", disable=not progress):
        person = sample_identity(world_seed, FRESH_INDEX + k)
        renderer, rest = FaceRenderer(person.appearance, world_size), emotion_expression("neutral", 1, person.habits)
        rng = np.random.default_rng((seed, 7919, k))
        drawn = [fresh_frame(person.habits, rng) for _ in range(frames)]
        inputs.append(encode_frames(vae, size, [renderer.render(e, pose)[0] for e, pose, _ in drawn]))
        targets.append(encode_frames(vae, size, [renderer.render(rest, pose - posture if rest_posture else pose)[0] for _, pose, posture in drawn]))
    return torch.cat(inputs), torch.cat(targets)


def target_pose(record, rest_posture: bool) -> np.ndarray:
    """(T, 3) the head pose the decoupler's target shows for each frame of ``record``'s clip: the
    clip's own, or with ``rest_posture`` without the emotion's posture."""
    from ..synthetic.motion import emotion_posture

    pose = _pose(record)
    return pose - emotion_posture(record.emotion, record.level) if rest_posture else pose


def _pose(record) -> np.ndarray:
    """(T, 3) the clip's head pose per frame (its ``.safetensors`` annotations)."""
    from safetensors.numpy import load_file

    path = record.coefficients
    try:
        return load_file(str(path))["pose"]
    except (OSError, KeyError):
        raise InputError(f"{path}: no pose annotations (the decoupler re-renders each frame's pose)") from None


def cached_pairs(opts: DecouplerOptions, split: str, vae, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load, save

    path = Path(opts.out) / f"pairs_{split}{'_rest_posture' if opts.rest_posture else ''}.safetensors"
    if path.is_file():
        pairs = load(path.read_bytes())
        if split != "fresh" or len(pairs["portrait"]) == opts.fresh_people * opts.fresh_frames:
            return pairs["portrait"], pairs["neutral"]
    if split == "fresh":
        x, y = fresh_pairs(opts.dataset, vae, size, opts.fresh_people, opts.fresh_frames, opts.seed, rest_posture=opts.rest_posture)
    else:
        x, y = neutral_pairs(opts.dataset, split, vae, size, opts.frames_per_clip, opts.seed, rest_posture=opts.rest_posture)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, save({"portrait": x.contiguous(), "neutral": y.contiguous()}))
    return x, y


def decoupler_loss(opts: DecouplerOptions, x: torch.Tensor, y: torch.Tensor):
    def loss_fn(step, modules, _batch, generator):
        rng = np.random.default_rng((opts.seed, 6029, step))
        idx = torch.from_numpy(rng.integers(0, len(x), opts.batch))
        out = modules["decoupler"](x[idx])
        return torch.nn.functional.mse_loss(out.float(), y[idx]), {}

    return loss_fn


@torch.no_grad()
def pair_scores(decoupler: ReferenceDecoupler, x: torch.Tensor, y: torch.Tensor, prefix: str) -> dict:
    """Mean squared error to the neutral latents, decoupled and left as they are."""
    out = torch.cat([decoupler(x[i : i + 256]).float() for i in range(0, len(x), 256)])
    return {f"{prefix}_mse": float(((out - y) ** 2).mean()), f"{prefix}_mse_unchanged": float(((x - y) ** 2).mean()), f"{prefix}_pairs": len(x)}


def train_decoupler(opts: DecouplerOptions, vae, size: int, resume: bool = False, dry_run: bool = False) -> ReferenceDecoupler:
    """Train; the module is exported to ``OUT/decoupler`` and scored on the val pairs (``OUT/val.json``)."""
    _world_people(Path(opts.dataset))  # a world to re-render from, before a run folder is made
    torch.manual_seed(opts.seed)
    decoupler = ReferenceDecoupler(latent_channels=int(vae.config.latent_channels), channels=opts.channels, blocks=opts.blocks)
    run = Run(Path(opts.out) / "run", opts, resume=resume)
    if dry_run:
        return decoupler
    x, y = cached_pairs(opts, "train", vae, size)
    if opts.fresh_people:
        xf, yf = cached_pairs(opts, "fresh", vae, size)
        x, y = torch.cat([x, xf]), torch.cat([y, yf])
    xv, yv = cached_pairs(opts, "val", vae, size)
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    modules = {"decoupler": decoupler}
    fit(
        run, accelerator, modules, decoupler_loss(opts, x, y), steps=opts.steps, lr=opts.lr, seed=opts.seed, warmup=opts.warmup,
        save_every=opts.save_every, log_every=opts.log_every, desc="train-decoupler", cosine=True,
    )  # fmt: skip
    decoupler = accelerator.unwrap_model(modules["decoupler"]).eval()
    if accelerator.is_main_process:
        write_json(Path(opts.out) / "val.json", {**pair_scores(decoupler, xv, yv, "val"), **pair_scores(decoupler, x, y, "train")})
        with atomic_dir(Path(opts.out) / "decoupler") as tmp:
            decoupler.save_pretrained(tmp)
    return decoupler
