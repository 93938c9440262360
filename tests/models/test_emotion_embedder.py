"""Disentangled emotion embedder (Sec. 3.1, Eq. 2-6): shapes, pooling maths, masking, modality dropout, determinism."""

import math

import numpy as np
import pytest
import torch

from dicetalk.configs import CONFIG_NAMES, get_config
from dicetalk.models.audio_encoder import encode_audio, frame_features, whisper_feature_extractor
from dicetalk.models.emotion_embedder import DisentangledEmotionEmbedder
from dicetalk.models.registry import build_component
from dicetalk.training.losses import info_nce


@pytest.fixture
def embedder(tiny_config):
    torch.manual_seed(0)
    return build_component("emotion_embedder", tiny_config)


def _inputs(cfg, batch=3, frames=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    expression = torch.randn(batch, frames, cfg.expression_dim, generator=g)
    audio = torch.randn(batch, frames, cfg.audio_dim, generator=g)
    return expression, audio


def test_shapes_and_dtypes(embedder):
    cfg = embedder.config
    expression, audio = _inputs(cfg)
    out = embedder.eval()(expression, audio, return_streams=True)
    for name in ("mu", "var", "prior"):
        assert getattr(out, name).shape == (3, cfg.model_dim)
        assert getattr(out, name).dtype == torch.float32
    assert out.weights.shape == (3, 20)
    assert out.s_alpha.shape == out.s_beta.shape == (3, 20, cfg.model_dim)
    assert out.dropped_visual.dtype == out.dropped_audio.dtype == torch.bool
    assert not out.dropped_visual.any() and not out.dropped_audio.any()  # no modality dropout in eval
    assert (out.var >= 0).all()
    assert torch.equal(out.prior, out.mu)  # eval: no sampling by default
    torch.testing.assert_close(out.weights.sum(1), torch.ones(3))
    # The pooled statistics are those of the returned stream.
    torch.testing.assert_close(out.mu, torch.einsum("bn,bnd->bd", out.weights, out.s_alpha))
    assert embedder.train()(expression, audio).s_alpha is None  # streams only on request


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_configs_agree_with_their_neighbours(name):
    config = get_config(name)
    emb = config.emotion_embedder
    assert emb["model_dim"] == config.prior_dim  # the prior feeds the emotion bank
    assert emb["audio_dim"] == config.audio_encoder["d_model"]  # per-frame Whisper features
    assert emb["model_dim"] % emb["num_heads"] == 0


def test_gradients_reach_every_parameter_but_not_a_frozen_whisper(tiny_config, embedder):
    torch.manual_seed(0)
    whisper = build_component("audio_encoder", tiny_config).requires_grad_(False).eval()
    extractor = whisper_feature_extractor(whisper.config)
    rng = np.random.default_rng(0)
    frames = 12
    clips = [rng.standard_normal(int(frames / 25 * 16000)).astype(np.float32) for _ in range(4)]
    audio = torch.stack([frame_features(encode_audio(whisper, extractor, wav, frames), frames) for wav in clips])
    assert audio.shape == (4, frames, tiny_config.emotion_embedder["audio_dim"])
    expression = torch.randn(4, frames, embedder.config.expression_dim)
    padding = torch.zeros(4, frames, dtype=torch.bool)
    padding[1, 9:] = True
    out = embedder.train()(expression, audio, padding_mask=padding, generator=torch.Generator().manual_seed(3))
    # Both streams reached the loss through at least one sample.
    assert not (out.dropped_visual.all() or out.dropped_audio.all())
    loss = info_nce(out.prior, torch.tensor([0, 0, 1, 1]), temperature=0.1) + out.var.mean()
    loss.backward()
    for name, p in embedder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in whisper.parameters())


def _small_embedder():
    return DisentangledEmotionEmbedder(
        expression_dim=2, audio_dim=2, model_dim=2, num_layers=1, num_heads=1, ffn_dim=4, max_frames=8, dropout=0.0
    )


