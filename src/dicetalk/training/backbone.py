"""Pretraining the parts that come pretrained at full size, for configurations trained from scratch.

At full size the VAE and CLIP image encoder come from Stable Video Diffusion and the audio
encoder is OpenAI's whisper-tiny. The synthetic configuration has no such checkpoints, so
``dicetalk pretrain`` trains small stand-ins on the synthetic world, each for the job the
pretrained one does in the recipe:

* ``vae`` — the temporal-decoder autoencoder, reconstruction (L1 + edges) with a small KL term;
* ``audio_encoder`` — a Whisper encoder trained from scratch to predict, at its 50 Hz rate,
  generic acoustic targets: mouth opening and rounding (lip reading's targets) plus loudness
  and spectral centroid (prosody), so its features carry both content and manner of speech;
* ``image_encoder`` — a CLIP vision tower whose embedding identifies the person across
  expressions (supervised InfoNCE over identities);
* ``expression_encoder`` — frame -> expression coefficients (the 3DMM fitting of the paper),
  used to embed reference videos.

They are frozen afterwards (``dicetalk train-embedder`` and ``dicetalk train`` read them).

``decoder_of`` fine-tunes the decoder of an existing VAE alone (``dicetalk pretrain --parts vae
--decoder-of DIR``): the encoder, and with it the latent space a denoiser was trained in, stays
bit for bit, so the new decoder serves models already trained on that VAE. It learns from the
encoder's deterministic latents (what the denoiser learns and generates) and its weights are an
exponential moving average of the training steps.

``refiner`` (``dicetalk pretrain --parts refiner --decoder-of DIR``) trains the reference refiner
(:mod:`dicetalk.models.reference_refiner`) on that VAE's decoded frames, frozen, with a portrait of
the same person: it restores from the portrait what the small autoencoder and the denoiser lose.

The pretrained originals have seen millions of faces; a dataset of a few dozen identities would
let these stand-ins memorise their palettes (a VAE trained on the 22 training identities alone
reconstructs unseen ones with three times the error). So the image parts also train on a
generic face corpus: :class:`RandomFaces`, freshly rendered identities of the synthetic
renderer drawn from a seed of their own (no world's people), half of every batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..configs import get_config
from ..data.cache import FrameCache
from ..models.audio_encoder import SAMPLES_PER_FEATURE, whisper_feature_extractor
from ..models.registry import build_component
from ..utils.atomic import atomic_dir
from ..utils.pixels import clip_input, to_pixels
from .common import RESUMABLE, Run, fit, make_accelerator
from .losses import info_nce

PARTS = ("vae", "audio_encoder", "image_encoder", "expression_encoder")  # the defaults, trained from nothing
KNOWN_PARTS = (*PARTS, "refiner")  # the refiner learns on a trained VAE's frames (``decoder_of``)


@dataclass
class BackboneOptions:
    dataset: str
    out: str
    config: str = "synthetic"
    parts: tuple[str, ...] = PARTS
    steps: dict[str, int] = field(default_factory=lambda: {"vae": 4000, "audio_encoder": 1500, "image_encoder": 1000, "expression_encoder": 1000, "refiner": 3000})
    batch: dict[str, int] = field(default_factory=lambda: {"vae": 8, "audio_encoder": 16, "image_encoder": 64, "expression_encoder": 64, "refiner": 16})
    lr: dict[str, float] = field(default_factory=lambda: {"vae": 4e-4, "audio_encoder": 5e-4, "image_encoder": 5e-4, "expression_encoder": 1e-3, "refiner": 3e-4})
    seed: int = 0
    mixed_precision: str = "no"
    cache_dir: str | None = None
    generic_faces: bool = True  # half of the image batches from RandomFaces (see the module docstring)
    # A VAE folder: with ``parts=("vae",)`` fine-tune its decoder only, at half the VAE's rate; with
    # ``parts=("refiner",)`` the VAE whose decoded frames the refiner corrects (see the module docstring).
    decoder_of: str | None = None
    ema_decay: float = 0.998  # of the fine-tuned decoder's and the refiner's weight averages
    refiner_drift: float = 0.6  # largest latent perturbation (in units of the scaled latents' std) the refiner sees

    def __post_init__(self):
        from ..errors import InputError

        unknown = [p for p in self.parts if p not in KNOWN_PARTS]
        if unknown:
            raise InputError(f"unknown part {unknown[0]!r}; expected some of {', '.join(KNOWN_PARTS)}")
        if self.decoder_of is not None and tuple(self.parts) not in (("vae",), ("refiner",)):
            raise InputError("--decoder-of goes with --parts vae (fine-tune its decoder) or --parts refiner alone")
        if "refiner" in self.parts and self.decoder_of is None:
            raise InputError("the refiner learns on a trained VAE's frames: pass --decoder-of VAE with --parts refiner")


def _rng(seed: int, step: int, salt: int) -> np.random.Generator:
    return np.random.default_rng((seed, salt, step))


def _random_frames(cache: FrameCache, rng: np.random.Generator, n: int) -> np.ndarray:
    return np.sort(rng.integers(0, len(cache.frames), n))


class RandomFaces:
    """Short clips of random synthetic identities, rendered on demand: a generic face corpus."""

    SEED = 987_654  # distinct from any dataset's seed: these are nobody's identities

    def __init__(self, size: int, render_size: int = 128):
        self.size, self.render_size = size, render_size

    def clip(self, rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(frames (T, S, S, 3) uint8, expression (T, 12), identity number) of one random person."""
        import cv2

        from .. import EMOTIONS
        from ..synthetic import FaceRenderer, emotion_expression, emotion_levels, sample_identity
        from ..synthetic.expressions import EXPRESSION_NAMES, clip_expression

        index = int(rng.integers(1 << 30))
        person = sample_identity(self.SEED, index)
        renderer = FaceRenderer(person.appearance, self.render_size)
        emotion = EMOTIONS[int(rng.integers(len(EMOTIONS)))]
        levels = emotion_levels(emotion)
        base = emotion_expression(emotion, int(levels[rng.integers(len(levels))]), person.habits)
        jaw, rnd, blink = EXPRESSION_NAMES.index("jaw_drop"), EXPRESSION_NAMES.index("lip_round"), EXPRESSION_NAMES.index("eye_open")
        out, exprs = [], []
        pose = rng.normal(0, 0.05, 3)
        mouth = rng.uniform(0, 0.6)
        for _ in range(frames):
            e = base.copy()
            mouth = float(np.clip(mouth + rng.normal(0, 0.15), 0, 0.9))
            e[jaw] += mouth
            e[rnd] += rng.uniform(0, 0.3)
            if rng.random() < 0.08:
                e[blink] = -1.0
            e = clip_expression(e)
            pose = pose + rng.normal(0, 0.01, 3)
            frame, _ = renderer.render(e, pose)
            out.append(cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA))
            exprs.append(e)
        return np.stack(out), np.stack(exprs).astype(np.float32), index


