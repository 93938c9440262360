"""DiceTalkUNet: the SVD UNet with audio/emotion cross-attention, mask features and mid-block capture."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dicetalk.models.attention_processors import AudioEmotionAttnProcessor, ConditionContext
from dicetalk.models.registry import build_components
from dicetalk.models.unet import DiceTalkUNet


def _inputs(cfg, batch=2, frames=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = cfg.unet
    frames = frames or cfg.num_frames
    size = u["sample_size"]
    d = u["cross_attention_dim"]
    return dict(
        sample=torch.randn(batch, frames, u["in_channels"], size, size, generator=g),
        timestep=torch.tensor(0.3),
        encoder_hidden_states=torch.randn(batch, 1, d, generator=g),
        added_time_ids=torch.randn(batch, 3, generator=g),
        audio_tokens=torch.randn(batch, frames, cfg.audio_projection["context_tokens"], d, generator=g),
        emotion_tokens=torch.randn(batch, frames, cfg.emotion_bank["num_tokens"], d, generator=g),
        mask_features=torch.randn(batch, frames, u["block_out_channels"][0], size, size, generator=g),
    )


@pytest.fixture
def unet(tiny_config):
    torch.manual_seed(0)
    return DiceTalkUNet(**tiny_config.unet).eval()


def test_every_cross_attention_gets_audio_and_emotion(unet):
    attn2 = [m for n, m in unet.named_modules() if isinstance(m, Attention) and n.endswith("attn2")]
    assert attn2 and all(isinstance(m.processor, AudioEmotionAttnProcessor) for m in attn2)
    temporal = [m.processor.temporal for n, m in unet.named_modules() if isinstance(m, Attention) and n.endswith("attn2")]
    assert any(temporal) and not all(temporal)  # spatial and temporal blocks both carry the streams
    keys = [k for k in unet.state_dict() if ".processor." in k]
    assert len(keys) == 4 * len(attn2)  # to_k_ip.{0,1} and to_v_ip.{0,1} per layer


def test_forward_shapes_and_mid_features(unet, tiny_config):
    x = _inputs(tiny_config)
    out = unet(**x)
    b, f = x["sample"].shape[:2]
    assert out.sample.shape == (b, f, tiny_config.unet["out_channels"], *x["sample"].shape[-2:])
    assert out.mid_features.shape[:2] == (b * f, tiny_config.unet["block_out_channels"][-1])
    assert unet._condition.streams == [None, None]  # context cleared after an inference call


def test_each_condition_changes_the_output(unet, tiny_config):
    x = _inputs(tiny_config)
    base = unet(**x).sample
    for key in ("audio_tokens", "emotion_tokens", "mask_features"):
        y = dict(x)
        y[key] = None
        assert not torch.allclose(unet(**y).sample, base), key


def test_condition_scales(unet, tiny_config):
    x = _inputs(tiny_config)
    off = unet(**{**x, "audio_tokens": None}).sample
    unet.set_condition_scales(audio=0.0)
    torch.testing.assert_close(unet(**x).sample, off)
    unet.set_condition_scales(audio=2.0)
    assert not torch.allclose(unet(**x).sample, off)


def test_emotion_time_embedding_is_a_global_path_that_starts_at_zero(tiny_config):
    assert not hasattr(DiceTalkUNet(**tiny_config.unet), "emotion_embedding")  # the released layout has none
    torch.manual_seed(0)
    unet = DiceTalkUNet(**{**tiny_config.unet, "emotion_time_embedding": True}).eval()
    x = _inputs(tiny_config)
    other = {**x, "emotion_tokens": torch.randn_like(x["emotion_tokens"])}
    for proc in unet.condition_processors():
        proc.scales[1] = 0.0  # cross-attention to the emotion off: only the global path is left
    torch.testing.assert_close(unet(**x).sample, unet(**other).sample)  # zero-initialised: no effect yet
    torch.nn.init.normal_(unet.emotion_embedding.weight, std=0.5)  # as after training
    assert not torch.allclose(unet(**x).sample, unet(**other).sample)
    unet.set_condition_scales(emotion=0.0)  # the emotion scale turns both paths off
    torch.testing.assert_close(unet(**x).sample, unet(**other).sample)


def test_bad_token_shape_is_refused(unet, tiny_config):
    x = _inputs(tiny_config)
    x["audio_tokens"] = x["audio_tokens"][:, :2]
    with pytest.raises(ValueError, match="audio_tokens"):
        unet(**x)


def _attention(dim=16, cross=8, heads=2):
    torch.manual_seed(0)
    return Attention(query_dim=dim, cross_attention_dim=cross, heads=heads, dim_head=dim // heads).eval()


def test_processor_without_streams_matches_diffusers_attention():
    attn = _attention()
    h, enc = torch.randn(6, 5, 16), torch.randn(6, 3, 8)
    ours = AudioEmotionAttnProcessor(16, 8)
    ref = AttnProcessor2_0()
    torch.testing.assert_close(ours(attn, h, enc), ref(attn, h, enc))
    one = enc[:, :1]  # a single key: the fast path must equal real attention
    torch.testing.assert_close(ours(attn, h, one), ref(attn, h, one), atol=1e-6, rtol=1e-5)


def test_spatial_processor_uses_each_frames_own_tokens():
    attn = _attention()
    b, f, length = 2, 3, 5
    ctx = ConditionContext()
    proc = AudioEmotionAttnProcessor(16, 8, context=ctx)
    torch.nn.init.normal_(proc.to_k_ip[0].weight)
    torch.nn.init.normal_(proc.to_v_ip[0].weight)
    h, enc = torch.randn(b * f, length, 16), torch.randn(b * f, 1, 8)
    tokens = torch.randn(b, f, 4, 8)
    ctx.streams = [tokens, None]
    base = proc(attn, h, enc)
    changed = tokens.clone()
    changed[1, 2] += 1.0  # batch 1, frame 2 -> row 1 * f + 2
    ctx.streams = [changed, None]
    diff = (proc(attn, h, enc) - base).abs().amax(dim=(1, 2))
    assert diff[5] > 0 and torch.count_nonzero(diff) == 1


def test_temporal_processor_uses_window_mean_tokens():
    attn = _attention()
    b, f, positions = 2, 4, 3
    ctx = ConditionContext()
    proc = AudioEmotionAttnProcessor(16, 8, temporal=True, context=ctx)
    torch.nn.init.normal_(proc.to_k_ip[1].weight)
    torch.nn.init.normal_(proc.to_v_ip[1].weight)
    h, enc = torch.randn(b * positions, f, 16), torch.randn(b * positions, 1, 8)
    tokens = torch.randn(b, f, 4, 8)
    ctx.streams = [None, tokens]
    base = proc(attn, h, enc)
    ctx.streams = [None, tokens.flip(1)]  # same mean over the window
    torch.testing.assert_close(proc(attn, h, enc), base)
    ctx.streams = [None, tokens.mean(1, keepdim=True).expand(b, f, 4, 8)]
    torch.testing.assert_close(proc(attn, h, enc), base, atol=1e-5, rtol=1e-5)
    changed = tokens.clone()
    changed[0] += 1.0  # batch 0 only: rows of batch 1 are untouched
    ctx.streams = [None, changed]
    diff = (proc(attn, h, enc) - base).abs().amax(dim=(1, 2))
    assert (diff[:positions] > 0).all() and torch.count_nonzero(diff[positions:]) == 0


def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(tiny_config):
    torch.manual_seed(0)
    parts = build_components(tiny_config, components=("unet", "audio_projection", "mask_encoder", "emotion_bank", "discriminator"))
    for m in parts.values():
        m.train()
    torch.nn.init.normal_(parts["mask_encoder"].conv_out.weight, std=0.1)  # as after some training
    unet = parts["unet"]
    # Freeze the backbone except the new cross-attention projections, as when fine-tuning SVD.
    frozen = []
    for name, p in unet.named_parameters():
        if ".processor." not in name and not name.startswith("conv_in"):
            p.requires_grad_(False)
            frozen.append(p)
    cfg = tiny_config
    b, f, size = 2, cfg.num_frames, cfg.unet["sample_size"]
    windows = torch.randn(b, f, 10, cfg.audio_projection["blocks"], cfg.audio_projection["channels"])
    prior = torch.randn(b, f, cfg.emotion_bank["prior_dim"])
    mask = torch.rand(b, f, 3, cfg.image_size, cfg.image_size)
    bank = parts["emotion_bank"](prior)
    out = unet(
        torch.randn(b, f, 8, size, size),
        torch.tensor(0.1),
        torch.randn(b, 1, cfg.unet["cross_attention_dim"]),
        torch.randn(b, 3),
        audio_tokens=parts["audio_projection"](windows),
        emotion_tokens=bank.tokens,
        mask_features=parts["mask_encoder"](mask),
    )
    cls = parts["discriminator"].loss(out.mid_features, torch.tensor([1, 5]))
    loss = out.sample.pow(2).mean() + 0.1 * cls + bank.vq_loss
    loss.backward()
    for part_name, module in parts.items():
        for name, p in module.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.count_nonzero(p.grad) > 0, f"{part_name}.{name}"
    assert all(p.grad is None for p in frozen)


def test_same_seed_same_model_same_output(tiny_config):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        unet = DiceTalkUNet(**tiny_config.unet).eval()
        outs.append(unet(**_inputs(tiny_config)).sample)
    assert torch.equal(outs[0], outs[1])


def test_save_and_load_round_trip(tmp_path, unet, tiny_config):
    x = _inputs(tiny_config)
    for proc in unet.condition_processors():
        torch.nn.init.normal_(proc.to_k_ip[0].weight)
    unet.save_pretrained(tmp_path / "unet")
    loaded = DiceTalkUNet.from_pretrained(tmp_path / "unet").eval()
    assert torch.equal(loaded(**x).sample, unet(**x).sample)
    assert isinstance(loaded.down_blocks[0].attentions[0].transformer_blocks[0].attn2.processor, AudioEmotionAttnProcessor)


def test_init_condition_projections_from_image(unet):
    unet.init_condition_projections_from_image()
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    assert torch.equal(attn.processor.to_k_ip[1].weight, attn.to_k.weight)
    assert torch.equal(attn.processor.to_v_ip[0].weight, attn.to_v.weight)


def _spatial_attention(seed=0, dim=16, heads=2, tokens=3):
    torch.manual_seed(seed)
    attn = Attention(query_dim=dim, cross_attention_dim=dim, heads=heads, dim_head=dim // heads)
    ctx = ConditionContext()
    proc = AudioEmotionAttnProcessor(hidden_size=dim, cross_attention_dim=dim, context=ctx, masked=True)
    for p in proc.parameters():
        torch.nn.init.normal_(p, std=0.3)
    attn.set_processor(proc)
    return attn, ctx, tokens


def test_masked_condition_attention_acts_inside_the_face_only():
    attn, ctx, t = _spatial_attention()
    g = torch.Generator().manual_seed(1)
    frames, grid = 2, 8
    x = torch.randn(frames, grid * grid, 16, generator=g)
    image = torch.randn(frames, 1, 16, generator=g)
    ctx.streams = [torch.randn(1, frames, t, 16, generator=g), torch.randn(1, frames, t, 16, generator=g)]
    ctx.batch_size, ctx.num_frames = 1, frames
    unmasked = attn(x, encoder_hidden_states=image)
    streams = ctx.streams
    ctx.streams = [None, None]
    image_only = attn(x, encoder_hidden_states=image)
    ctx.streams = streams
    face = torch.zeros(1, 1, 32, 32)
    face[..., 4:28, 8:24] = 1.0  # the face box, on the frame's 32x32 pixels
    ctx.face_mask, ctx.grid_masks = face, {}
    masked = attn(x, encoder_hidden_states=image)
    gate = ctx.mask_for(grid * grid, frames, torch.float32)[0, :, 0]  # the mask on the block's 8x8 grid
    inside, outside = gate > 0.999, gate.abs() < 1e-3
    assert inside.sum() >= 12 and outside.sum() >= 12
    torch.testing.assert_close(masked[:, inside], unmasked[:, inside], atol=1e-5, rtol=0)  # as without a mask in the face
    torch.testing.assert_close(masked[:, outside], image_only[:, outside], atol=1e-5, rtol=0)  # no speech or emotion outside
    assert (masked[:, outside] - unmasked[:, outside]).abs().max() > 1e-2
    # A full-frame mask is no mask at all.
    ctx.face_mask, ctx.grid_masks = torch.ones(1, 1, 32, 32), {}
    torch.testing.assert_close(attn(x, encoder_hidden_states=image), unmasked, atol=1e-5, rtol=0)


def test_the_release_configuration_gates_spatial_blocks_by_the_face_mask(tiny_config):
    torch.manual_seed(0)
    unet = DiceTalkUNet(**{**tiny_config.unet, "masked_condition_attention": True}).eval()
    masked = [m.processor.masked for n, m in unet.named_modules() if isinstance(m, Attention) and n.endswith("attn2")]
    temporal = [m.processor.temporal for n, m in unet.named_modules() if isinstance(m, Attention) and n.endswith("attn2")]
    assert masked == [not t for t in temporal]  # spatial attn2 only, as the release passes its masks
    x = _inputs(tiny_config, batch=1)
    size = tiny_config.image_size
    plain = unet(**x).sample
    torch.testing.assert_close(unet(**x, face_mask=torch.ones(1, 1, size, size)).sample, plain, atol=1e-5, rtol=0)
    half = torch.zeros(1, 1, size, size)
    half[..., : size // 2, :] = 1.0
    assert (unet(**x, face_mask=half).sample - plain).abs().max() > 1e-3
    # A model trained without the gate ignores the mask.
    unmasked_model = DiceTalkUNet(**tiny_config.unet).eval()
    torch.testing.assert_close(unmasked_model(**x, face_mask=half).sample, unmasked_model(**x).sample)
    from dicetalk.configs import get_config

    assert get_config("svd-xt").unet["masked_condition_attention"]  # the released weights run with the gate
