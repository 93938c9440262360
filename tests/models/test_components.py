"""Token projection, mask encoder, emotion bank, discriminator: shapes, maths and round trips."""

import torch
import torch.nn.functional as F

from dicetalk.models.discriminator import EmotionDiscriminator
from dicetalk.models.emotion_bank import EmotionBank
from dicetalk.models.mask_encoder import FaceMaskEncoder
from dicetalk.models.token_projection import TokenProjection


def test_token_projection_shapes_and_flattening(tiny_config):
    proj = TokenProjection(**tiny_config.audio_projection)
    cfg = proj.config
    windows = torch.randn(2, 5, cfg.seq_len, cfg.blocks, cfg.channels)
    tokens = proj(windows)
    assert tokens.shape == (2, 5, cfg.context_tokens, cfg.output_dim)
    assert tokens.dtype == torch.float32
    flat = proj(windows.flatten(-3))
    torch.testing.assert_close(tokens, flat)
    # Layer norm over the token dimension.
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(2, 5, cfg.context_tokens), atol=1e-5, rtol=0)


def test_mask_encoder_starts_at_zero_and_downsamples(tiny_config):
    enc = FaceMaskEncoder(**tiny_config.mask_encoder)
    mask = torch.rand(2, 3, 3, 32, 32)
    out = enc(mask)
    f = enc.downscale_factor
    assert out.shape == (2, 3, tiny_config.mask_encoder["conditioning_embedding_channels"], 32 // f, 32 // f)
    assert torch.count_nonzero(out) == 0  # zero-initialised output convolution leaves the backbone unchanged
    torch.nn.init.normal_(enc.conv_out.weight)
    assert torch.count_nonzero(enc(mask)) > 0


def _hand_made_bank():
    bank = EmotionBank(prior_dim=2, code_dim=2, num_codes=3, num_tokens=2, token_dim=4, hidden_dim=4, num_heads=2, beta=0.25)
    with torch.no_grad():
        bank.codebook.fc.weight.copy_(torch.eye(2))
        bank.codebook.fc.bias.zero_()
        bank.codebook.codebook.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.5]]))
    return bank


def test_vq_picks_nearest_code_and_loss_matches_formula():
    bank = _hand_made_bank()
    prior = torch.tensor([[[0.9, 1.2]], [[-1.5, 0.2]], [[0.1, -0.1]]], requires_grad=True)  # (B=3, F=1, 2)
    quantized, loss, indices = bank.quantize(prior)
    assert indices.flatten().tolist() == [1, 2, 0]
    codes = bank.codes.detach()[indices.flatten()].view(3, 1, 2)
    torch.testing.assert_close(quantized, codes)  # forward value is the code
    z = prior.detach()
    expected = ((z - codes) ** 2).mean() * (1 + 0.25)  # ||sg[z]-C||^2 + beta ||z-sg[C]||^2, as means
    torch.testing.assert_close(loss, expected)


def test_vq_straight_through_gradient_and_loss_gradients():
    bank = _hand_made_bank()
    prior = torch.tensor([[[0.9, 1.2]]], requires_grad=True)
    quantized, loss, _ = bank.quantize(prior)
    # Straight-through: d(quantized)/d(prior) is the identity through fc (= I here).
    (g,) = torch.autograd.grad(quantized.sum(), prior, retain_graph=True)
    torch.testing.assert_close(g, torch.ones_like(prior))
    # The codebook term moves the chosen code only, towards the prior.
    bank.zero_grad()
    loss.backward()
    grad_codes = bank.codebook.codebook.weight.grad
    assert torch.count_nonzero(grad_codes[[0, 2]]) == 0
    expected_code_grad = 2 * (torch.tensor([1.0, 1.0]) - torch.tensor([0.9, 1.2])) / 2  # d/dC mean((C - z)^2)
    torch.testing.assert_close(grad_codes[1], expected_code_grad)
    # The commitment term (beta) pulls the projection towards the code.
    expected_prior_grad = 0.25 * 2 * (torch.tensor([0.9, 1.2]) - torch.tensor([1.0, 1.0])) / 2
    torch.testing.assert_close(prior.grad.flatten(), expected_prior_grad)


def test_bank_attention_at_inference_covers_every_code(tiny_config):
    torch.manual_seed(0)
    bank = EmotionBank(**tiny_config.emotion_bank).eval()
    cfg = bank.config
    prior = torch.randn(2, 3, cfg.prior_dim)
    out = bank(prior, return_attention=True)
    assert out.tokens.shape == (2, 3, cfg.num_tokens, cfg.token_dim)
    assert out.indices is None and float(out.vq_loss) == 0.0
    assert out.attention.shape == (2, 3, cfg.num_heads, cfg.num_tokens, cfg.num_codes * cfg.num_tokens)
    per_code = out.attention.unflatten(-1, (cfg.num_codes, cfg.num_tokens)).sum(-1)  # mass on each code
    assert (per_code > 0).all()
    torch.testing.assert_close(per_code.sum(-1), torch.ones_like(per_code.sum(-1)))
    # SDPA path and explicit path agree.
    torch.testing.assert_close(bank(prior).tokens, out.tokens, atol=1e-5, rtol=1e-5)


