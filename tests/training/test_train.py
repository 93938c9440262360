"""Training loops on the tiny world: every stage runs, resumes exactly, checkpoints atomically."""

import json

import numpy as np
import pytest
import torch

from dicetalk.pipeline.recipe import SamplingRecipe

from dicetalk.cli.main import main
from dicetalk.data.cache import build_frame_cache
from dicetalk.data.index import scan
from dicetalk.training.assemble import load_backbone, load_embedder, prepare_features
from dicetalk.training.backbone import BackboneOptions, pretrain_backbone
from dicetalk.training.common import Run
from dicetalk.training.diffusion import DiffusionOptions, train_diffusion
from dicetalk.training.embedder import EmbedderOptions, train_embedder


@pytest.fixture(scope="module")
def stages(tiny_world, tmp_path_factory):
    """Backbone and embedder of the tiny configuration, trained for a few steps."""
    root = tmp_path_factory.mktemp("stages")
    cache = build_frame_cache(scan(tiny_world, splits=("train",)), 32, root / "cache", progress=False)
    steps = {"vae": 3, "audio_encoder": 2, "image_encoder": 2, "expression_encoder": 2}
    pretrain_backbone(BackboneOptions(str(tiny_world), str(root / "backbone"), config="tiny", steps=steps), cache)
    backbone = load_backbone(root / "backbone")
    from dicetalk.data.features import audio_hidden_states
    from dicetalk.models.audio_encoder import whisper_feature_extractor

    hidden = audio_hidden_states(cache, backbone["audio_encoder"], whisper_feature_extractor(backbone["audio_encoder"].config), progress=False)
    train_embedder(EmbedderOptions(str(tiny_world), str(root / "embedder"), str(root / "backbone"), config="tiny", steps=3, groups=4, window=16), cache, hidden)
    embedder, priors = load_embedder(root / "embedder")
    features = prepare_features(cache, backbone, embedder, progress=False)
    return dict(root=root, cache=cache, backbone=backbone, features=features, priors=priors, world=tiny_world)


def _killable(monkeypatch, module, name, kill_at):
    """Replace the loss factory ``module.name`` by one whose loss raises KeyboardInterrupt at step ``kill_at``."""
    real = getattr(module, name)

    def factory(*args, **kwargs):
        inner = real(*args, **kwargs)

        def loss_fn(step, *rest):
            if step == kill_at:
                raise KeyboardInterrupt
            return inner(step, *rest)

        return loss_fn

    monkeypatch.setattr(module, name, factory)


def _opts(stages, out, steps, **kw):
    return DiffusionOptions(
        dataset=str(stages["world"]), out=str(out), backbone=str(stages["root"] / "backbone"), embedder=str(stages["root"] / "embedder"),
        config="tiny", steps=steps, batch=2, frames=4, save_every=2, log_every=1, warmup=2, **kw,
    )


def test_stages_write_their_parts(stages):
    root = stages["root"]
    for part in ("vae", "audio_encoder", "image_encoder", "expression_encoder"):
        assert (root / "backbone" / part / "config.json").is_file()
    assert set(stages["priors"].emotions) == {"angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"}
    assert stages["features"].latents.shape[0] == len(stages["cache"].frames)
    assert stages["features"].prior_mu.shape == (len(stages["cache"].records), 16)
    vae = json.loads((root / "backbone" / "vae" / "config.json").read_text())
    assert vae["scaling_factor"] != 1.0  # set from the trained latents' spread


def test_resume_reproduces_the_uninterrupted_loss_curve(stages, tmp_path):
    scale = stages["backbone"]["vae"].config.scaling_factor
    straight = _opts(stages, tmp_path / "straight", 4)
    parts = train_diffusion(straight, stages["cache"], stages["features"], scale)
    full_history = json.loads(json.dumps(Run(tmp_path / "straight" / "run", straight, resume=True).options))  # options saved
    assert full_history["steps"] == 4

    # The same run killed after 2 steps, then resumed with the target of 4 steps.
    first = _opts(stages, tmp_path / "resumed", 2)
    train_diffusion(first, stages["cache"], stages["features"], scale)
    with pytest.raises(Exception, match="--resume"):
        train_diffusion(_opts(stages, tmp_path / "resumed", 4), stages["cache"], stages["features"], scale)
    resumed = train_diffusion(_opts(stages, tmp_path / "resumed", 4), stages["cache"], stages["features"], scale, resume=True)
    for name in parts:
        for (k, a), (_, b) in zip(parts[name].state_dict().items(), resumed[name].state_dict().items()):
            assert torch.equal(a, b), f"{name}.{k}"


