"""ODE solvers against closed-form cases, and the cheaper guidance schedule."""

import numpy as np
import pytest
import torch

from dicetalk.edm import karras_sigmas
from dicetalk.pipeline.sampling import SAMPLERS, evaluations, sample

ODE_SAMPLERS = tuple(s for s in SAMPLERS if s != "euler-churn")  # deterministic: they solve the ODE


def _gaussian_case(steps, sampler, sd=0.7):
    """Data ~ N(0, sd^2): the exact denoiser and the exact ODE end point are known."""
    sigmas = karras_sigmas(steps, sigma_min=0.002, sigma_max=80.0).double()
    x_t = torch.linspace(-3, 3, 11, dtype=torch.float64) * sigmas[0]
    calls = []

    def denoise(x, sigma, step):
        calls.append(step)
        return x * sd**2 / (sd**2 + sigma**2)

    out = sample(denoise, x_t.clone(), sigmas, sampler)
    exact = x_t * sd / (sd**2 + sigmas[0] ** 2).sqrt()
    return (out - exact).abs().max().item(), len(calls)


@pytest.mark.parametrize("sampler", ODE_SAMPLERS)
def test_every_sampler_converges_to_the_exact_solution(sampler):
    coarse, calls = _gaussian_case(8, sampler)
    fine, _ = _gaussian_case(256, sampler)
    assert calls == evaluations(sampler, 8)
    assert fine < coarse and fine < 0.05


def test_second_order_solvers_beat_euler_at_few_steps():
    euler, _ = _gaussian_case(16, "euler")
    for sampler in ("heun", "dpmpp-2m"):
        assert _gaussian_case(16, sampler)[0] < euler / 2
    assert _gaussian_case(8, "dpmpp-2m")[0] < _gaussian_case(8, "euler")[0] / 2  # one evaluation per step


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(lambda x, s, i: x, torch.zeros(1), torch.tensor([1.0, 0.0]), "ddim")


def _tiny_one_window(seed: int = 0):
    """A tiny random pipeline and a one-window input (4 frames): image, audio, priors."""
    from dicetalk.pipeline.loading import build_random_pipeline

    pipe = build_random_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    audio = rng.standard_normal(4000).astype(np.float32)
    return pipe, image, audio, pipe.priors.prior("happy")[None].expand(4, -1)


def _one_denoising_call(seed: int):
    """A tiny pipeline's noisy latents and conditions for one window, and a hook listing each UNet call's batch size."""
    pipe, image, audio, priors = _tiny_one_window(seed=seed)
    h = int(pipe.unet.config.sample_size)
    x = torch.randn(4, pipe.unet.config.out_channels, h, h, generator=torch.Generator().manual_seed(2))
    cond = pipe.prepare_conditions(image, audio, priors, 25.0, None, 0.02, 127, torch.Generator().manual_seed(3))
    batches = []
    hook = pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    return pipe, x, cond, batches, hook


def test_guidance_on_part_of_the_steps_runs_one_branch_afterwards():
    pipe, image, audio, priors = _tiny_one_window()
    batches = []
    hook = pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    full = pipe(image, audio, priors, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).frames
    assert batches == [3, 3, 3, 3]
    batches.clear()
    half = pipe(image, audio, priors, num_inference_steps=4, guidance_fraction=0.5, generator=torch.Generator().manual_seed(0)).frames
    assert batches == [3, 3, 1, 1]
    hook.remove()
    assert not np.array_equal(full, half)


def test_guidance_interval_guides_only_the_steps_whose_noise_level_lies_in_it():
    pipe, image, audio, priors = _tiny_one_window()
    pipe.scheduler.set_timesteps(4)
    levels = pipe.scheduler.sigmas[:4].tolist()  # decreasing
    batches = []
    hook = pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    run = lambda **kw: pipe(image, audio, priors, num_inference_steps=4, generator=torch.Generator().manual_seed(0), **kw).frames
    full = run()
    batches.clear()
    middle = run(guidance_interval=(levels[2], levels[1]))
    assert batches == [1, 3, 3, 1]
    batches.clear()
    everywhere = run(guidance_interval=(0.0, float("inf")))
    assert batches == [3, 3, 3, 3]
    batches.clear()
    pipe.register_to_config(default_guidance_interval=[levels[3], levels[3]])  # the model's recipe: the last step only
    recipe = run()
    assert batches == [1, 1, 1, 3]
    batches.clear()
    # Both limits apply: the first half of the steps, and the levels in the interval.
    run(guidance_interval=(levels[2], levels[0]), guidance_fraction=0.5)
    hook.remove()
    assert batches == [3, 3, 1, 1]
    np.testing.assert_array_equal(everywhere, full)
    assert not np.array_equal(middle, full) and not np.array_equal(recipe, full)


def test_window_overlap_defaults_to_the_model_recipe():
    pipe, image, audio, priors = _tiny_one_window()
    priors = priors[:1].expand(11, -1)  # several windows of 4 frames
    calls = []
    hook = pipe.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    run = lambda **kw: pipe(image, audio, priors, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kw).frames
    quarter = run()  # no recipe: a quarter window (1 frame)
    quarter_calls = len(calls)
    calls.clear()
    explicit = run(overlap=0)
    none_calls = len(calls)
    pipe.register_to_config(default_overlap=0)
    calls.clear()
    recipe = run()
    hook.remove()
    assert len(calls) == none_calls < quarter_calls  # shared frames are denoised twice
    np.testing.assert_array_equal(recipe, explicit)
    assert not np.array_equal(recipe, quarter)


