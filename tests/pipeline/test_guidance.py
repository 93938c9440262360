"""Which guidance branches run on which step, and how the recipe's scales combine them."""

import numpy as np
import pytest
import torch

from dicetalk.pipeline.recipe import SamplingRecipe


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
    cond = pipe.prepare_conditions(image, audio, priors, SamplingRecipe(), None, (32, 32), 0, torch.Generator().manual_seed(3))
    batches = []
    hook = pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    return pipe, x, cond, batches, hook


def _batches(pipe):
    batches = []
    return batches, pipe.unet.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))


def test_guidance_on_part_of_the_steps_runs_one_branch_afterwards():
    pipe, image, audio, priors = _tiny_one_window()
    batches, hook = _batches(pipe)
    full = pipe(image, audio, priors, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).frames
    assert batches == [3, 3, 3, 3]
    batches.clear()
    half = pipe(image, audio, priors, pipe.recipe.replace(steps=4, guidance_fraction=0.5), generator=torch.Generator().manual_seed(0)).frames
    assert batches == [3, 3, 1, 1]
    hook.remove()
    assert not np.array_equal(full, half)


def test_guidance_interval_guides_only_the_steps_whose_noise_level_lies_in_it():
    pipe, image, audio, priors = _tiny_one_window()
    pipe.scheduler.set_timesteps(4)
    levels = pipe.scheduler.sigmas[:4].tolist()  # decreasing
    batches, hook = _batches(pipe)
    base = pipe.recipe.replace(steps=4)
    run = lambda **kw: pipe(image, audio, priors, base.replace(**kw), generator=torch.Generator().manual_seed(0)).frames
    full = run()
    batches.clear()
    middle = run(guidance_interval=(levels[2], levels[1]))
    assert batches == [1, 3, 3, 1]
    batches.clear()
    everywhere = run(guidance_interval=(0.0, float("inf")))
    assert batches == [3, 3, 3, 3]
    batches.clear()
    pipe.set_recipe(base.replace(guidance_interval=(levels[3], levels[3])))  # the model's recipe: the last step only
    recipe = pipe(image, audio, priors, generator=torch.Generator().manual_seed(0)).frames
    assert batches == [1, 1, 1, 3]
    batches.clear()
    # Both limits apply: the first half of the steps, and the levels in the interval.
    run(guidance_interval=(levels[2], levels[0]), guidance_fraction=0.5)
    hook.remove()
    assert batches == [3, 3, 1, 1]
    np.testing.assert_array_equal(everywhere, full)
    assert not np.array_equal(middle, full) and not np.array_equal(recipe, full)


def test_window_overlap_comes_from_the_recipe():
    pipe, image, audio, priors = _tiny_one_window()
    priors = priors[:1].expand(11, -1)  # several windows of 4 frames
    batches, hook = _batches(pipe)
    run = lambda recipe: pipe(image, audio, priors, recipe, generator=torch.Generator().manual_seed(0)).frames
    quarter = run(pipe.recipe.replace(steps=2))  # overlap None: a quarter window (1 frame)
    quarter_calls = len(batches)
    batches.clear()
    none = run(pipe.recipe.replace(steps=2, overlap=0))
    none_calls = len(batches)
    hook.remove()
    assert none_calls < quarter_calls  # shared frames are denoised twice
    assert not np.array_equal(none, quarter)


def test_identity_scale_one_skips_the_unconditional_branch_and_changes_nothing_else():
    pipe, x, cond, batches, hook = _one_denoising_call(seed=1)
    sigma, index = torch.tensor(2.0), torch.arange(4)[None]
    two = pipe._window_x0(x, sigma, index, cond, SamplingRecipe(identity_scale=1.0, emotion_scale=6.0), guided=True)
    assert batches == [2]
    # The three-branch formula at s_id = 1 + a hair: the skipped branch's weight is that hair.
    near = pipe._window_x0(x, sigma, index, cond, SamplingRecipe(identity_scale=1.0 + 1e-6, emotion_scale=6.0), guided=True)
    assert batches == [2, 3]
    hook.remove()
    torch.testing.assert_close(two, near, atol=1e-4, rtol=0)
    far = pipe._window_x0(x, sigma, index, cond, SamplingRecipe(identity_scale=3.0, emotion_scale=6.0), guided=True)
    assert (far - two).abs().max() > 1e-2


def test_guidance_scales_come_from_the_model_recipe():
    pipe, image, audio, priors = _tiny_one_window()
    run = lambda recipe=None: pipe(image, audio, priors, recipe, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames
    assert (pipe.recipe.identity_scale, pipe.recipe.emotion_scale) == (3.0, 6.0)  # the release's
    release = run()
    assert np.array_equal(release, run(SamplingRecipe(identity_scale=3.0, emotion_scale=6.0)))
    pipe.set_recipe(pipe.recipe.replace(identity_scale=1.0, emotion_scale=4.0))
    assert np.array_equal(run(), run(SamplingRecipe(identity_scale=1.0, emotion_scale=4.0)))
    assert not np.array_equal(run(), release)


def test_a_separate_audio_scale_adds_the_image_and_audio_branch():
    pipe, x, cond, calls, hook = _one_denoising_call(seed=2)
    sigma, index = torch.tensor(2.0), torch.arange(4)[None]

    def x0(**kw):
        return pipe._window_x0(x, sigma, index, cond, SamplingRecipe(**kw), guided=True)

    joint = x0(identity_scale=1.0, emotion_scale=4.0)
    assert torch.equal(joint, x0(identity_scale=1.0, emotion_scale=4.0, audio_scale=4.0))  # the same scale: the same two branches
    assert calls == [2, 2]
    split = x0(identity_scale=1.0, emotion_scale=4.0, audio_scale=2.0)
    assert calls[-1] == 3
    # The split estimate moves linearly in s_a: the step from 2 to 3 is the image + audio term.
    split3 = x0(identity_scale=1.0, emotion_scale=4.0, audio_scale=3.0)
    torch.testing.assert_close(split + 2 * (split3 - split), joint, atol=1e-4, rtol=0)  # s_a = 4 is the joint form again
    with_none = x0(identity_scale=2.0, emotion_scale=4.0, audio_scale=2.0)
    assert calls[-1] == 4
    hook.remove()
    assert (split - joint).abs().max() > 1e-3 and (with_none - split).abs().max() > 1e-3


def test_guided_estimate_with_an_audio_scale():
    from dicetalk.edm import guided

    image, audio, full, none = (torch.full((2,), v) for v in (1.0, 2.0, 4.0, 0.5))
    assert torch.equal(guided(image, full, 3.0, audio=audio, audio_scale=3.0), image + 3.0 * (full - image))
    torch.testing.assert_close(guided(image, full, 3.0, audio=audio, audio_scale=1.5), torch.full((2,), 1 + 1.5 * 1 + 3.0 * 2))
    torch.testing.assert_close(guided(image, full, 3.0, 2.0, none, audio=audio, audio_scale=1.5), torch.full((2,), 8.5 + 0.5))
    with pytest.raises(ValueError, match="image \\+ audio"):
        guided(image, full, 3.0, audio_scale=1.5)
