"""The sampling recipe: one definition, parsed, validated, stored with a model, reaching every caller."""

import json

import numpy as np
import pytest
import torch

from dicetalk.errors import InputError
from dicetalk.pipeline.recipe import FIELD_NAMES, RELEASE, SamplingRecipe, parse_recipe
from dicetalk.pipeline.windows import plan_windows

EVERY_FIELD = (
    "steps=2,sampler=heun,identity_scale=1.5,emotion_scale=2.5,audio_scale=3,guidance_fraction=0.5,guidance_interval=0.01:100,"
    "windows=circular,overlap=1,shift=2,noise_aug=0.01,fps=20,interpolation=1,time_ids=19:100:0.01,init_from_reference=true,size=48,decode_chunk=3"
)
EVERY_FIELD_RECIPE = SamplingRecipe(
    steps=2, sampler="heun", identity_scale=1.5, emotion_scale=2.5, audio_scale=3.0, guidance_fraction=0.5, guidance_interval=(0.01, 100.0),
    windows="circular", overlap=1, shift=2, noise_aug=0.01, fps=20.0, interpolation=1, time_ids=(19.0, 100.0, 0.01),
    init_from_reference=True, size=48, decode_chunk=3,
)  # fmt: skip


def test_a_spec_names_a_recipe_and_changes_fields_on_the_base():
    base = SamplingRecipe(steps=8, identity_scale=1.0)
    assert parse_recipe(None, base) == base
    assert parse_recipe("steps=12", base) == base.replace(steps=12)
    assert parse_recipe("release", base) == RELEASE
    assert parse_recipe("release,steps=10,audio-scale=2", base) == RELEASE.replace(steps=10, audio_scale=2.0)
    assert parse_recipe("model,guidance_interval=0.05:5", base).guidance_interval == (0.05, 5.0)
    assert parse_recipe("audio_scale=none", base.replace(audio_scale=3.0)).audio_scale is None
    assert parse_recipe(EVERY_FIELD, base) == EVERY_FIELD_RECIPE
    # Every field but interpolation differs from its default (2 needs a model with a frame interpolator: tested there).
    assert {f for f in FIELD_NAMES if getattr(EVERY_FIELD_RECIPE, f) != getattr(SamplingRecipe(), f)} == set(FIELD_NAMES) - {"interpolation"}


@pytest.mark.parametrize(
    "spec, message",
    [
        ("stepz=3", "unknown field 'stepz'"),
        ("steps=0", "steps must be 1..1000"),
        ("steps=two", "not a valid int"),
        ("sampler=ddim", "unknown sampler 'ddim'"),
        ("identity_scale=nan", "identity scale must be in"),
        ("guidance_interval=5:1", "lo <= hi"),
        ("windows=spiral", "windows must be one of"),
        ("interpolation=3", "interpolation must be 1 or 2"),
        ("init_from_reference=maybe", "not a valid bool"),
        ("fast", "neither a named recipe"),
        ("time_ids=1:2", "three finite numbers"),
    ],
)
def test_a_bad_spec_is_one_clear_error(spec, message):
    with pytest.raises(InputError, match=message):
        parse_recipe(spec, SamplingRecipe())


def test_the_release_recipe_is_the_authors_yaml():
    assert (RELEASE.steps, RELEASE.sampler, RELEASE.identity_scale, RELEASE.emotion_scale) == (25, "euler", 3.0, 6.0)
    assert RELEASE.unet_time_ids() == (12.5, 8.0, 16.0)  # fps, motion_bucket_id, motion_bucket_id_exp
    assert (RELEASE.generated_fps, RELEASE.noise_aug, RELEASE.size, RELEASE.decode_chunk) == (12.5, 0.0, 512, 10)
    assert RELEASE.window_layout(25) == (0, 7)
    assert RELEASE.generated_frames(16000 * 4) == 50 and RELEASE.output_frames(50) == 99  # (samples // 640) // 2, then 2N - 1
    assert SamplingRecipe().unet_time_ids() == (24.0, 127.0, 0.0)  # SVD's (fps - 1, motion bucket, noise aug), as we train


def test_the_release_windows_are_circular_over_the_video_and_one_padding_window():
    window, shift = 25, RELEASE.window_layout(25)[1]
    starts = [plan_windows("circular", 100 + window, window, 0, step * shift).starts for step in range(3)]
    assert starts == [[0, 25, 50, 75, 100], [-7, 18, 43, 68, 93], [-14, 11, 36, 61, 86]]
    plan = plan_windows("circular", 125, 25, 0, 7)
    assert plan.index[0].tolist() == [118, 119, 120, 121, 122, 123, 124, *range(18)]  # wraps around modulo 125
    counts = torch.zeros(125).index_add_(0, plan.index.flatten(), torch.ones(plan.index.numel()))
    assert torch.equal(counts, torch.ones(125)) and torch.equal(plan.weights, torch.ones(25))  # every frame once, uniform