def test_bank_training_mode_attends_to_the_retrieved_code_only(tiny_config):
    torch.manual_seed(0)
    bank = EmotionBank(**tiny_config.emotion_bank).train()
    cfg = bank.config
    prior = torch.randn(2, 3, cfg.prior_dim)
    out = bank(prior, return_attention=True)
    assert out.attention.shape[-1] == cfg.num_tokens
    assert out.indices.shape == (2, 3)
    assert out.vq_loss.item() > 0
    # The same prior with a different retrieved code gives different tokens.
    with torch.no_grad():
        bank.codebook.codebook.weight[out.indices[0, 0]] += 5.0
    assert not torch.allclose(bank(prior).tokens[0, 0], out.tokens[0, 0])


def test_bank_drop_zeroes_the_condition(tiny_config):
    bank = EmotionBank(**tiny_config.emotion_bank).train()
    prior = torch.randn(2, 1, bank.config.prior_dim)
    drop = torch.tensor([True, False])
    dropped = bank(prior, drop=drop)
    other = bank(torch.randn_like(prior), drop=drop)
    # A dropped sample no longer depends on its prior (prior and retrieved code are zeroed)...
    torch.testing.assert_close(dropped.tokens[0], other.tokens[0])
    # ...and the others are untouched.
    torch.testing.assert_close(dropped.tokens[1], bank(prior).tokens[1])
    assert not torch.allclose(dropped.tokens[1], other.tokens[1])


def test_discriminator_logits_and_weighted_loss(tiny_config):
    torch.manual_seed(0)
    disc = EmotionDiscriminator(**tiny_config.discriminator).eval()
    feats = torch.randn(6, tiny_config.discriminator["in_channels"], 4, 4)  # B=2 samples x F=3 frames
    logits = disc(feats)
    assert logits.shape == (6, 22)
    labels = torch.tensor([3, 7])
    full = disc.loss(feats, labels)
    torch.testing.assert_close(full, F.cross_entropy(logits, labels.repeat_interleave(3)))
    only_second = disc.loss(feats, labels, weight=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(only_second, F.cross_entropy(logits[3:], labels[1:].repeat_interleave(3)))
    # Pooling is adaptive: any spatial size works.
    assert disc(torch.randn(1, tiny_config.discriminator["in_channels"], 7, 5)).shape == (1, 22)


def test_round_trips_give_identical_outputs(tmp_path, tiny_config):
    torch.manual_seed(0)
    cases = [
        (TokenProjection(**tiny_config.audio_projection), torch.randn(1, 2, 10, 3, 32)),
        (FaceMaskEncoder(**tiny_config.mask_encoder), torch.rand(1, 2, 3, 32, 32)),
        (EmotionBank(**tiny_config.emotion_bank), torch.randn(1, 2, 16)),
        (EmotionDiscriminator(**tiny_config.discriminator), torch.randn(2, 64, 4, 4)),
    ]
    for module, x in cases:
        torch.nn.init.normal_(next(module.parameters()))  # not just the defaults
        module.eval()
        path = tmp_path / type(module).__name__
        module.save_pretrained(path)
        assert (path / "diffusion_pytorch_model.safetensors").is_file()
        loaded = type(module).from_pretrained(path).eval()
        a, b = module(x), loaded(x)
        a = getattr(a, "tokens", a)
        b = getattr(b, "tokens", b)
        assert torch.equal(a, b), type(module).__name__


def test_precomputed_bank_keys_values_give_the_same_tokens(tiny_config):
    torch.manual_seed(0)
    bank = EmotionBank(**tiny_config.emotion_bank).eval()
    prior = torch.randn(2, 3, bank.config.prior_dim)
    with torch.no_grad():
        torch.testing.assert_close(bank(prior, bank=bank.bank_keys_values()).tokens, bank(prior).tokens)


def test_reference_refiner_starts_as_identity_and_uses_the_portrait(tiny_config, tmp_path):
    import pytest

    from dicetalk.models.reference_refiner import ReferenceRefiner

    refiner = ReferenceRefiner(**tiny_config.refiner)
    frames, portrait = torch.rand(3, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(refiner(frames, portrait), frames)  # zero-initialised correction: a fresh refiner changes nothing
    torch.nn.init.normal_(refiner.conv_out.weight, std=0.1)
    out = refiner(frames, portrait)
    assert out.shape == frames.shape and not torch.allclose(out, frames)
    assert not torch.allclose(out, refiner(frames, -portrait))  # the portrait reaches the output
    torch.testing.assert_close(out, refiner(frames, portrait.expand(3, -1, -1, -1)))  # one portrait serves every frame
    refiner.save_pretrained(tmp_path / "r")
    torch.testing.assert_close(ReferenceRefiner.from_pretrained(tmp_path / "r")(frames, portrait), out)
    with pytest.raises(ValueError, match="multiple of"):
        refiner(torch.zeros(1, 3, 31, 31), torch.zeros(1, 3, 31, 31))
