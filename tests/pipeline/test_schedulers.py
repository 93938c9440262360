"""The samplers as diffusers schedulers: exact cases, equality with diffusers' Euler, repeatable churn."""

import pytest
import torch

from dicetalk.pipeline.schedulers import SCHEDULERS, EDMEulerScheduler, sample, scheduler_for

ODE_SAMPLERS = tuple(s for s in SCHEDULERS if s != "euler-churn")  # deterministic: they solve the ODE


def _gaussian_case(steps, sampler, sd=0.7):
    """Data ~ N(0, sd^2): the exact denoiser and the exact ODE end point are known."""
    scheduler = SCHEDULERS[sampler](sigma_max=80.0)
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas.double()
    x_t = torch.linspace(-3, 3, 11, dtype=torch.float64) * sigmas[0]
    calls = []

    def denoise(x, sigma, step):
        calls.append(step)
        return x * sd**2 / (sd**2 + sigma**2)

    scheduler.sigmas = sigmas  # the exact case in float64
    out = sample(scheduler, denoise, x_t.clone())
    exact = x_t * sd / (sd**2 + sigmas[0] ** 2).sqrt()
    return (out - exact).abs().max().item(), calls


@pytest.mark.parametrize("sampler", ODE_SAMPLERS)
def test_every_sampler_converges_to_the_exact_solution(sampler):
    coarse, calls = _gaussian_case(8, sampler)
    fine, _ = _gaussian_case(256, sampler)
    expected = [i for i in range(8) for _ in range(2 if sampler == "heun" and i < 7 else 1)]
    assert calls == expected  # Heun evaluates twice per step but the last, every evaluation names its step
    assert fine < coarse and fine < 0.05


def test_second_order_solvers_beat_euler_at_few_steps():
    euler, _ = _gaussian_case(16, "euler")
    for sampler in ("heun", "dpmpp-2m"):
        assert _gaussian_case(16, sampler)[0] < euler / 2
    assert _gaussian_case(8, "dpmpp-2m")[0] < _gaussian_case(8, "euler")[0] / 2  # one evaluation per step


def test_noise_levels_are_those_of_diffusers_euler_as_svd_configures_it():
    from diffusers import EulerDiscreteScheduler

    svd = EulerDiscreteScheduler(
        prediction_type="v_prediction", sigma_min=0.002, sigma_max=700.0, use_karras_sigmas=True,
        timestep_type="continuous", interpolation_type="linear", steps_offset=1,
    )  # fmt: skip
    ours = EDMEulerScheduler()
    for steps in (8, 25):
        svd.set_timesteps(steps)
        ours.set_timesteps(steps)
        assert torch.equal(ours.sigmas, svd.sigmas.float())
        torch.testing.assert_close(ours.timesteps, svd.timesteps.float())


def test_euler_steps_as_diffusers_euler_on_the_v_prediction():
    """The release steps diffusers' EulerDiscreteScheduler on the UNet's v output; ours steps on x0 = c_skip x + c_out v."""
    from diffusers import EulerDiscreteScheduler

    from dicetalk import edm

    svd = EulerDiscreteScheduler(prediction_type="v_prediction", sigma_min=0.002, sigma_max=700.0, use_karras_sigmas=True, timestep_type="continuous")
    ours = EDMEulerScheduler()
    svd.set_timesteps(6)
    ours.set_timesteps(6)
    g = torch.Generator().manual_seed(0)
    x_svd = x_ours = torch.randn(2, 4, 8, 8, generator=g) * ours.sigmas[0]
    for t in svd.timesteps:
        v = torch.randn(2, 4, 8, 8, generator=g)
        x_in, sigma = ours.perturb(x_ours)
        x0 = edm.c_skip(sigma) * x_in + edm.c_out(sigma) * v
        x_ours = ours.step(x0, x_in).prev_sample
        x_svd = svd.step(v, t, x_svd).prev_sample
        torch.testing.assert_close(x_ours, x_svd, rtol=1e-5, atol=1e-4 * float(sigma))


def test_a_scheduler_is_saved_and_loaded_as_a_diffusers_component(tmp_path):
    churn = scheduler_for("euler-churn")
    churn.save_pretrained(tmp_path / "scheduler")
    loaded = SCHEDULERS["euler-churn"].from_pretrained(tmp_path / "scheduler")
    assert type(loaded).__name__ == "EDMEulerChurnScheduler" and loaded.config.s_churn == churn.config.s_churn
    # Switching samplers keeps the noise range.
    heun = scheduler_for("heun", SCHEDULERS["euler"](sigma_max=80.0))
    assert heun.sampler == "heun" and heun.config.sigma_max == 80.0


def test_churned_euler_samples_the_data_distribution_repeatably():
    """Data ~ N(0, sd^2): from pure noise, the stochastic sampler's outputs take the data's spread."""
    sd = 0.7
    start = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * (sd**2 + 80.0**2) ** 0.5
    calls = []

    def denoise(x, sigma, step):
        calls.append(float(sigma))
        return x * sd**2 / (sd**2 + sigma**2)

    def run(steps, seed=1, sampler="euler-churn"):
        scheduler = SCHEDULERS[sampler](sigma_max=80.0)
        scheduler.set_timesteps(steps)
        return sample(scheduler, denoise, start.clone(), torch.Generator().manual_seed(seed)), scheduler.sigmas

    out, sigmas = run(10)
    assert len(calls) == 10
    assert sum(c not in sigmas.tolist() for c in calls) >= 5  # the churned levels, above the schedule's
    assert torch.equal(out, run(10)[0]) and not torch.equal(out, run(10, seed=2)[0])
    assert not torch.equal(out, run(10, sampler="euler")[0])
    # The churn per step shrinks with the number of steps, so the sampler converges.
    errors = [abs(float(run(n)[0].std()) - sd) for n in (10, 64, 512)]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.02


def test_the_recipe_knows_every_sampler_without_importing_torch():
    from dicetalk.pipeline.recipe import SAMPLERS

    assert SAMPLERS == tuple(SCHEDULERS)