def test_a_recipe_is_saved_with_the_model_and_names_its_scheduler(tmp_path):
    from dicetalk.pipeline.loading import build_random_pipeline, load_pipeline

    pipe = build_random_pipeline("tiny")
    pipe.set_recipe(SamplingRecipe(steps=6, sampler="euler-churn", overlap=0, guidance_interval=(0.05, 5.0)))
    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / "model_index.json").read_text())
    assert index["scheduler"] == ["dicetalk.pipeline.schedulers", "EDMEulerChurnScheduler"]
    assert index["recipe"]["steps"] == 6
    loaded = load_pipeline(tmp_path / "model")
    assert loaded.recipe == pipe.recipe and type(loaded.scheduler).__name__ == "EDMEulerChurnScheduler"


def test_a_folder_from_before_recipes_keeps_its_sampling(tmp_path):
    from dicetalk.pipeline.loading import build_random_pipeline, load_pipeline

    build_random_pipeline("tiny").save_pretrained(tmp_path / "old")
    index_path = tmp_path / "old" / "model_index.json"
    index = json.loads(index_path.read_text())
    del index["recipe"]
    index.update(default_steps=7, default_sampler="dpmpp-2m", default_identity_scale=1.0, default_emotion_scale=4.5, default_overlap=0,
                 default_guidance_interval=[0.2, 5.0], default_guidance_fraction=1.0, default_audio_scale=None)  # fmt: skip
    index_path.write_text(json.dumps(index))
    recipe = load_pipeline(tmp_path / "old").recipe
    assert recipe == SamplingRecipe(steps=7, sampler="dpmpp-2m", identity_scale=1.0, emotion_scale=4.5, overlap=0, guidance_interval=(0.2, 5.0), noise_aug=0.02)


def test_every_recipe_field_reaches_generate(portrait_png, speech_wav, tiny_weights, tmp_path, monkeypatch, capsys):
    from dicetalk.cli.main import main
    from dicetalk.pipeline import DiceTalkPipeline
    from dicetalk.utils.media import probe, read_video

    seen = []
    original = DiceTalkPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["recipe"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DiceTalkPipeline, "__call__", spy)
    out = tmp_path / "out.mp4"
    code = main(["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--weights", str(tiny_weights), "--recipe", EVERY_FIELD, "--no-crop"])
    assert code == 0, capsys.readouterr().err
    assert seen == [EVERY_FIELD_RECIPE]
    info = probe(out)
    assert abs(info.fps - 20.0) < 1e-6 and read_video(out, max_frames=1).frames.shape[1:3] == (48, 48)  # the recipe's fps and size
    # Shorthand options change the same recipe.
    seen.clear()
    code = main(["generate", str(portrait_png), str(speech_wav), "-o", str(out), "--weights", str(tiny_weights), "--recipe", "steps=3", "--steps", "1",
                 "--identity-scale", "2", "--no-crop"])  # fmt: skip
    assert code == 0 and seen[0].steps == 1 and seen[0].identity_scale == 2.0


def test_output_types_follow_diffusers():
    from dicetalk.pipeline.loading import build_random_pipeline

    pipe = build_random_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    image = np.full((32, 32, 3), 128, np.uint8)
    audio = np.random.default_rng(0).standard_normal(3200).astype(np.float32)
    priors = pipe.priors.prior("happy")[None].expand(5, -1)
    run = lambda **kw: pipe(image, audio, priors, num_inference_steps=1, generator=torch.Generator().manual_seed(0), **kw)
    frames = run().frames
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    pil = run(output_type="pil").frames
    assert len(pil) == 5 and np.array_equal(np.asarray(pil[2]), frames[2])
    pt = run(output_type="pt").frames
    assert pt.shape == (5, 3, 32, 32) and float(pt.min()) >= 0 and float(pt.max()) <= 1
    np.testing.assert_allclose((pt.permute(0, 2, 3, 1).numpy() * 255).round(), frames, atol=1)
    assert run(output_type="latent").frames.shape == (5, 4, 8, 8)
    (tuple_frames,) = run(return_dict=False)
    assert np.array_equal(tuple_frames, frames)
    with pytest.raises(InputError, match="output_type"):
        run(output_type="gif")


def test_callback_on_step_end_sees_and_may_replace_the_latents():
    from dicetalk.pipeline.loading import build_random_pipeline

    pipe = build_random_pipeline("tiny")
    pipe.set_progress_bar_config(disable=True)
    image = np.full((32, 32, 3), 128, np.uint8)
    audio = np.zeros(3200, np.float32)
    priors = pipe.priors.prior("happy")[None].expand(4, -1)
    steps = []

    def callback(p, i, t, kwargs):
        steps.append((i, kwargs["latents"].shape, kwargs["denoised"].shape))
        return {"latents": torch.zeros_like(kwargs["latents"])} if i == 2 else None

    latents = pipe(image, audio, priors, num_inference_steps=3, output_type="latent", callback_on_step_end=callback,
                   callback_on_step_end_tensor_inputs=["latents", "denoised"]).frames  # fmt: skip
    assert [s[0] for s in steps] == [0, 1, 2] and steps[0][1] == (4, 4, 8, 8)
    assert torch.equal(latents, torch.zeros_like(latents))  # the last step's replacement is the result