def test_spawned_workers_train_the_same_weights(stages, tmp_path):
    from dataclasses import replace

    scale = stages["backbone"]["vae"].config.scaling_factor
    opts = _opts(stages, tmp_path / "inline", 2)
    inline = train_diffusion(opts, stages["cache"], stages["features"], scale)
    spawned = train_diffusion(replace(opts, out=str(tmp_path / "spawned"), workers=2), stages["cache"], stages["features"], scale)
    for name in inline:
        for (k, a), (_, b) in zip(inline[name].state_dict().items(), spawned[name].state_dict().items()):
            assert torch.equal(a, b), f"{name}.{k}"


def test_resume_takes_new_bookkeeping_but_refuses_new_training_options(stages, tmp_path):
    from dataclasses import replace

    from dicetalk.errors import InputError

    opts = _opts(stages, tmp_path / "r", 4)
    Run(tmp_path / "r" / "run", opts, resume=False)
    Run(tmp_path / "r" / "run", replace(opts, steps=9, save_every=7, log_every=3, workers=2), resume=True)
    with pytest.raises(InputError, match="different options: lr"):
        Run(tmp_path / "r" / "run", replace(opts, lr=1.0), resume=True)


def test_loss_curves_match_step_by_step(stages, tmp_path, monkeypatch):
    import dicetalk.training.common as common

    histories = []
    real_fit = common.fit

    def spy(run, *args, **kwargs):
        out = real_fit(run, *args, **kwargs)
        histories.append(list(run.history))
        return out

    monkeypatch.setattr("dicetalk.training.diffusion.fit", spy)
    scale = stages["backbone"]["vae"].config.scaling_factor
    train_diffusion(_opts(stages, tmp_path / "a", 4), stages["cache"], stages["features"], scale)
    train_diffusion(_opts(stages, tmp_path / "b", 2), stages["cache"], stages["features"], scale)
    train_diffusion(_opts(stages, tmp_path / "b", 4), stages["cache"], stages["features"], scale, resume=True)
    assert [s for s, _ in histories[0]] == [0, 1, 2, 3]
    assert histories[0] == histories[1] + histories[2]


def test_a_failed_checkpoint_leaves_nothing_half_written(stages, tmp_path):
    run = Run(tmp_path / "run", {"steps": 1}, resume=False)

    class Broken(torch.nn.Linear):
        def save_pretrained(self, folder, **kw):
            (folder / "partial.bin").write_bytes(b"x")
            raise OSError("disk full")

    with pytest.raises(OSError):
        run.save(1, {"m": Broken(2, 2)}, None)
    assert run.latest() is None
    assert not list((tmp_path / "run" / "checkpoints").glob("step_*")) if (tmp_path / "run" / "checkpoints").exists() else True


def test_ablation_options_change_the_model(stages, tmp_path):
    from dicetalk.training.diffusion import build_trainable

    parts = build_trainable(_opts(stages, tmp_path / "x", 1, emotion_bank=False, unet_trainable="cross-attention"))
    assert parts["emotion_bank"].config.use_bank is False
    trainable = [n for n, p in parts["unet"].named_parameters() if p.requires_grad]
    assert trainable and all(".processor." in n for n in trainable)