# ---------------------------------------------------------------------------------------- losses
def _frame_batch(cache: FrameCache, rng: np.random.Generator, batch: int, frames_per_clip: int, faces: RandomFaces | None) -> np.ndarray:
    """``batch`` frames: short runs of consecutive frames (the decoder is temporal), half from ``faces``."""
    clips = batch // frames_per_clip
    generic = clips // 2 if faces is not None else 0
    idx = []
    for c in rng.integers(0, len(cache.records), clips - generic):
        s = int(rng.integers(0, cache.lengths[c] - frames_per_clip + 1))
        idx.extend(range(int(cache.starts[c]) + s, int(cache.starts[c]) + s + frames_per_clip))
    return np.concatenate([cache.frames[np.array(idx)]] + [faces.clip(rng, frames_per_clip)[0] for _ in range(generic)])


def _reconstruction(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rec = (y - x).abs().mean()
    edges = ((y.diff(dim=-1) - x.diff(dim=-1)).abs().mean() + (y.diff(dim=-2) - x.diff(dim=-2)).abs().mean()) / 2
    return rec, edges


def vae_loss(cache: FrameCache, seed: int, batch: int, frames_per_clip: int = 4, faces: RandomFaces | None = None):
    def loss_fn(step, modules, _batch, generator):
        vae = modules["vae"]
        x = to_pixels(_frame_batch(cache, _rng(seed, step, 1), batch, frames_per_clip, faces)).to(vae.device)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator, device=x.device)
        rec, edges = _reconstruction(vae.decode(z, num_frames=frames_per_clip).sample, x)
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + edges + 1e-3 * kl
        return loss, {"l1": rec.detach(), "kl": kl.detach()}

    return loss_fn


