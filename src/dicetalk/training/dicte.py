"""``dicetalk train-dicte``: Di-CTE, the diffusion model of expression trajectories under speech and emotion.

Data: spans of ``frames`` frames of the train split's clips; the trajectory is the slow whole-face
expression the frozen expression encoder reads from the frames (:mod:`dicetalk.data.emotive`), the
speech condition the frozen V-AID's expression stream of the same frames. Each sample's emotion
condition is drawn from one source:

* ``p_label``: the clip's label at the strength of its level (``LEVEL_INTENSITY``: 0.4 / 0.7 / 1.0;
  neutral at 1) — labelled clips only;
* ``p_reference``: the expression of *another* clip of the same person, emotion and level (another
  span of the same clip for unlabelled talking data) — the reference-video source;
* otherwise none (the null condition): the model must take the emotion from the voice.

``p_drop_speech`` of the samples also lose the speech (zeros), so speech guidance stays possible.
Loss: EDM's weighted squared error of the denoised trajectory, ``ln sigma ~ N(p_mean, p_std^2)``.
Every random draw of step ``t`` comes from ``(seed, t)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import edm
from ..data.emotive import SplitFeatures
from ..models.dicte import TrajectoryDenoiser
from ..models.vaid import AudioDecoupler
from ..utils.atomic import atomic_dir
from .common import Run, fit, make_accelerator
from .vaid import masked_mse


@dataclass
class DicteOptions:
    dataset: str
    out: str
    vaid: str  # a trained V-AID folder (train-vaid's OUT/vaid)
    weights: str | None = None  # frozen audio and expression encoders (None: the embedded default)
    steps: int = 4000
    batch: int = 32
    frames: int = 64
    lr: float = 5e-4
    warmup: int = 200
    channels: int = 128
    p_mean: float = -0.4
    p_std: float = 1.2
    p_label: float = 0.45
    p_reference: float = 0.3
    p_drop_speech: float = 0.1
    seed: int = 0
    mixed_precision: str = "no"
    save_every: int = 500
    log_every: int = 25
    cache_dir: str | None = None


@torch.no_grad()
def speech_streams(vaid: AudioDecoupler, features: SplitFeatures) -> list[torch.Tensor]:
    """V-AID's expression stream of every clip of the split, (T, expression_dim) each."""
    vaid = vaid.eval()
    return [vaid(features.clip_windows(c)[None].to(vaid.dtype)).expression[0].float() for c in range(features.num_clips)]


def trajectory_statistics(features: SplitFeatures) -> dict[str, list[float]]:
    expression = np.concatenate([features.clip_targets(c)[1] for c in range(features.num_clips)])
    return {"trajectory_mean": expression.mean(0).tolist(), "trajectory_scale": np.maximum(expression.std(0), 1e-3).tolist()}


def build_dicte(opts: DicteOptions, features: SplitFeatures, speech_dim: int) -> TrajectoryDenoiser:
    torch.manual_seed(opts.seed)
    return TrajectoryDenoiser(
        trajectory_dim=features.visual.shape[1], speech_dim=speech_dim, channels=opts.channels, embed_dim=opts.channels, **trajectory_statistics(features)
    )