def test_cli_dry_run_and_training_writes_a_loadable_model(stages, tmp_path, capsys):
    root, world = stages["root"], stages["world"]
    args = ["train", str(world), "--backbone", str(root / "backbone"), "--embedder", str(root / "embedder"), "--config", "tiny",
            "--out", str(tmp_path / "d"), "--frames", "4", "--cache-dir", str(root / "cache")]
    assert main([*args, "--mix", "1.5", "--dry-run"]) != 0  # a share outside [0, 1]
    assert "--mix" in capsys.readouterr().err and not (tmp_path / "d").exists()
    assert main([*args, "--mix", "0.75", "--warmup", "5", "--dry-run"]) == 0
    options = json.loads((tmp_path / "d" / "run" / "options.json").read_text())
    assert (options["mix"], options["warmup"]) == (0.75, 5) and not (tmp_path / "d" / "run" / "checkpoints").exists()
    assert main([*args, "--steps", "1", "--export-dtype", "float16"]) == 0
    from dicetalk.pipeline.loading import load_pipeline

    pipe = load_pipeline(tmp_path / "d" / "model")
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    out = pipe(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), rng.standard_normal(8000).astype(np.float32) * 0.1,
               pipe.priors.prior("happy")[None].expand(6, -1), num_inference_steps=1)
    assert out.frames.shape == (6, 32, 32, 3)
    recipe = "steps=7,sampler=dpmpp-2m,guidance_fraction=0.5,identity_scale=1,emotion_scale=4.5,guidance_interval=0.2:5,overlap=0"
    assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "exported"), "--recipe", recipe]) == 0
    exported = load_pipeline(tmp_path / "exported")
    assert exported.recipe == SamplingRecipe(steps=7, sampler="dpmpp-2m", guidance_fraction=0.5, identity_scale=1.0, emotion_scale=4.5,
                                             guidance_interval=(0.2, 5.0), overlap=0)  # fmt: skip
    assert type(exported.scheduler).__name__ == "EDMDPMSolver2MScheduler"  # the folder names its sampler
    for bad, message in (("identity_scale=-1", "identity scale"), ("sampler=ddim", "unknown sampler"), ("guidance_interval=5:0.2", "lo <= hi")):
        assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "bad"), "--recipe", bad]) != 0
        assert message in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_init_weights_load_into_the_configured_architecture(tmp_path):
    from dicetalk.configs import get_config
    from dicetalk.errors import InputError
    from dicetalk.models.unet import DiceTalkUNet
    from dicetalk.training.diffusion import build_trainable

    unet_config = get_config("synthetic").unet
    assert unet_config["emotion_time_embedding"]
    torch.manual_seed(1)
    older = DiceTalkUNet(**{**unet_config, "emotion_time_embedding": False})  # trained before the global emotion path
    older.save_pretrained(tmp_path / "init" / "unet")
    unet = build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", init=str(tmp_path / "init")))["unet"]
    assert torch.count_nonzero(unet.emotion_embedding.weight) == 0
    conditions_only = build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", unet_trainable="cross-attention"))["unet"]
    trainable = {n.split(".")[0] for n, p in conditions_only.named_parameters() if p.requires_grad}
    assert "emotion_embedding" in trainable and "conv_in" not in trainable  # the global emotion path is a condition path
    torch.testing.assert_close(unet.conv_in.weight, older.conv_in.weight)
    DiceTalkUNet(**{**unet_config, "block_out_channels": (32, 64, 64)}).save_pretrained(tmp_path / "bad" / "unet")
    with pytest.raises(InputError, match="does not fit the configuration"):
        build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", init=str(tmp_path / "bad")))
    with pytest.raises(InputError, match="no unet/ folder"):  # e.g. a checkpoint pruned since: never a silent fresh start
        build_trainable(DiffusionOptions(dataset="", out="", backbone="", embedder="", init=str(tmp_path / "step_0006000")))