def test_pooling_matches_the_formula_on_a_hand_made_case():
    emb = _small_embedder()
    with torch.no_grad():
        emb.pool_proj.weight.copy_(torch.tensor([[1.0, 0.0]]))  # W_s picks the first channel
    ln3 = math.log(3.0)
    s_alpha = torch.tensor([[[0.0, 1.0], [ln3, 2.0], [0.0, 4.0]]])
    weights, mu, var = emb.pool(s_alpha)
    # logits (0, ln 3, 0) -> exp (1, 3, 1) -> w = (0.2, 0.6, 0.2)
    torch.testing.assert_close(weights, torch.tensor([[0.2, 0.6, 0.2]]))
    torch.testing.assert_close(mu, torch.tensor([[0.6 * ln3, 0.2 * 1 + 0.6 * 2 + 0.2 * 4]]))
    # channel 0: 0.2*(0.6 ln3)^2 * 2 + 0.6*(0.4 ln3)^2; channel 1: 0.2*1.2^2 + 0.6*0.2^2 + 0.2*1.8^2
    torch.testing.assert_close(var, torch.tensor([[0.24 * ln3**2, 0.96]]))
    # A padding frame, however large, changes nothing and gets zero weight.
    padded = torch.cat([s_alpha, torch.tensor([[[50.0, -70.0]]])], dim=1)
    mask = torch.tensor([[False, False, False, True]])
    w2, mu2, var2 = emb.pool(padded, mask)
    assert w2[0, 3] == 0
    torch.testing.assert_close(w2[:, :3], weights)
    torch.testing.assert_close(mu2, mu)
    torch.testing.assert_close(var2, var)