def test_identity_scale_one_skips_the_unconditional_branch_and_changes_nothing_else():
    pipe, x, cond, batches, hook = _one_denoising_call(seed=1)
    sigma = torch.tensor(2.0)
    two = pipe._guided_x0(x, sigma, [0], cond, 25.0, identity_scale=1.0, audio_emotion_scale=6.0)
    assert batches == [2]
    # The three-branch formula at s_id = 1 + a hair: the skipped branch's weight is that hair.
    near = pipe._guided_x0(x, sigma, [0], cond, 25.0, identity_scale=1.0 + 1e-6, audio_emotion_scale=6.0)
    assert batches == [2, 3]
    hook.remove()
    torch.testing.assert_close(two, near, atol=1e-4, rtol=0)
    far = pipe._guided_x0(x, sigma, [0], cond, 25.0, identity_scale=3.0, audio_emotion_scale=6.0)
    assert (far - two).abs().max() > 1e-2


def test_guidance_scales_default_to_the_model_recipe():
    pipe, image, audio, priors = _tiny_one_window()

    def run(**kw):
        return pipe(image, audio, priors, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **kw).frames

    assert (pipe.config.default_identity_scale, pipe.config.default_emotion_scale) == (3.0, 6.0)  # the release's
    release = run()
    assert np.array_equal(release, run(identity_scale=3.0, audio_emotion_scale=6.0))
    pipe.register_to_config(default_identity_scale=1.0, default_emotion_scale=4.0)
    assert np.array_equal(run(), run(identity_scale=1.0, audio_emotion_scale=4.0))
    assert not np.array_equal(run(), release)


def test_a_separate_audio_scale_adds_the_image_and_audio_branch():
    pipe, x, cond, calls, hook = _one_denoising_call(seed=2)
    sigma = torch.tensor(2.0)

    def x0(**kw):
        return pipe._guided_x0(x, sigma, [0], cond, 25.0, **kw)

    joint = x0(identity_scale=1.0, audio_emotion_scale=4.0)
    assert torch.equal(joint, x0(identity_scale=1.0, audio_emotion_scale=4.0, audio_scale=4.0))  # the same scale: the same two branches
    assert calls == [2, 2]
    split = x0(identity_scale=1.0, audio_emotion_scale=4.0, audio_scale=2.0)
    assert calls[-1] == 3
    # The split estimate moves linearly in s_a: the step from 2 to 3 is the image + audio term.
    split3 = x0(identity_scale=1.0, audio_emotion_scale=4.0, audio_scale=3.0)
    split4_via_audio = split + 2 * (split3 - split)
    torch.testing.assert_close(split4_via_audio, joint, atol=1e-4, rtol=0)  # s_a = 4 is the joint form again
    with_none = x0(identity_scale=2.0, audio_emotion_scale=4.0, audio_scale=2.0)
    assert calls[-1] == 4
    hook.remove()
    assert (split - joint).abs().max() > 1e-3 and (with_none - split).abs().max() > 1e-3

    _, image, audio, priors = _tiny_one_window(seed=2)  # the inputs behind x and cond
    frames = pipe(image, audio, priors, num_inference_steps=2, generator=torch.Generator().manual_seed(0), audio_scale=2.0).frames
    pipe.register_to_config(default_audio_scale=2.0)
    assert np.array_equal(frames, pipe(image, audio, priors, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames)


def test_guided_estimate_with_an_audio_scale():
    from dicetalk.edm import guided

    image, audio, full, none = (torch.full((2,), v) for v in (1.0, 2.0, 4.0, 0.5))
    assert torch.equal(guided(image, full, 3.0, audio=audio, audio_scale=3.0), image + 3.0 * (full - image))
    torch.testing.assert_close(guided(image, full, 3.0, audio=audio, audio_scale=1.5), torch.full((2,), 1 + 1.5 * 1 + 3.0 * 2))
    torch.testing.assert_close(guided(image, full, 3.0, 2.0, none, audio=audio, audio_scale=1.5), torch.full((2,), 8.5 + 0.5))
    with pytest.raises(ValueError, match="image \\+ audio"):
        guided(image, full, 3.0, audio_scale=1.5)


def test_churned_euler_samples_the_data_distribution_repeatably():
    """Data ~ N(0, sd^2): from pure noise, the stochastic sampler's outputs take the data's spread."""
    sd = 0.7
    start = torch.randn(20000, generator=torch.Generator().manual_seed(0)) * (sd**2 + 80.0**2) ** 0.5
    calls = []

    def denoise(x, sigma, step):
        calls.append(float(sigma))
        return x * sd**2 / (sd**2 + sigma**2)

    def run(steps, seed=1, sampler="euler-churn"):
        sigmas = karras_sigmas(steps, sigma_min=0.002, sigma_max=80.0)
        return sample(denoise, start.clone(), sigmas, sampler, generator=torch.Generator().manual_seed(seed)), sigmas

    out, sigmas = run(10)
    assert len(calls) == evaluations("euler-churn", 10) == 10
    assert sum(c not in sigmas.tolist() for c in calls) >= 5  # the churned levels, above the schedule's
    assert torch.equal(out, run(10)[0]) and not torch.equal(out, run(10, seed=2)[0])
    assert not torch.equal(out, run(10, sampler="euler")[0])
    # The churn per step shrinks with the number of steps, so the sampler converges.
    errors = [abs(float(run(n)[0].std()) - sd) for n in (10, 64, 512)]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.02