def test_guidance_distillation_trains_one_pass_towards_the_teachers_guided_estimate(stages, tmp_path):
    from dicetalk.data.datasets import WindowDataset
    from dicetalk.training.diffusion import TRAINABLE, _collate, build_trainable, distillation_loss

    scale = stages["backbone"]["vae"].config.scaling_factor
    train_diffusion(_opts(stages, tmp_path / "teacher", 2), stages["cache"], stages["features"], scale)
    teacher = str(tmp_path / "teacher" / "run" / "checkpoints" / "step_0000002")
    opts = _opts(stages, tmp_path / "student", 3, distill_from=teacher, distill_identity_scale=2.0, distill_emotion_scale=6.0, trainable=("unet",))
    student = train_diffusion(opts, stages["cache"], stages["features"], scale)
    frozen = build_trainable(_opts(stages, tmp_path / "unused", 1, init=teacher))
    for name in TRAINABLE:  # only the UNet learns; the conditioning stays the teacher's
        same = all(torch.equal(a, b) for a, b in zip(frozen[name].state_dict().values(), student[name].state_dict().values()))
        assert same == (name != "unet"), name
    assert json.loads((tmp_path / "student" / "run" / "options.json").read_text())["distill_from"] == teacher
    assert main(["export", str(tmp_path / "student"), "--out", str(tmp_path / "distilled")]) == 0
    from dicetalk.pipeline.loading import load_pipeline

    distilled = load_pipeline(tmp_path / "distilled").recipe
    assert (distilled.guidance_fraction, distilled.identity_scale, distilled.emotion_scale) == (0.0, 2.0, 6.0)  # one pass per step

    # The loss pulls the single fully conditioned pass to the guided estimate: fitted on one batch,
    # the distance falls far below where the student (a copy of the teacher) starts.
    dataset = WindowDataset(stages["cache"], 4, seed=1, mix=opts.mix, features=stages["features"], with_pixels=False)
    batch = _collate([dataset[i] for i in range(2)])
    loss_fn = distillation_loss(opts, frozen["unet"], stages["cache"].fps, scale)
    unet = build_trainable(_opts(stages, tmp_path / "unused", 1, init=teacher))["unet"]
    optimizer = torch.optim.Adam(unet.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = loss_fn(0, {**frozen, "unet": unet}, batch, torch.Generator().manual_seed(0))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses
    with pytest.raises(Exception, match="teacher"):  # a student may not start from other weights
        train_diffusion(_opts(stages, tmp_path / "bad", 2, distill_from=teacher, init=str(tmp_path), distill_identity_scale=1.0,
                              distill_emotion_scale=6.0, trainable=("unet",)), stages["cache"], stages["features"], scale)  # fmt: skip


def test_decoder_finetune_keeps_the_encoder_and_resumes_exactly(stages, tmp_path, capsys, monkeypatch):
    import dicetalk.training.backbone as backbone
    from dicetalk.utils.pixels import to_pixels as pixels
    from dicetalk.training.assemble import same_encoder
    from dicetalk.training.backbone import load_vae

    root, cache = stages["root"], stages["cache"]
    original = load_vae(root / "backbone")

    real_fit = backbone.fit
    monkeypatch.setattr(backbone, "fit", lambda *a, **kw: real_fit(*a, **{**kw, "save_every": 10}))

    def finetune(out, kill_at=None):
        opts = BackboneOptions(str(stages["world"]), str(out), config="tiny", parts=("vae",), steps={"vae": 40}, decoder_of=str(root / "backbone" / "vae"), ema_decay=0.9)
        with monkeypatch.context() as m:
            _killable(m, backbone, "decoder_loss", kill_at)
            return pretrain_backbone(opts, cache)["vae"]

    tuned = load_vae(finetune(tmp_path / "straight"))
    assert same_encoder(original, tuned)  # the latent space stays: denoisers trained on it still fit
    assert tuned.config.scaling_factor == original.config.scaling_factor
    assert not torch.equal(tuned.decoder.conv_out.weight, original.decoder.conv_out.weight)
    x = pixels(cache.frames[:8])
    with torch.no_grad():
        z = original.encode(x).latent_dist.mode()
        errors = [float((vae.decode(z, num_frames=8).sample - x).abs().mean()) for vae in (original, tuned)]
    assert errors[1] < 0.9 * errors[0], errors  # the decoder learned to reconstruct

    # Killed at step 25 (checkpoint at 20), then run again: the same weights, averages included, as straight through.
    with pytest.raises(KeyboardInterrupt):
        finetune(tmp_path / "cut", kill_at=25)
    resumed = load_vae(finetune(tmp_path / "cut"))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(tuned.state_dict().values(), resumed.state_dict().values()))

    # Export with the new decoder; a VAE with another encoder is refused.
    train_diffusion(_opts(stages, tmp_path / "d", 1), cache, stages["features"], original.config.scaling_factor)
    assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "m"), "--dtype", "float32", "--vae", str(tmp_path / "straight" / "vae")]) == 0
    from dicetalk.pipeline.loading import load_pipeline

    assert torch.equal(load_pipeline(tmp_path / "m").vae.decoder.conv_out.weight, tuned.decoder.conv_out.weight)
    from dicetalk.configs import get_config
    from dicetalk.models.registry import build_component

    build_component("vae", get_config("tiny")).save_pretrained(tmp_path / "other")
    assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "bad"), "--vae", str(tmp_path / "other")]) != 0
    assert "encoder" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    args = ["pretrain", str(stages["world"]), "--out", str(tmp_path / "x"), "--config", "tiny", "--cache-dir", str(root / "cache")]
    assert main([*args, "--parts", "vae,image_encoder", "--decoder-of", str(root / "backbone")]) != 0
    assert "--decoder-of goes with --parts vae" in capsys.readouterr().err
    assert main([*args, "--parts", "vae", "--decoder-of", str(tmp_path / "missing")]) != 0
    assert "not a VAE folder" in capsys.readouterr().err