def decoder_loss(cache: FrameCache, seed: int, batch: int, frames_per_clip: int = 4, faces: RandomFaces | None = None):
    """The decoder alone, from the frozen encoder's deterministic latents."""

    def loss_fn(step, modules, _batch, generator):
        vae = modules["vae"]
        x = to_pixels(_frame_batch(cache, _rng(seed, step, 1), batch, frames_per_clip, faces)).to(vae.device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
        rec, edges = _reconstruction(vae.decode(z, num_frames=frames_per_clip).sample, x)
        return rec + edges, {"l1": rec.detach()}

    return loss_fn


def refiner_loss(
    cache: FrameCache, seed: int, batch: int, vae, drift: float, frames_per_clip: int = 4, faces: RandomFaces | None = None
):
    """The refiner: frozen-VAE frames (from perturbed latents) + a portrait of the same person -> the true frames.

    The portrait is another frame of the person, from any of their clips (half the time a clip's
    first frame, as a user's portrait), so expression, mouth and pose must come from the decoded
    frame. The latent perturbation, white plus smooth noise of a random size per clip, stands in
    for the denoiser's errors, so the refiner learns to restore appearance that generation lost,
    not only what the autoencoder loses.
    """
    by_identity: dict[str, list[int]] = {}
    for c, record in enumerate(cache.records):
        by_identity.setdefault(record.identity, []).append(c)
    vae.requires_grad_(False).eval()
    scale = float(vae.config.scaling_factor)

    def batch_arrays(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        clips = batch // frames_per_clip
        generic = clips // 2 if faces is not None else 0
        frames, refs = [], []
        for c in rng.integers(0, len(cache.records), clips - generic):
            s = int(cache.starts[c]) + int(rng.integers(0, cache.lengths[c] - frames_per_clip + 1))
            pool = by_identity[cache.records[c].identity]
            r = int(pool[rng.integers(len(pool))])
            ref = int(cache.starts[r]) + (0 if rng.random() < 0.5 else int(rng.integers(cache.lengths[r])))
            frames.append(cache.frames[s : s + frames_per_clip])
            refs.append(np.repeat(cache.frames[ref][None], frames_per_clip, axis=0))
        for _ in range(generic):  # a fresh person: the portrait is one more frame of the same short clip
            clip = faces.clip(rng, frames_per_clip + 1)[0]
            frames.append(clip[1:])
            refs.append(np.repeat(clip[:1], frames_per_clip, axis=0))
        return np.concatenate(frames), np.concatenate(refs)

    def loss_fn(step, modules, _batch, generator):
        refiner = modules["refiner"]
        rng = _rng(seed, step, 6)
        frames, refs = batch_arrays(rng)
        x, ref = to_pixels(frames).to(refiner.device), to_pixels(refs).to(refiner.device)
        vae.to(x.device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()
            n = z.shape[0] // frames_per_clip
            size = torch.from_numpy(rng.uniform(0, drift, size=(n, 1, 1, 1)).astype(np.float32)).repeat_interleave(frames_per_clip, 0)
            white = torch.from_numpy(rng.standard_normal(z.shape).astype(np.float32))
            smooth = F.interpolate(F.avg_pool2d(white, 4), scale_factor=4.0, mode="bilinear")  # low-frequency drift
            z = z + ((0.5 * white + 1.5 * smooth) * size / scale).to(z.device)
            decoded = vae.decode(z, num_frames=frames_per_clip).sample.clamp(-1, 1)
        rec, edges = _reconstruction(refiner(decoded, ref), x)
        with torch.no_grad():
            before = (decoded - x).abs().mean()
        return rec + edges, {"l1": rec.detach(), "l1_decoded": before}

    return loss_fn


def _load_part(cls, folder: str | Path, name: str, what: str):
    """``cls`` in float32 from ``folder``: the part's own folder, or one holding ``name/``."""
    from ..errors import InputError

    folder = Path(folder)
    folder = folder / name if (folder / name / "config.json").is_file() else folder
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a {what} folder (no config.json)")
    try:
        return cls.from_pretrained(folder, torch_dtype=torch.float32)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        raise InputError(f"{folder}: not a {what} folder ({str(exc).splitlines()[0]})") from None


def load_vae(folder: str | Path):
    """The float32 VAE in ``folder``: a VAE folder, or a weights or backbone folder holding ``vae/``."""
    from diffusers import AutoencoderKLTemporalDecoder

    return _load_part(AutoencoderKLTemporalDecoder, folder, "vae", "VAE")


def load_refiner(folder: str | Path):
    """The float32 reference refiner in ``folder``: a refiner folder, or a weights or run folder holding ``refiner/``."""
    from ..models.reference_refiner import ReferenceRefiner

    return _load_part(ReferenceRefiner, folder, "refiner", "refiner").eval()


def load_vae_for_decoder(folder: str | Path, config_name: str):
    """The VAE in ``folder`` (see :func:`load_vae`), checked against the configuration, encoder frozen."""
    from ..errors import InputError

    vae = load_vae(folder)
    expected = get_config(config_name).vae
    if list(vae.config.block_out_channels) != list(expected["block_out_channels"]) or vae.config.latent_channels != expected["latent_channels"]:
        raise InputError(f"{folder}: its VAE does not match the {config_name!r} configuration")
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    return vae


def _acoustic_targets(audio: np.ndarray, rows: int) -> np.ndarray:
    """Per 50 Hz row: log RMS loudness and normalised spectral centroid of the 20 ms frame."""
    need = rows * SAMPLES_PER_FEATURE
    a = np.zeros(need, np.float32)
    a[: min(need, len(audio))] = audio[:need]
    frames = a.reshape(rows, SAMPLES_PER_FEATURE)
    rms = np.log(np.sqrt((frames**2).mean(1)) + 1e-4)
    spec = np.abs(np.fft.rfft(frames * np.hanning(SAMPLES_PER_FEATURE), axis=1))
    freqs = np.linspace(0, 1, spec.shape[1])
    centroid = (spec * freqs).sum(1) / (spec.sum(1) + 1e-6)
    return np.stack([(rms + 5) / 3, centroid * 4], 1).astype(np.float32)


def audio_encoder_loss(cache: FrameCache, seed: int, batch: int, head: torch.nn.Module, feature_extractor, mouth_index: tuple[int, int]):
    def loss_fn(step, modules, _batch, generator):
        enc = modules["audio_encoder"]
        rng = _rng(seed, step, 2)
        positions = enc.config.max_source_positions
        waves, targets, masks = [], [], []
        for c in rng.integers(0, len(cache.records), batch):
            n = int(cache.lengths[c])
            frames = min(n, positions // 2)
            s = int(rng.integers(0, n - frames + 1))
            audio = cache.clip_audio(int(c), s, frames)
            chunk = np.zeros(positions * SAMPLES_PER_FEATURE, np.float32)
            chunk[: len(audio)] = audio[: len(chunk)]
            g0 = int(cache.starts[c]) + s
            mouth = np.array(cache.expression[g0 : g0 + frames][:, list(mouth_index)], np.float32).repeat(2, axis=0)
            acoustic = _acoustic_targets(audio, 2 * frames)
            target = np.zeros((positions, 4), np.float32)
            target[: 2 * frames] = np.concatenate([mouth, acoustic], 1)
            mask = np.zeros(positions, np.float32)
            mask[: 2 * frames] = 1
            waves.append(chunk)
            targets.append(target)
            masks.append(mask)
        mel = feature_extractor(waves, sampling_rate=16000, return_tensors="pt").input_features.to(enc.device)
        hidden = enc(mel).last_hidden_state
        pred = modules["audio_head"](hidden)
        t = torch.from_numpy(np.stack(targets)).to(pred.device)
        m = torch.from_numpy(np.stack(masks)).to(pred.device)[..., None]
        err = ((pred - t) ** 2 * m).sum((0, 1)) / m.sum()
        return err.mean(), {"mouth": err[:2].mean().detach(), "prosody": err[2:].mean().detach()}

    return loss_fn


def image_encoder_loss(cache: FrameCache, seed: int, batch: int, per_identity: int = 4, faces: RandomFaces | None = None):
    identities = sorted({r.identity for r in cache.records})
    clips_of = {i: [c for c, r in enumerate(cache.records) if r.identity == i] for i in identities}

    def loss_fn(step, modules, _batch, generator):
        enc = modules["image_encoder"]
        rng = _rng(seed, step, 3)
        groups = batch // per_identity
        generic = groups // 4 if faces is not None else 0
        chosen = rng.choice(len(identities), size=min(len(identities), groups - generic), replace=False)
        idx, labels = [], []
        for label in chosen:
            clips = clips_of[identities[label]]
            for _ in range(per_identity):  # frames of different clips: other emotions, other moments
                c = clips[rng.integers(len(clips))]
                idx.append(int(cache.starts[c]) + int(rng.integers(0, cache.lengths[c])))
                labels.append(int(label))
        frames = [cache.frames[np.array(idx)]]
        for g in range(generic):  # each random person in several expressions
            person_frames, _, number = faces.clip(rng, per_identity)
            frames.append(person_frames)
            labels += [len(identities) + g] * per_identity
        x = clip_input(np.concatenate(frames), enc.config.image_size).to(enc.device)
        emb = enc(x).image_embeds
        loss = info_nce(emb, torch.tensor(labels, device=emb.device), temperature=0.1)
        return loss, {}

    return loss_fn


def expression_encoder_loss(cache: FrameCache, seed: int, batch: int, faces: RandomFaces | None = None):
    def loss_fn(step, modules, _batch, generator):
        enc = modules["expression_encoder"]
        rng = _rng(seed, step, 4)
        generic = batch // 8 if faces is not None else 0  # clips of 4 random people's frames
        idx = _random_frames(cache, rng, batch - 4 * generic)
        frames, targets = [cache.frames[idx]], [np.array(cache.expression[idx], np.float32)]
        for _ in range(generic):
            f, e, _ = faces.clip(rng, 4)
            frames.append(f)
            targets.append(e)
        x = to_pixels(np.concatenate(frames)).to(enc.device)
        target = torch.from_numpy(np.concatenate(targets)).to(enc.device)
        err = F.mse_loss(enc(x), target)
        return err, {}

    return loss_fn


# ------------------------------------------------------------------------------------------ main
def pretrain_backbone(opts: BackboneOptions, cache: FrameCache, progress: bool = True) -> dict[str, Path]:
    """Train each part of ``opts.parts`` on ``cache``; saves ``OUT/<part>/`` (and ``OUT/runs/<part>``)."""
    from ..synthetic import EXPRESSION_NAMES

    config = get_config(opts.config)
    out = Path(opts.out)
    written = {}
    for part in opts.parts:
        final = out / part
        if (final / "config.json").is_file():
            written[part] = final
            continue  # already trained: pretraining resumes part by part
        torch.manual_seed(opts.seed)
        finetune = part == "vae" and opts.decoder_of is not None
        module = load_vae_for_decoder(opts.decoder_of, opts.config) if finetune else build_component(part, config)
        modules = {part: module}
        steps, batch, lr = opts.steps[part], opts.batch[part], opts.lr[part] / (2 if finetune else 1)
        faces = RandomFaces(cache.size) if opts.generic_faces else None
        averaged = finetune or part == "refiner"
        averages = {part: copy.deepcopy(module)} if averaged else None
        if part == "refiner":
            vae = load_vae_for_decoder(opts.decoder_of, opts.config)
            loss_fn = refiner_loss(cache, opts.seed, batch, vae, opts.refiner_drift, faces=faces)
        elif finetune:
            loss_fn = decoder_loss(cache, opts.seed, batch, faces=faces)
        elif part == "vae":
            loss_fn = vae_loss(cache, opts.seed, batch, faces=faces)
        elif part == "audio_encoder":
            head = torch.nn.Linear(module.config.d_model, 4)
            modules["audio_head"] = _Head(head)
            mouth = (EXPRESSION_NAMES.index("jaw_drop"), EXPRESSION_NAMES.index("lip_round"))
            loss_fn = audio_encoder_loss(cache, opts.seed, batch, modules["audio_head"], whisper_feature_extractor(module.config), mouth)
        elif part == "image_encoder":
            loss_fn = image_encoder_loss(cache, opts.seed, batch, faces=faces)
        elif part == "expression_encoder":
            loss_fn = expression_encoder_loss(cache, opts.seed, batch, faces=faces)
        else:
            raise ValueError(f"unknown part {part!r}; expected one of {', '.join(KNOWN_PARTS)}")
        run_dir = out / "runs" / part
        # Each part is its own run: the other parts listed, or their step counts, may change between calls.
        run = Run(run_dir, {**vars(opts), "part": part}, resume=True, resumable_keys=(*RESUMABLE, "parts"))
        accelerator = make_accelerator(run_dir, opts.mixed_precision)
        fit(
            run, accelerator, modules, loss_fn, steps=steps, lr=lr, seed=opts.seed, warmup=min(200, steps // 10 + 1),
            save_every=max(100, steps // 5), desc=f"fine-tune {part} decoder" if finetune else f"pretrain {part}", averages=averages, ema_decay=opts.ema_decay,
        )  # fmt: skip
        trained = averages[part] if averaged else accelerator.unwrap_model(modules[part])
        if part == "vae" and not finetune:  # a fine-tuned decoder keeps its encoder's scaling
            # EDM assumes unit-variance data: scale latents by 1 / their standard deviation.
            trained.register_to_config(scaling_factor=latent_scaling_factor(trained, cache, opts.seed))
        with atomic_dir(final) as tmp:
            trained.save_pretrained(tmp)
        written[part] = final
    return written


@torch.no_grad()
def latent_scaling_factor(vae, cache: FrameCache, seed: int, frames: int = 512) -> float:
    idx = _random_frames(cache, _rng(seed, 0, 5), frames)
    z = vae.eval().encode(to_pixels(cache.frames[idx]).to(vae.device)).latent_dist.mode()
    return float(1.0 / z.float().std())


class _Head(torch.nn.Module):
    """A throw-away prediction head, checkpointed with the encoder it trains."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x):
        return self.linear(x)

    def save_pretrained(self, folder, safe_serialization=True):
        from safetensors.torch import save_file

        Path(folder).mkdir(parents=True, exist_ok=True)
        save_file(self.state_dict(), str(Path(folder) / "head.safetensors"))
