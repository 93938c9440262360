"""Samplers of the probability-flow ODE in EDM's sigma parameterisation, as diffusers schedulers.

Each is a ``SchedulerMixin`` + ``ConfigMixin`` saved in a model folder's ``scheduler/`` and
loaded like any diffusers component. They step on the *denoised estimate* ``x0`` rather than on
the UNet's raw output: the pipeline combines guidance branches and averages sampling windows in
``x0`` space, and every sampler here is written in terms of ``x0``. The loop (:func:`sample`)::

    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:                 # one entry per denoiser evaluation
        x_in, sigma = scheduler.perturb(x, generator)
        x = scheduler.step(denoise(x_in, sigma, scheduler.step_index), x_in).prev_sample

Noise levels are Karras et al.'s (``rho`` 7 between ``sigma_max`` and ``sigma_min``, then 0), the
schedule Stable Video Diffusion samples with.

* :class:`EDMEulerScheduler` (``euler``) — first order, one evaluation per step. Equal to diffusers'
  ``EulerDiscreteScheduler`` as SVD configures it (Karras sigmas, continuous timesteps, v-prediction);
  a test checks it step for step;
* :class:`EDMEulerChurnScheduler` (``euler-churn``) — Karras et al.'s stochastic sampler (2022, Alg. 2):
  before each step with ``s_tmin <= sigma <= s_tmax`` fresh noise raises the level to
  ``sigma (1 + gamma)``, ``gamma = min(s_churn / steps, sqrt(2) - 1)``, and the denoiser is
  evaluated *there*. diffusers' ``EulerDiscreteScheduler`` has the same parameters but adds the noise
  after the model has been evaluated at the un-raised level, a different algorithm;
* :class:`EDMHeunScheduler` (``heun``) — second order (Alg. 1 without churn), two evaluations per step
  except the last;
* :class:`EDMDPMSolver2MScheduler` (``dpmpp-2m``) — DPM-Solver++(2M) (Lu et al. 2022) in log-sigma time,
  one evaluation per step, first order on the first and last steps. diffusers'
  ``DPMSolverMultistepScheduler`` takes its noise levels from a discrete beta schedule (0.03 to 14.6),
  not EDM's 0.002 to 700; its EDM variant matches the algorithm but steps on the model's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from .. import edm


@dataclass
class EDMSchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class EDMEulerScheduler(SchedulerMixin, ConfigMixin):
    config_name = "scheduler_config.json"
    order = 1
    sampler = "euler"

    @register_to_config
    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0):
        self.sigmas = torch.zeros(0)
        self.timesteps = torch.zeros(0)
        self.evaluation_steps: list[int] = []
        self._levels: list[float] = []
        self._index = 0

    # ------------------------------------------------------------------ schedule
    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        sigmas = edm.karras_sigmas(num_inference_steps, self.config.sigma_min, self.config.sigma_max, self.config.rho)
        self._levels = sigmas.tolist()  # control flow is decided on the host, never by a device sync
        self.sigmas = sigmas.to(device)
        self.timesteps = edm.c_noise(self.sigmas[self._evaluation_levels()])
        self.evaluation_steps = self._evaluation_steps()
        self._index = 0
        self._reset()

    def _evaluation_levels(self) -> list[int]:
        """Index into ``sigmas`` of the noise level of every denoiser evaluation."""
        return list(range(len(self._levels) - 1))

    def _evaluation_steps(self) -> list[int]:
        """The step every denoiser evaluation belongs to."""
        return list(range(len(self._levels) - 1))

    def _reset(self) -> None:
        pass

    @property
    def num_steps(self) -> int:
        return len(self._levels) - 1

    @property
    def step_index(self) -> int:
        """The step (index into ``sigmas``) that the next evaluation belongs to."""
        return self._index

    @property
    def init_noise_sigma(self) -> float:
        return self._levels[0]

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``original`` at the first noise level (the release's image-to-video start)."""
        return original + noise * self.sigmas[0]

    # ------------------------------------------------------------------ stepping
    def perturb(self, sample: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample to denoise next and its noise level (a stochastic sampler adds noise here)."""
        return sample, self.sigmas[self._index]

    def step(self, denoised: torch.Tensor, sample: torch.Tensor, return_dict: bool = True):
        """One step from ``sample`` (as :meth:`perturb` returned it) given its denoised estimate."""
        i = self._index
        if self._levels[i + 1] == 0:
            prev = denoised
        else:
            sigma, sigma_next = self._sigma, self.sigmas[i + 1]
            prev = sample + (sample - denoised) / sigma * (sigma_next - sigma)
        self._index += 1
        return EDMSchedulerOutput(prev, denoised) if return_dict else (prev,)

    @property
    def _sigma(self) -> torch.Tensor:
        return self.sigmas[self._index]


class EDMEulerChurnScheduler(EDMEulerScheduler):
    sampler = "euler-churn"

    @register_to_config
    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 700.0,
        rho: float = 7.0,
        s_churn: float = 4.0,
        s_tmin: float = 0.05,
        s_tmax: float = 50.0,
    ):
        super().__init__(sigma_min, sigma_max, rho)
        self._raised: torch.Tensor | None = None

    def _reset(self) -> None:
        self._raised = None

    def perturb(self, sample, generator=None):
        i = self._index
        sigma = self.sigmas[i]
        self._raised = None
        if not self.config.s_tmin <= self._levels[i] <= self.config.s_tmax:
            return sample, sigma
        gamma = min(self.config.s_churn / self.num_steps, 2**0.5 - 1)  # Karras et al. cap one step's churn
        raised = sigma * (1 + gamma)
        device = generator.device if generator is not None else "cpu"
        noise = torch.randn(sample.shape, generator=generator, dtype=sample.dtype, device=device)
        self._raised = raised
        return sample + (raised**2 - sigma**2).sqrt() * noise.to(sample.device), raised

    @property
    def _sigma(self) -> torch.Tensor:
        return self.sigmas[self._index] if self._raised is None else self._raised


class EDMHeunScheduler(EDMEulerScheduler):
    sampler = "heun"
    order = 2

    def _evaluation_levels(self) -> list[int]:
        levels = []
        for i in range(len(self._levels) - 1):
            levels.append(i)
            if self._levels[i + 1] != 0:
                levels.append(i + 1)  # the corrector's evaluation at the next level
        return levels

    def _evaluation_steps(self) -> list[int]:
        return [i for i in range(len(self._levels) - 1) for _ in range(1 + (self._levels[i + 1] != 0))]

    def _reset(self) -> None:
        self._first: tuple[torch.Tensor, torch.Tensor] | None = None  # (sample, derivative) of the predictor

    def perturb(self, sample, generator=None):
        i = self._index
        return sample, self.sigmas[i + 1] if self._first is not None else self.sigmas[i]

    def step(self, denoised, sample, return_dict=True):
        i = self._index
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        if self._first is None:
            if self._levels[i + 1] == 0:
                prev = denoised
                self._index += 1
            else:
                d = (sample - denoised) / sigma
                prev = sample + d * (sigma_next - sigma)
                self._first = (sample, d)  # the corrector evaluates ``prev`` at ``sigma_next`` next
        else:
            start, d = self._first
            d_next = (sample - denoised) / sigma_next
            prev = start + (d + d_next) / 2 * (sigma_next - sigma)
            self._first = None
            self._index += 1
        return EDMSchedulerOutput(prev, denoised) if return_dict else (prev,)


class EDMDPMSolver2MScheduler(EDMEulerScheduler):
    sampler = "dpmpp-2m"

    def _reset(self) -> None:
        self._previous: torch.Tensor | None = None

    def step(self, denoised, sample, return_dict=True):
        i = self._index
        sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
        if self._levels[i + 1] == 0:
            prev = denoised
        else:  # in log-sigma time t = -log(sigma)
            h = sigma.log() - sigma_next.log()
            estimate = denoised
            if self._previous is not None:
                r = (self.sigmas[i - 1].log() - sigma.log()) / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * self._previous
            prev = (sigma_next / sigma) * sample - torch.expm1(-h) * estimate
        self._previous = denoised
        self._index += 1
        return EDMSchedulerOutput(prev, denoised) if return_dict else (prev,)


def sample(scheduler: EDMEulerScheduler, denoise, x: torch.Tensor, generator: torch.Generator | None = None, on_step=None) -> torch.Tensor:
    """Run a scheduler whose :meth:`~EDMEulerScheduler.set_timesteps` was called from ``x`` to the end.

    ``denoise(x, sigma, step) -> x0``; ``on_step(i, t, x, x0)`` after every evaluation may return a
    replacement for ``x`` (diffusers' ``callback_on_step_end``).
    """
    for i, t in enumerate(scheduler.timesteps):
        x_in, sigma = scheduler.perturb(x, generator)
        x0 = denoise(x_in, sigma, scheduler.step_index)
        x = scheduler.step(x0, x_in).prev_sample
        if on_step is not None:
            replaced = on_step(i, t, x, x0)
            x = x if replaced is None else replaced
    return x


SCHEDULERS: dict[str, type[EDMEulerScheduler]] = {
    cls.sampler: cls for cls in (EDMEulerScheduler, EDMEulerChurnScheduler, EDMHeunScheduler, EDMDPMSolver2MScheduler)
}


def scheduler_for(sampler: str, like: ConfigMixin | None = None) -> EDMEulerScheduler:
    """The scheduler of ``sampler`` with the noise range of ``like`` (any EDM/Karras scheduler config)."""
    cls = SCHEDULERS[sampler]
    if like is None:
        return cls()
    shared = {k: like.config[k] for k in ("sigma_min", "sigma_max", "rho") if like.config.get(k) is not None}
    if isinstance(like, cls):
        return cls.from_config(like.config)
    return cls(**shared)