def test_refiner_learns_from_the_portrait_resumes_exactly_and_exports(stages, tmp_path, capsys, monkeypatch):
    import dicetalk.training.backbone as backbone
    from dicetalk.utils.pixels import to_pixels as pixels
    from dicetalk.pipeline.loading import load_pipeline
    from dicetalk.training.backbone import load_refiner, load_vae

    root, cache = stages["root"], stages["cache"]
    vae = load_vae(root / "backbone").eval()
    real_fit = backbone.fit
    monkeypatch.setattr(backbone, "fit", lambda *a, **kw: real_fit(*a, **{**kw, "save_every": 10}))

    def train(out, kill_at=None):
        opts = BackboneOptions(
            str(stages["world"]), str(out), config="tiny", parts=("refiner",), steps={"refiner": 40}, lr={"refiner": 3e-3},
            decoder_of=str(root / "backbone" / "vae"), ema_decay=0.9,
        )  # fmt: skip
        with monkeypatch.context() as m:
            _killable(m, backbone, "refiner_loss", kill_at)
            return pretrain_backbone(opts, cache)["refiner"]

    refiner = load_refiner(train(tmp_path / "straight"))
    # A clip's frames as the VAE decodes them, with the clip's first frame as the portrait: the refiner brings them closer to the truth.
    x = pixels(cache.frames[cache.clip_frames(1)][:8])
    with torch.no_grad():
        decoded = vae.decode(vae.encode(x).latent_dist.mode(), num_frames=8).sample.clamp(-1, 1)
        errors = [float((y - x).abs().mean()) for y in (decoded, refiner(decoded, x[:1]))]
    assert errors[1] < 0.9 * errors[0], errors

    # Killed at step 25 (checkpoint at 20), then run again: the same weights, average included, as straight through.
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "cut", kill_at=25)
    resumed = load_refiner(train(tmp_path / "cut"))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(refiner.state_dict().values(), resumed.state_dict().values()))

    # Shipped with a model: loaded with it and used on every frame; a folder that is no refiner is refused.
    scale = vae.config.scaling_factor
    train_diffusion(_opts(stages, tmp_path / "d", 1), cache, stages["features"], scale)
    assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "m"), "--dtype", "float32", "--refiner", str(tmp_path / "straight")]) == 0
    pipe = load_pipeline(tmp_path / "m")
    assert torch.equal(pipe.refiner.conv_out.weight, refiner.conv_out.weight)
    assert main(["export", str(tmp_path / "d"), "--out", str(tmp_path / "bad"), "--refiner", str(tmp_path / "missing")]) != 0
    assert "not a refiner folder" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    args = ["pretrain", str(stages["world"]), "--out", str(tmp_path / "x"), "--config", "tiny", "--cache-dir", str(root / "cache")]
    assert main([*args, "--parts", "refiner"]) != 0
    assert "pass --decoder-of VAE with --parts refiner" in capsys.readouterr().err
    assert main([*args, "--parts", "refiner,vae", "--decoder-of", str(root / "backbone")]) != 0
    assert "--decoder-of goes with" in capsys.readouterr().err
    assert main([*args, "--parts", "mouth"]) != 0
    assert "unknown part 'mouth'" in capsys.readouterr().err