class TrajectoryBatches:
    """The samples of :func:`dicte_loss`: a pure function of ``(seed, step)``."""

    def __init__(self, opts: DicteOptions, features: SplitFeatures, speech: list[torch.Tensor]):
        self.opts, self.features, self.speech = opts, features, speech
        self.targets = [torch.from_numpy(features.clip_targets(c)[1]) for c in range(features.num_clips)]
        self.labels, self.strengths = features.labels(), features.strengths()
        self.same = features.same_emotion()

    def _span(self, c: int, rng: np.random.Generator) -> slice:
        n = len(self.targets[c])
        start = int(rng.integers(0, max(1, n - self.opts.frames + 1)))
        return slice(start, start + min(n, self.opts.frames))

    def __call__(self, step: int) -> dict:
        opts, f = self.opts, self.opts.frames
        rng = np.random.default_rng((opts.seed, 7717, step))
        b = opts.batch
        x0 = torch.zeros(b, f, self.targets[0].shape[1])
        speech = torch.zeros(b, f, self.speech[0].shape[1])
        reference = torch.zeros(b, f, self.targets[0].shape[1])
        mask, ref_mask = torch.zeros(b, f, dtype=torch.bool), torch.zeros(b, f, dtype=torch.bool)
        source = np.zeros(b, np.int64)  # 0 none, 1 label, 2 reference
        labels, strengths = np.zeros(b, np.int64), np.zeros(b, np.float32)
        for i, c in enumerate(rng.integers(0, self.features.num_clips, b)):
            c = int(c)
            span = self._span(c, rng)
            x = self.targets[c][span]
            x0[i, : len(x)], speech[i, : len(x)], mask[i, : len(x)] = x, self.speech[c][span], True
            u = rng.random()
            labelled = self.labels[c] >= 0
            if labelled and u < opts.p_label:
                source[i], labels[i] = 1, self.labels[c]
                strengths[i] = 1.0 if self.strengths[c] == 0 else self.strengths[c]  # neutral: the neutral label itself
            elif u < opts.p_label + opts.p_reference or (not labelled and u < opts.p_reference):
                other = self.same.get(c, [c])
                r = int(other[rng.integers(len(other))])
                rs = self._span(r, rng)
                ref = self.targets[r][rs]
                source[i] = 2
                reference[i, : len(ref)], ref_mask[i, : len(ref)] = ref, True
            if rng.random() < opts.p_drop_speech:
                speech[i] = 0.0
        return {
            "x0": x0, "speech": speech, "mask": mask, "reference": reference, "reference_mask": ref_mask | (torch.from_numpy(source)[:, None] != 2),
            "source": torch.from_numpy(source), "label": torch.from_numpy(labels), "strength": torch.from_numpy(strengths),
        }  # fmt: skip


def emotion_conditions(model: TrajectoryDenoiser, batch: dict) -> torch.Tensor:
    """Each sample's emotion condition from its source (none / label / reference)."""
    b = batch["x0"].shape[0]
    label = model.label_condition(batch["label"], batch["strength"])
    reference = model.reference_condition(batch["reference"], batch["reference_mask"])
    null = model.null_condition(b)
    source = batch["source"][:, None]
    return torch.where(source == 1, label, torch.where(source == 2, reference, null))


def dicte_loss(opts: DicteOptions, batches: TrajectoryBatches):
    def loss_fn(step, modules, _batch, generator):
        model = modules["dicte"]
        dev = next(model.parameters()).device
        b = {k: v.to(dev) for k, v in batches(step).items()}
        x0 = model.standardise(b["x0"])
        n = x0.shape[0]
        sigma = edm.sample_training_sigmas(n, opts.p_mean, opts.p_std, generator, dev)
        x = x0 + edm.expand(sigma, x0) * torch.randn(x0.shape, generator=generator, device=dev)
        denoised = model(x, sigma, b["speech"], emotion_conditions(model, b), b["mask"])
        weight = edm.loss_weight(sigma)[:, None, None]
        m = b["mask"][..., None].to(x0.dtype)
        loss = (weight * (denoised - x0) ** 2 * m).sum() / (m.sum() * x0.shape[-1])
        return loss, {"mse": masked_mse(denoised, x0, b["mask"]).detach()}

    return loss_fn


def train_dicte(opts: DicteOptions, features: SplitFeatures, resume: bool = False, dry_run: bool = False) -> TrajectoryDenoiser:
    """Train; the newest weights are exported to ``OUT/dicte``. Returns the module."""
    vaid = AudioDecoupler.from_pretrained(opts.vaid).float().eval()
    model = build_dicte(opts, features, int(vaid.config.expression_dim))
    run = Run(Path(opts.out) / "run", opts, resume=resume)
    if dry_run:
        return model
    batches = TrajectoryBatches(opts, features, speech_streams(vaid, features))
    accelerator = make_accelerator(run.folder, opts.mixed_precision)
    modules = {"dicte": model}
    fit(
        run, accelerator, modules, dicte_loss(opts, batches), steps=opts.steps, lr=opts.lr, seed=opts.seed, warmup=opts.warmup,
        save_every=opts.save_every, log_every=opts.log_every, desc="train-dicte", cosine=True,
    )  # fmt: skip
    model = accelerator.unwrap_model(modules["dicte"]).eval()
    if accelerator.is_main_process:
        with atomic_dir(Path(opts.out) / "dicte") as tmp:
            model.save_pretrained(tmp)
    return model