def test_padding_frames_get_zero_weight_and_do_not_matter(embedder):
    embedder.eval()
    cfg = embedder.config
    expression, audio = _inputs(cfg, batch=2, frames=16)
    padding = torch.zeros(2, 16, dtype=torch.bool)
    padding[0, 10:] = True
    out = embedder(expression, audio, padding_mask=padding)
    assert torch.count_nonzero(out.weights[0, 10:]) == 0 and (out.weights[0, :10] > 0).all()
    torch.testing.assert_close(out.weights.sum(1), torch.ones(2))
    # Changing what the padding holds changes nothing...
    e2, a2 = expression.clone(), audio.clone()
    e2[0, 10:] = 100.0
    a2[0, 10:] = -100.0
    torch.testing.assert_close(embedder(e2, a2, padding_mask=padding).mu, out.mu, atol=1e-5, rtol=1e-5)
    # ...and a padded clip is the same clip without the padding.
    alone = embedder(expression[:1, :10], audio[:1, :10])
    torch.testing.assert_close(alone.mu, out.mu[:1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.var, out.var[:1], atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference takes PyTorch's fused encoder-layer path: same answer
        torch.testing.assert_close(embedder(expression, audio, padding_mask=padding).mu, out.mu, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one frame"):
        embedder(expression, audio, padding_mask=torch.ones(2, 16, dtype=torch.bool))


def test_modality_dropout_never_drops_both(embedder):
    p = embedder.config.modality_dropout
    visual, audio = embedder.modality_dropout_masks(20_000, generator=torch.Generator().manual_seed(0))
    assert not (visual & audio).any()
    assert abs(visual.float().mean().item() - p) < 0.02
    assert abs(audio.float().mean().item() - p) < 0.02
    # The same inside forward, in training mode.
    embedder.train()
    expression, audio_in = _inputs(embedder.config, batch=64, frames=6)
    out = embedder(expression, audio_in, generator=torch.Generator().manual_seed(1))
    assert not (out.dropped_visual & out.dropped_audio).any()
    assert out.dropped_visual.any() and out.dropped_audio.any() and (~out.dropped_visual & ~out.dropped_audio).any()
    # A dropped stream really carries nothing: changing that input changes nothing.
    e2, a2 = expression.clone(), audio_in.clone()
    e2[out.dropped_visual] = torch.randn_like(e2[out.dropped_visual])
    a2[out.dropped_audio] = torch.randn_like(a2[out.dropped_audio])
    again = embedder(e2, a2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.dropped_visual, out.dropped_visual)
    torch.testing.assert_close(again.mu, out.mu)
    kept = ~out.dropped_visual & ~out.dropped_audio
    e3 = expression.clone()
    e3[kept] = torch.randn_like(e3[kept])
    changed = embedder(e3, audio_in, generator=torch.Generator().manual_seed(1)).mu
    assert not torch.allclose(changed[kept], out.mu[kept])
    # No dropout outside training.
    embedder.eval()
    out = embedder(expression, audio_in, generator=torch.Generator().manual_seed(1))
    assert not out.dropped_visual.any() and not out.dropped_audio.any()


def test_video_only_and_audio_only(embedder):
    embedder.eval()
    expression, audio = _inputs(embedder.config)
    video_only = embedder(expression=expression)
    audio_only = embedder(audio=audio)
    both = embedder(expression, audio)
    assert video_only.prior.shape == audio_only.prior.shape == both.prior.shape
    assert video_only.dropped_audio.all() and not video_only.dropped_visual.any()
    assert audio_only.dropped_visual.all() and not audio_only.dropped_audio.any()
    assert not torch.allclose(video_only.prior, audio_only.prior)
    assert not torch.allclose(video_only.prior, both.prior)
    assert not torch.allclose(audio_only.prior, both.prior)
    # Video only is exactly "audio dropped": a sample whose audio was dropped in training matches it.
    embedder.train()
    expression, audio = _inputs(embedder.config, batch=32, frames=8, seed=2)
    out = embedder(expression, audio, sample=False, generator=torch.Generator().manual_seed(5))
    assert out.dropped_audio.any() and out.dropped_visual.any()
    for k in range(32):
        if out.dropped_audio[k]:
            torch.testing.assert_close(out.mu[k], embedder(expression=expression[k : k + 1], sample=False).mu[0])
        if out.dropped_visual[k]:
            torch.testing.assert_close(out.mu[k], embedder(audio=audio[k : k + 1], sample=False).mu[0])
    with pytest.raises(ValueError, match="needs"):
        embedder()


def test_input_validation(embedder):
    cfg = embedder.config
    expression, audio = _inputs(cfg)
    with pytest.raises(ValueError, match="audio must have shape"):
        embedder(expression, audio[:, :5])
    with pytest.raises(ValueError, match="max_frames"):
        embedder(expression=torch.randn(1, cfg.max_frames + 1, cfg.expression_dim))
    with pytest.raises(ValueError, match="modality_dropout"):
        DisentangledEmotionEmbedder(expression_dim=2, audio_dim=2, model_dim=2, num_heads=1, modality_dropout=0.6)


def test_seeded_sampling_is_deterministic(embedder):
    embedder.eval()
    expression, audio = _inputs(embedder.config)

    def draw(seed):
        return embedder(expression, audio, sample=True, generator=torch.Generator().manual_seed(seed))

    a, b, c = draw(0), draw(0), draw(1)
    assert torch.equal(a.prior, b.prior)
    assert not torch.allclose(a.prior, c.prior)
    torch.testing.assert_close(a.mu, c.mu)  # only eps differs
    assert not torch.allclose(a.prior, a.mu)
    # Reparameterisation: (prior - mu) / sigma is a standard normal draw, the same for the same seed.
    eps = (a.prior - a.mu) / a.var.sqrt()
    torch.testing.assert_close(eps, torch.randn(a.mu.shape, generator=torch.Generator().manual_seed(0)), atol=1e-4, rtol=1e-4)
    # Training mode samples by default, with the modality-dropout draws seeded too.
    embedder.train()
    t1 = embedder(expression, audio, generator=torch.Generator().manual_seed(7))
    t2 = embedder(expression, audio, generator=torch.Generator().manual_seed(7))
    assert torch.equal(t1.prior, t2.prior) and not torch.equal(t1.prior, t1.mu)


def test_save_and_load_round_trip(tmp_path, embedder):
    torch.manual_seed(1)
    for p in embedder.parameters():
        torch.nn.init.normal_(p, std=0.2)  # not just the defaults
    embedder.eval()
    embedder.save_pretrained(tmp_path / "embedder")
    assert (tmp_path / "embedder" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DisentangledEmotionEmbedder.from_pretrained(tmp_path / "embedder").eval()
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(embedder.config)
    expression, audio = _inputs(embedder.config)
    padding = torch.zeros(3, 20, dtype=torch.bool)
    padding[2, 15:] = True
    for kwargs in ({}, {"sample": True}):
        a = embedder(expression, audio, padding_mask=padding, generator=torch.Generator().manual_seed(0), **kwargs)
        b = loaded(expression, audio, padding_mask=padding, generator=torch.Generator().manual_seed(0), **kwargs)
        assert torch.equal(a.prior, b.prior) and torch.equal(a.var, b.var)