def test_mouth_weight_counts_the_lower_face_errors_more(stages):
    from dicetalk.data.datasets import WindowDataset
    from dicetalk.training.diffusion import _collate, build_trainable, diffusion_loss

    scale = stages["backbone"]["vae"].config.scaling_factor
    opts = _opts(stages, "unused", 1)
    modules = build_trainable(opts)
    data = WindowDataset(stages["cache"], 4, seed=0, features=stages["features"], with_pixels=False, neutral_reference=True)
    batch = _collate([data[0], data[1]])

    def denoise_loss(mouth_weight, batch):
        fn = diffusion_loss(DiffusionOptions(**{**vars(opts), "mouth_weight": mouth_weight}), stages["cache"].fps, scale)
        with torch.no_grad():
            return float(fn(0, modules, batch, torch.Generator().manual_seed(3))[1]["denoise"])

    plain = denoise_loss(1.0, batch)
    assert denoise_loss(4.0, batch) > plain * 1.05
    # Only the face box's lower part is weighted: with the faces above the frame nothing is.
    away = {**batch, "face_boxes": batch["face_boxes"] - torch.tensor([0.0, 2.0, 0.0, 2.0])}
    assert denoise_loss(4.0, away) == pytest.approx(plain, rel=1e-6)


def test_a_run_started_before_an_option_existed_resumes_with_its_default(stages, tmp_path):
    from dataclasses import replace

    from dicetalk.errors import InputError

    opts = _opts(stages, tmp_path / "old", 4)
    Run(tmp_path / "old" / "run", opts, resume=False)
    saved = tmp_path / "old" / "run" / "options.json"
    old = json.loads(saved.read_text())
    del old["mouth_weight"]  # as written before the option was added
    saved.write_text(json.dumps(old))
    Run(tmp_path / "old" / "run", opts, resume=True)
    saved.write_text(json.dumps(old))
    with pytest.raises(InputError, match="different options: mouth_weight"):
        Run(tmp_path / "old" / "run", replace(opts, mouth_weight=3.0), resume=True)


def test_condition_dropout_cases_are_disjoint_and_the_image_only_case_is_optional():
    from dicetalk.training.diffusion import _drops

    u = torch.rand(200_000, generator=torch.Generator().manual_seed(0))
    base = DiffusionOptions(dataset="d", out="o", backbone="b", embedder="e")

    def shares(opts):
        audio, image, emotion = _drops(u, opts)
        cases = {
            "audio": audio & ~image & ~emotion, "image": image & ~audio & ~emotion, "emotion": emotion & ~audio & ~image,
            "all": audio & image & emotion, "image only": audio & emotion & ~image, "none": ~audio & ~image & ~emotion,
        }  # fmt: skip
        return {k: v.float().mean().item() for k, v in cases.items()}

    paper = shares(base)  # 5 % each of audio, image, emotion, all; guidance's image-only branch never
    assert paper["image only"] == 0.0
    for case in ("audio", "image", "emotion", "all"):
        assert abs(paper[case] - 0.05) < 0.003
    extra = shares(DiffusionOptions(**{**vars(base), "drop_audio_emotion": 0.1}))
    assert abs(extra["image only"] - 0.1) < 0.003
    for case in ("audio", "image", "emotion", "all"):
        assert abs(extra[case] - paper[case]) < 1e-9  # the paper's cases keep their share
    assert abs(extra["none"] - (paper["none"] - 0.1)) < 0.003


