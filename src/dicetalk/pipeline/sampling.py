"""ODE solvers of the probability-flow ODE in EDM's sigma parameterisation.

Each takes ``denoise(x, sigma, step) -> x0`` (the guided, window-averaged estimate) and the
noise levels ``sigmas`` (high to low, ending with 0):

* ``euler`` — first order, one evaluation per step (SVD's sampler);
* ``euler-churn`` — Euler with Karras et al.'s stochastic "churn" (2022, Alg. 2): before each step
  with ``CHURN_RANGE[0] <= sigma <= CHURN_RANGE[1]`` fresh noise raises the level to
  ``sigma (1 + gamma)``, ``gamma = min(S_CHURN / steps, sqrt(2) - 1)``, and the step starts from
  there (so with many steps it tends to the ODE's solution). The added noise corrects the errors of
  earlier steps instead of carrying them along, which at few steps keeps motion crisp (lip sync in
  the synthetic world: see docs/results.md). Random: pass a ``generator`` for repeatable videos;
* ``heun`` — second order (Karras et al. 2022, Alg. 1 without churn), two evaluations per step
  except the last;
* ``dpmpp-2m`` — DPM-Solver++(2M) (Lu et al. 2022): second order from the previous step's
  estimate, one evaluation per step; the usual choice for few steps.
"""

from __future__ import annotations

from typing import Callable

import torch

SAMPLERS = ("euler", "euler-churn", "heun", "dpmpp-2m")
S_CHURN = 4.0  # total churn, spread over the steps (0.4 per step at 10 steps)
CHURN_RANGE = (0.05, 50.0)
Denoise = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def evaluations(sampler: str, steps: int) -> int:
    """Denoiser evaluations the sampler makes over ``steps`` steps."""
    return 2 * steps - 1 if sampler == "heun" else steps


def sample(
    denoise: Denoise,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    sampler: str = "euler",
    on_step: Callable[[], None] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    previous = None
    steps = len(sigmas) - 1
    levels = sigmas.cpu().tolist()  # control flow decided once, not by a device sync per step
    final = [level == 0 for level in levels]
    gamma = min(S_CHURN / steps, 2**0.5 - 1)  # Karras et al. cap one step's churn at sqrt(2) - 1
    for i in range(steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sampler == "euler-churn" and CHURN_RANGE[0] <= levels[i] <= CHURN_RANGE[1]:
            raised = sigma * (1 + gamma)
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device if generator is not None else "cpu")
            x = x + (raised**2 - sigma**2).sqrt() * noise.to(x.device)
            sigma = raised
        x0 = denoise(x, sigma, i)
        if final[i + 1]:
            x = x0
        elif sampler in ("euler", "euler-churn"):
            x = x + (x - x0) / sigma * (sigma_next - sigma)
        elif sampler == "heun":
            d = (x - x0) / sigma
            x_next = x + d * (sigma_next - sigma)
            d_next = (x_next - denoise(x_next, sigma_next, i)) / sigma_next
            x = x + (d + d_next) / 2 * (sigma_next - sigma)
        else:  # dpmpp-2m, in log-sigma time t = -log(sigma)
            h = sigma.log() - sigma_next.log()
            estimate = x0
            if previous is not None:
                h_last = sigmas[i - 1].log() - sigma.log()
                r = h_last / h
                estimate = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        previous = x0
        if on_step is not None:
            on_step()
    return x
