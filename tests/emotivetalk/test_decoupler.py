"""EDI's reference decoupler: the module, its training pairs and command, its place in the pipeline."""

import json
import shutil

import numpy as np
import pytest
import torch

from dicetalk.cli.main import main
from dicetalk.models.reference_decoupler import ReferenceDecoupler


def test_the_decoupler_starts_as_the_identity_and_learns_a_latent_edit():
    torch.manual_seed(0)
    dec = ReferenceDecoupler(latent_channels=4, channels=16, blocks=2)
    for shape in ((2, 4, 16, 16), (1, 4, 9, 13)):  # odd latent sizes too
        x = torch.randn(shape)
        assert torch.equal(dec(x), x)
    # An expression is a local, content-dependent change: brighten where channel 0 is positive.
    x = torch.randn(64, 4, 8, 8)
    y = x + 0.5 * (x[:, :1] > 0).float()
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(dec(x), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_neutral_pairs_re_render_the_same_pose_at_the_neutral_expression(tiny_world, tiny_weights):
    """The targets are the world's own render of the person at rest: for a neutral frame with the mouth
    closed they equal the input up to compression; for a surprised frame they differ."""
    from safetensors.numpy import load_file

    from dicetalk.data.index import scan
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.synthetic.expressions import emotion_expression
    from dicetalk.synthetic.face import FaceRenderer
    from dicetalk.synthetic.identity import sample_identity
    from dicetalk.training.decoupler import _pose, _world_people, neutral_pairs
    from dicetalk.utils.media import read_video

    seed, people, size = _world_people(tiny_world)
    record = next(r for r in scan(tiny_world, datasets=("mead",)) if r.emotion == "surprised")
    person = sample_identity(seed, people[record.identity], record.identity)
    neutral = FaceRenderer(person.appearance, size).render(emotion_expression("neutral", 1, person.habits), _pose(record)[0])[0]
    frame = read_video(record.video, max_frames=1, with_audio=False).frames[0]
    expression = load_file(str(record.video.with_suffix(".safetensors")))["expression"][0]
    again = FaceRenderer(person.appearance, size).render(expression, _pose(record)[0])[0]
    same, other = (np.abs(x.astype(float) - frame).mean() for x in (again, neutral))
    assert same < 5.0  # the re-render reproduces the clip's frame (up to the video's compression) ...
    assert other > 1.5 * same  # ... and the neutral one is another face (64 px: 3.9 against 7.6)

    pipe = load_pipeline(tiny_weights)
    x, y = neutral_pairs(tiny_world, "train", pipe.vae.eval(), pipe.native_size, frames_per_clip=2, progress=False)
    assert x.shape == y.shape and x.shape[1] == pipe.vae.config.latent_channels and len(x) >= 2
    assert not torch.equal(x, y)

    # --rest-posture: the target's pose is the clip's without the emotion's posture (surprise lifts the head)
    from dicetalk.synthetic.motion import emotion_posture

    lifted = emotion_posture("surprised", record.level)
    assert np.abs(lifted).max() > 0.01 and not emotion_posture("neutral", 1).any()
    upright = FaceRenderer(person.appearance, size).render(emotion_expression("neutral", 1, person.habits), _pose(record)[0] - lifted)[0]
    assert np.abs(upright.astype(float) - neutral).mean() > 0.5
    xp, yp = neutral_pairs(tiny_world, "train", pipe.vae.eval(), pipe.native_size, frames_per_clip=2, progress=False, rest_posture=True)
    assert torch.equal(xp, x) and not torch.equal(yp, y)


def test_extra_people_are_outside_the_world_and_pair_an_expression_with_the_rest(tiny_world, tiny_weights):
    """The extra people are new faces (no identity of the world's), drawn from the seed alone; each
    pair is one face at an expression and the same face and pose at rest."""
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.synthetic.expressions import emotion_expression
    from dicetalk.synthetic.face import FaceRenderer
    from dicetalk.synthetic.identity import sample_identity
    from dicetalk.training.decoupler import FRESH_INDEX, _world_people, fresh_frame, fresh_pairs

    seed, people, size = _world_people(tiny_world)
    world = json.loads((tiny_world / "world.json").read_text())["identities"]
    extra = [sample_identity(seed, FRESH_INDEX + k) for k in range(3)]
    assert all(p.appearance.to_json() != w["appearance"] for p in extra for w in world.values())

    rng = np.random.default_rng(0)
    drawn = [fresh_frame(extra[0].habits, rng) for _ in range(40)]
    rest = emotion_expression("neutral", 1, extra[0].habits)
    assert all(e.shape == (12,) and p.shape == (3,) and q.shape == (3,) for e, p, q in drawn)
    assert np.mean([np.abs(e - rest).max() > 0.05 for e, _, _ in drawn]) > 0.5  # mostly another face than the rest
    assert np.mean([np.abs(q).max() > 0.01 for _, _, q in drawn]) > 0.5  # most emotions tilt the head
    renderer = FaceRenderer(extra[0].appearance, size)
    e, pose, _ = drawn[0]
    face, at_rest = renderer.render(e, pose)[0], renderer.render(rest, pose)[0]
    assert np.abs(face.astype(float) - at_rest).mean() > 0.5

    vae = load_pipeline(tiny_weights).vae.eval()
    x, y = fresh_pairs(tiny_world, vae, 32, people=3, frames=2, seed=5, progress=False)
    assert x.shape == y.shape and len(x) == 6 and not torch.equal(x, y)
    x2, y2 = fresh_pairs(tiny_world, vae, 32, people=3, frames=2, seed=5, progress=False)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # the seed decides every draw
    xp, yp = fresh_pairs(tiny_world, vae, 32, people=3, frames=2, seed=5, progress=False, rest_posture=True)
    assert torch.equal(xp, x) and not torch.equal(yp, y)  # same portraits; the targets lose the posture


def test_train_decoupler_fits_resumes_and_exports(tiny_world, tiny_weights, tmp_path, capsys):
    out = tmp_path / "dec"
    args = ["train-decoupler", str(tiny_world), "--out", str(out), "--weights", str(tiny_weights), "--frames-per-clip", "2", "--channels", "16", "--save-every", "20"]
    assert main([*args, "--steps", "20"]) == 0
    assert (out / "pairs_train.safetensors").is_file() and (out / "run" / "options.json").is_file()
    assert main([*args, "--steps", "20"]) == 2  # a run is there: --resume or another folder
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--steps", "200", "--resume"]) == 0  # continues from step 20
    assert (out / "run" / "checkpoints" / "latest").read_text().strip() == "step_0000200"
    scores = json.loads((out / "val.json").read_text())
    # It learns (the tiny model's random autoencoder gives val people little to generalise from).
    assert scores["val_pairs"] > 0 and scores["train_mse"] < 0.8 * scores["train_mse_unchanged"]
    assert ReferenceDecoupler.from_pretrained(out / "decoupler").config.channels == 16
    more = tmp_path / "more"
    assert main(["train-decoupler", str(tiny_world), "--out", str(more), "--weights", str(tiny_weights), "--frames-per-clip", "2", "--channels", "16", "--steps", "5", "--fresh-people", "3", "--fresh-frames", "2"]) == 0
    assert json.loads((more / "val.json").read_text())["train_pairs"] == scores["train_pairs"] + 6  # the extra people's pairs join the train pairs
    assert (more / "pairs_fresh.safetensors").is_file()
    assert main(["train-decoupler", str(tiny_world), "--out", str(tmp_path / "bad"), "--weights", str(tiny_weights), "--channels", "12"]) == 2
    capsys.readouterr()
    not_a_world = tmp_path / "not_a_world"
    not_a_world.mkdir()
    assert main(["train-decoupler", str(not_a_world), "--out", str(tmp_path / "none"), "--weights", str(tiny_weights)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "world.json" in err and not (tmp_path / "none").exists()  # one line, no run folder left


@pytest.fixture(scope="module")
def decoupled_weights(emotive_weights, tmp_path_factory):
    """The tiny EmotiveTalk folder with a live (non-zero) reference decoupler."""
    from dicetalk.pipeline.emotivetalk import load_parts, save_parts

    folder = tmp_path_factory.mktemp("decoupled") / "tiny"
    shutil.copytree(emotive_weights, folder)
    parts, settings = load_parts(folder)
    torch.manual_seed(1)
    dec = ReferenceDecoupler(latent_channels=4, channels=16, blocks=2)
    torch.nn.init.normal_(dec.out[-1].weight, std=0.3)
    save_parts(folder, **parts, decoupler=dec, settings=settings, dtype=torch.float32)
    return folder


def _tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_the_pipeline_decouples_the_reference_latent_and_reads_the_decoupled_portrait(decoupled_weights, portrait_png):
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.pipeline.generate import portrait_for

    pipe = load_emotivetalk_pipeline(decoupled_weights)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.decoupler is not None and pipe.decoupling
    seen = []
    pipe.decoupler.register_forward_hook(lambda _m, args, out: seen.append((args[0].clone(), out.clone())))
    image = portrait_for(portrait_png, True, None).image
    recipe = pipe.recipe.replace(steps=2)
    run = lambda: pipe(image, _tone(), "happy", recipe=recipe, generator=torch.Generator().manual_seed(0), output_type="latent")  # noqa: E731
    out = run()
    (given, decoupled), = seen
    assert not torch.equal(given, decoupled)
    assert not torch.allclose(out.portrait_expression, pipe.read_expression(np.asarray(image)[None])[0].cpu())  # the decoupled portrait's reading
    again = run()
    assert torch.equal(out.frames, again.frames)  # the same seed, the same video
    pipe.register_to_config(emotivetalk={**pipe.config.emotivetalk, "decouple": False})
    plain = run()
    assert len(seen) == 2  # not called without decoupling
    assert not torch.equal(plain.frames, out.frames)
    torch.testing.assert_close(plain.trajectory, out.trajectory)  # only the reference changed


def test_decoupled_carriers_give_the_refiner_and_clip_the_decoupled_portrait(decoupled_weights, portrait_png):
    """``decouple_pixels`` gives the refiner, ``decouple_embedding`` the CLIP encoder, the decoded
    decoupled portrait; ``transfer_pixels`` gives the refiner the photo plus the decoupler's change;
    each one alone touches only its own carrier; without them, the photo's."""
    from dicetalk.pipeline.emotivetalk import load_emotivetalk_pipeline
    from dicetalk.pipeline.generate import portrait_for
    from dicetalk.utils.pixels import clip_input, resize, to_pixels, to_uint8

    pipe = load_emotivetalk_pipeline(decoupled_weights)
    pipe.set_progress_bar_config(disable=True)
    image = np.asarray(portrait_for(portrait_png, True, None).image)
    recipe = pipe.recipe.replace(steps=2)
    size = (pipe.native_size, pipe.native_size)
    conds = {}
    for flag in (None, "decouple_pixels", "decouple_embedding", "transfer_pixels"):
        flags = {name: name == flag for name in ("decouple_pixels", "decouple_embedding", "transfer_pixels")}
        pipe.register_to_config(emotivetalk={**pipe.config.emotivetalk, **flags})
        pipe._call_state = {"portrait": None}
        conds[flag] = pipe.prepare_conditions(
            image, _tone(), torch.zeros(8, pipe.emotion_bank.config.prior_dim), recipe, None, size, 0, torch.Generator().manual_seed(0)
        )
    pipe._call_state = None
    plain, refiner, clip, transfer = conds[None], conds["decouple_pixels"], conds["decouple_embedding"], conds["transfer_pixels"]
    photo = to_pixels(resize(image, *size))
    torch.testing.assert_close(plain.pixels.cpu(), photo)
    decoded = to_uint8(pipe.vae.decode(refiner.image_latents.to(pipe.vae.dtype), num_frames=1).sample).cpu().numpy()
    torch.testing.assert_close(refiner.pixels.cpu(), to_pixels(decoded))
    assert not torch.allclose(refiner.pixels.cpu(), photo)
    torch.testing.assert_close(refiner.image_embeds, plain.image_embeds)  # pixels alone: CLIP keeps the photo
    embeds = pipe.image_encoder(clip_input(decoded[0], pipe.image_encoder.config.image_size).to(pipe.device, pipe.image_encoder.dtype)).image_embeds
    torch.testing.assert_close(clip.image_embeds[:, 0].float(), embeds.float())
    assert not torch.allclose(clip.image_embeds, plain.image_embeds)
    torch.testing.assert_close(clip.pixels.cpu(), photo)  # embedding alone: the refiner keeps the photo
    # transfer: the photo plus the decoupler's change as the autoencoder decodes it, CLIP unchanged
    given = pipe.encode_image(photo.to(pipe.device), recipe, torch.Generator().manual_seed(0))[0]
    assert not torch.allclose(given, plain.image_latents)
    change = pipe.vae.decode(plain.image_latents.to(pipe.vae.dtype), num_frames=1).sample - pipe.vae.decode(given.to(pipe.vae.dtype), num_frames=1).sample
    torch.testing.assert_close(transfer.pixels.cpu(), (photo + change.float().cpu()).clamp(-1, 1))
    assert (transfer.pixels.cpu() - photo).abs().max() > 1e-3
    torch.testing.assert_close(transfer.image_embeds, plain.image_embeds)
    for cond in (refiner, clip, transfer):
        torch.testing.assert_close(cond.image_latents, plain.image_latents)  # the latent is decoupled either way


def test_export_takes_the_decoupler_and_a_mismatched_one_is_one_line(emotive_weights, tmp_path, capsys):
    from dicetalk.errors import WeightsError
    from dicetalk.pipeline.emotivetalk import check_parts, load_parts
    from dicetalk.pipeline.loading import load_pipeline

    parts, _ = load_parts(emotive_weights)
    for name, module in parts.items():
        module.save_pretrained(tmp_path / name)
    ReferenceDecoupler(latent_channels=4, channels=16, blocks=2).save_pretrained(tmp_path / "decoupler")
    weights = tmp_path / "weights"
    shutil.copytree(emotive_weights, weights)
    args = ["export-emotivetalk", "--into", str(weights), "--vaid", str(tmp_path / "vaid"), "--dicte", str(tmp_path / "dicte"), "--edi", str(tmp_path / "edi")]
    assert main([*args, "--decoupler", str(tmp_path / "decoupler")]) == 0
    loaded, _ = load_parts(weights)
    assert isinstance(loaded["decoupler"], ReferenceDecoupler)
    with pytest.raises(WeightsError, match="decoupler maps 8-channel"):
        check_parts(load_pipeline(weights), **parts, decoupler=ReferenceDecoupler(latent_channels=8, channels=16, blocks=2))
    assert main([*args, "--decoupler", str(tmp_path / "nothing")]) == 2
    assert "no trained module" in capsys.readouterr().err