def test_sync_expert_trains_and_its_loss_reaches_the_denoiser(stages, tmp_path):
    from dataclasses import replace

    from dicetalk.data.datasets import WindowDataset
    from dicetalk.errors import InputError
    from dicetalk.training.diffusion import _collate, build_trainable, diffusion_loss, load_sync_expert
    from dicetalk.training.sync_expert import SyncExpertOptions, train_sync_expert

    world, root = stages["world"], stages["root"]
    sx = SyncExpertOptions(str(world), str(tmp_path / "sx"), str(root / "backbone"), str(root / "embedder"), config="tiny", steps=3, batch=4, frames=8)
    folder, accuracy = train_sync_expert(sx, stages["cache"], stages["features"])
    assert (folder / "config.json").is_file() and (folder / "diffusion_pytorch_model.safetensors").is_file()
    assert 0.0 <= accuracy <= 1.0
    assert (tmp_path / "sx" / "run" / "checkpoints" / "step_0000003").is_dir()  # resumable like every run

    opts = _opts(stages, tmp_path / "d", 2, sync_expert=str(folder), sync_weight=0.5)
    opts = replace(opts, frames=8)
    expert = load_sync_expert(opts, stages["features"])
    scale = stages["backbone"]["vae"].config.scaling_factor
    modules = build_trainable(opts)
    data = WindowDataset(stages["cache"], 8, seed=0, features=stages["features"], with_pixels=False, neutral_reference=True)
    batch = _collate([data[0], data[1]])

    def step(o, ex):
        for m in modules.values():
            m.zero_grad()
        loss, logs = diffusion_loss(o, stages["cache"].fps, scale, ex)(0, modules, batch, torch.Generator().manual_seed(5))
        loss.backward()
        return float(loss.detach()), logs, [p.grad.clone() for p in modules["unet"].parameters() if p.grad is not None]

    plain_loss, plain_logs, plain_grads = step(replace(opts, sync_weight=0.0), expert)
    sync_loss, logs, grads = step(opts, expert)
    assert "sync" not in plain_logs and float(logs["sync"]) > 0
    assert sync_loss == pytest.approx(plain_loss + 0.5 * float(logs["sync"]), rel=1e-5)
    assert any(not torch.allclose(a, b) for a, b in zip(plain_grads, grads))  # the sync loss trains the UNet
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in expert.parameters())  # the expert stays frozen

    train_diffusion(opts, stages["cache"], stages["features"], scale)  # runs and checkpoints with the expert
    assert (tmp_path / "d" / "run" / "checkpoints" / "step_0000002").is_dir()
    with pytest.raises(InputError, match="--frames must be at least"):
        load_sync_expert(replace(opts, frames=4), stages["features"])
    with pytest.raises(InputError, match="needs --sync-expert"):
        load_sync_expert(replace(opts, sync_expert=str(tmp_path / "nothing")), stages["features"])
    with pytest.raises(InputError, match="not this configuration"):
        load_sync_expert(replace(opts, config="synthetic"), stages["features"])


def test_train_cli_refuses_a_sync_weight_without_an_expert(stages, tmp_path, capsys):
    root = stages["root"]
    args = ["train", str(stages["world"]), "--backbone", str(root / "backbone"), "--embedder", str(root / "embedder"),
            "--out", str(tmp_path / "o"), "--config", "tiny", "--dry-run"]  # fmt: skip
    assert main([*args, "--sync-weight", "0.5"]) != 0
    assert "go together" in capsys.readouterr().err
    assert main([*args, "--sync-expert", str(tmp_path)]) != 0
    assert "go together" in capsys.readouterr().err


def test_train_sync_expert_cli_trains_resumes_and_dry_runs(stages, tmp_path, capsys):
    root = stages["root"]
    args = ["train-sync-expert", str(stages["world"]), "--backbone", str(root / "backbone"), "--embedder", str(root / "embedder"),
            "--out", str(tmp_path / "sx"), "--config", "tiny", "--batch", "2", "--frames", "8", "--cache-dir", str(root / "cache")]  # fmt: skip
    assert main([*args, "--steps", "2", "--dry-run"]) == 0
    assert "LatentSyncExpert" in capsys.readouterr().out
    assert not (tmp_path / "sx" / "sync_expert").exists()
    assert main([*args, "--steps", "2"]) == 0
    assert "picks its own audio offset" in capsys.readouterr().out
    assert main([*args, "--steps", "3"]) != 0  # a finished run is not silently restarted
    assert main([*args, "--steps", "3", "--resume"]) == 0
    assert (tmp_path / "sx" / "run" / "checkpoints" / "step_0000003").is_dir()
    assert (tmp_path / "sx" / "sync_expert" / "config.json").is_file()


def test_learning_rate_warms_up_then_holds_or_decays_along_a_cosine():
    from dicetalk.training.common import lr_at

    assert lr_at(0, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(500, 1.0, 10) == 1.0  # constant by default
    assert lr_at(9, 1.0, 10, steps=100) == pytest.approx(0.5 * (1 + np.cos(np.pi * 0.09)))
    assert lr_at(50, 1.0, 10, steps=100) == pytest.approx(0.5)
    assert lr_at(99, 1.0, 10, steps=100) < 0.001
