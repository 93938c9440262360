"""EmotiveTalk's modules: shapes, gradients, masks, seeds, and learning on tiny data."""

import json

import numpy as np
import pytest
import torch

from dicetalk import EMOTIONS
from dicetalk.models.dicte import TrajectoryDenoiser, reference_statistics, sample_trajectory
from dicetalk.models.edi import ExpressionInjector
from dicetalk.models.vaid import AudioDecoupler, masked_moving_average


def small_vaid(**kw):
    torch.manual_seed(0)
    return AudioDecoupler(window=10, blocks=2, channels=8, hidden_dim=32, lip_dim=8, expression_hidden=16, expression_dim=8, dilations=(1, 2, 4), **kw)


def small_dicte(**kw):
    torch.manual_seed(0)
    return TrajectoryDenoiser(trajectory_dim=12, speech_dim=8, channels=32, embed_dim=32, dilations=(1, 2, 4), **kw)


def test_vaid_gives_two_streams_per_frame_and_gradients_reach_both():
    vaid = small_vaid()
    windows = torch.randn(2, 30, 10, 2, 8, requires_grad=True)
    out = vaid(windows)
    assert out.lip.shape == (2, 30, 8) and out.expression.shape == (2, 30, 8)
    assert out.lip_readout.shape == (2, 30, 2) and out.expression_readout.shape == (2, 30, 12)
    (out.lip_readout.sum() + out.expression_readout.sum()).backward()
    assert windows.grad.abs().sum() > 0
    assert vaid.lip_in[1].weight.grad.abs().sum() > 0 and vaid.expression_in[1].weight.grad.abs().sum() > 0


def test_vaid_padding_frames_change_nothing_and_the_lip_stream_holds_no_constant():
    vaid = small_vaid().eval()
    clip = torch.randn(1, 25, 10, 2, 8)
    padded = torch.cat([clip, torch.randn(1, 15, 10, 2, 8)], dim=1)
    mask = torch.zeros(1, 40, dtype=torch.bool)
    mask[:, :25] = True
    alone, with_padding = vaid(clip), vaid(padded, mask)
    torch.testing.assert_close(with_padding.lip[:, :25], alone.lip, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_padding.expression[:, :25], alone.expression, atol=1e-5, rtol=1e-5)
    assert with_padding.lip[:, 25:].abs().max() == 0
    # The lip stream is its features minus their moving average: a voice held still gives nothing.
    still = vaid(clip[:, :1].expand(1, 40, -1, -1, -1))
    assert still.lip[:, 8:-8].abs().max() < 1e-5
    keep = torch.ones(1, 40, 1)
    x = torch.randn(1, 40, 3)
    assert masked_moving_average(x, keep, 1) is x


def test_vaid_standardisation_round_trips():
    vaid = small_vaid(lip_mean=[0.1, 0.2], lip_scale=[2.0, 4.0], expression_mean=[0.5] * 12, expression_scale=[0.25] * 12)
    lips, expression = torch.randn(3, 2), torch.randn(3, 12)
    s_lips, s_expr = vaid.standardise(lips, expression)
    torch.testing.assert_close(vaid.lip_motion(s_lips), lips)
    torch.testing.assert_close(vaid.expression_coefficients(s_expr), expression)


def test_dicte_denoises_with_every_condition_and_gradients_flow():
    model = small_dicte()
    x, speech = torch.randn(3, 20, 12), torch.randn(3, 20, 8)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    label = model.label_condition(torch.tensor([0, 4, 6]), torch.tensor([1.0, 0.5, 1.0]))
    reference = model.reference_condition(torch.randn(3, 30, 12))
    for condition in (label, reference, model.null_condition(3)):
        out = model(x, sigma, speech, condition)
        assert out.shape == x.shape and torch.isfinite(out).all()
    model(x, sigma, None, label).sum().backward()
    # Residual branches start at zero (their output convolution), so only those learn on the first step ...
    assert all(block.mix.weight.grad.abs().sum() > 0 for block in model.blocks)
    # ... and once they are live, the gradient reaches the emotion and the input.
    for block in model.blocks:
        torch.nn.init.normal_(block.mix.weight, std=0.1)
    model.zero_grad()
    label = model.label_condition(torch.tensor([0, 4, 6]), torch.tensor([1.0, 0.5, 1.0]))
    model(x, sigma, None, label).sum().backward()
    assert model.emotion_labels.weight.grad.abs().sum() > 0 and model.input.weight.grad.abs().sum() > 0


def test_dicte_strength_zero_is_neutral_and_reference_statistics_ignore_padding():
    model = small_dicte()
    neutral = EMOTIONS.index("neutral")
    zero = model.label_condition(torch.tensor([EMOTIONS.index("happy")]), torch.tensor([0.0]))
    torch.testing.assert_close(zero, model.label_condition(torch.tensor([neutral]), torch.tensor([1.0])))
    expr = torch.randn(1, 10, 12)
    padded = torch.cat([expr, torch.full((1, 5, 12), 100.0)], dim=1)
    mask = torch.arange(15)[None] < 10
    torch.testing.assert_close(reference_statistics(padded, mask), reference_statistics(expr))


def test_dicte_samples_repeat_per_seed_and_differ_across_seeds():
    model = small_dicte().eval()
    speech = torch.randn(1, 24, 8)
    cond = model.label_condition(torch.tensor([4]), torch.tensor([1.0]))
    draw = lambda seed: sample_trajectory(model, speech, cond, torch.Generator().manual_seed(seed), steps=4, guidance=2.0)  # noqa: E731
    a, b, c = draw(1), draw(1), draw(2)
    assert a.shape == (1, 24, 12)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().mean() > 1e-3


def test_dicte_learns_label_dependent_trajectories():
    """Two labels, two different held expressions: after a short training the samples follow the label."""
    from dicetalk import edm

    torch.manual_seed(0)
    model = small_dicte()
    targets = {EMOTIONS.index("happy"): 1.5, EMOTIONS.index("sad"): -1.5}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        labels = torch.tensor(list(targets))[torch.randint(0, 2, (16,), generator=g)]
        x0 = torch.stack([torch.full((16, 12), targets[int(k)]) for k in labels]) + 0.1 * torch.randn(16, 16, 12, generator=g)
        sigma = edm.sample_training_sigmas(16, -0.4, 1.2, g)
        x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=g)
        cond = model.label_condition(labels, torch.ones(16))
        loss = (edm.loss_weight(sigma)[:, None, None] * (model(x, sigma, torch.zeros(16, 16, 8), cond) - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for label, value in targets.items():
        cond = model.label_condition(torch.tensor([label]), torch.ones(1))
        sample = sample_trajectory(model, torch.zeros(1, 16, 8), cond, torch.Generator().manual_seed(3), steps=10)
        assert abs(float(sample.mean()) - value) < 0.5


def test_edi_starts_with_no_injection_and_learns_through_its_offsets():
    torch.manual_seed(0)
    edi = ExpressionInjector(expression_dim=12, prior_dim=16, num_tokens=4, token_dim=8, hidden_dim=32)
    trajectory, portrait = torch.randn(2, 7, 12), torch.randn(2, 12)
    prior, offsets = edi(trajectory, portrait)
    assert prior.shape == (2, 7, 16) and offsets.shape == (2, 7, 4, 8)
    assert offsets.abs().max() == 0  # zero-initialised: the denoiser as trained
    offsets.sum().backward()
    assert edi.delta_out.weight.grad.abs().sum() > 0
    # With the output layer live, the portrait's expression matters.
    torch.nn.init.normal_(edi.delta_out.weight)
    assert (edi.token_offsets(trajectory, portrait) - edi.token_offsets(trajectory, portrait + 1)).abs().max() > 0


def test_dicte_guidance_combines_the_speech_and_emotion_branches():
    model = small_dicte().eval()
    for block in model.blocks:
        torch.nn.init.normal_(block.mix.weight, std=0.1)
    x, speech, sigma = torch.randn(2, 10, 12), torch.randn(2, 10, 8), torch.tensor([0.5, 2.0])
    cond, null = model.label_condition(torch.tensor([1, 2]), torch.ones(2)), model.null_condition(2)
    with torch.no_grad():
        full, plain, silent = model(x, sigma, speech, cond), model(x, sigma, speech, null), model(x, sigma, torch.zeros_like(speech), null)
        torch.testing.assert_close(model.guided(x, sigma, speech, cond), full)
        torch.testing.assert_close(model.guided(x, sigma, speech, cond, scale=2.0), plain + 2 * (full - plain), atol=1e-5, rtol=1e-5)
        expected = silent + 3 * (plain - silent) + 2 * (full - plain)
        torch.testing.assert_close(model.guided(x, sigma, speech, cond, scale=2.0, speech_scale=3.0), expected, atol=1e-5, rtol=1e-5)


def test_voice_reader_pools_only_real_frames_and_gradients_reach_it():
    from dicetalk.models.voice_emotion import VoiceEmotionReader, pooled_statistics

    torch.manual_seed(0)
    stream = torch.randn(2, 30, 8)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    padded = stream.clone()
    padded[1, 20:] = 100.0  # what padding holds must not matter
    pooled = pooled_statistics(padded, mask)
    torch.testing.assert_close(pooled[1], pooled_statistics(stream[1:, :20])[0])
    reader = VoiceEmotionReader(stream_dim=8)
    logits = reader(padded, mask)
    assert logits.shape == (2, 8)
    logits.logsumexp(-1).sum().backward()
    assert reader.classifier.weight.grad.abs().sum() > 0
    label, probs = reader.read(stream[:1])
    assert label in reader.emotions and abs(float(probs.sum()) - 1) < 1e-5


def test_voice_reader_learns_an_emotion_carried_by_the_streams_level(tmp_path):
    """Clips whose stream mean depends on the emotion (and a per-speaker offset as loud as it):
    trained on some speakers, the read-out names the emotion of new speakers' clips."""
    from dicetalk.training.voice_emotion import ClipStreams, VoiceEmotionOptions, accuracy, train_voice_emotion

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1.0, (8, 8))

    def world(speakers: int, seed: int) -> ClipStreams:
        g = np.random.default_rng(seed)
        streams, labels = [], []
        for _ in range(speakers):
            offset = g.normal(0, 0.3, 8)
            for e in range(8):
                n = int(g.integers(30, 80))
                streams.append(torch.from_numpy(centres[e] + offset + g.normal(0, 1.0, (n, 8))).float())
                labels.append(e)
        return ClipStreams(streams, np.array(labels), np.full(len(labels), 3))

    train, val = world(12, 1), world(4, 2)
    opts = VoiceEmotionOptions(dataset="-", vaid="-", out=str(tmp_path / "voice"), steps=300, batch=32, lr=3e-2, save_every=150)
    reader = train_voice_emotion(opts, train, val)
    assert accuracy(reader, val) > 0.8  # chance 0.125
    scores = json.loads((tmp_path / "voice" / "val.json").read_text())
    assert scores["val_whole_clips"] == pytest.approx(accuracy(reader, val))
    assert (tmp_path / "voice" / "voice" / "config.json").is_file() and (tmp_path / "voice" / "run" / "options.json").is_file()


def test_vaid_streams_in_chunks_of_frames_equal_the_whole_pass():
    from dicetalk.models.vaid import AudioDecoupler

    torch.manual_seed(0)
    vaid = AudioDecoupler(window=4, blocks=2, channels=8, hidden_dim=16, lip_dim=4, expression_hidden=8, expression_dim=4, dilations=(1, 2)).eval()
    windows = torch.randn(1, 40, 4, 2, 8)
    whole = vaid(windows)
    parts = [vaid.frame_features(windows[:, s : s + 16]) for s in range(0, 40, 16)]
    chunked = vaid.streams(torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1))
    torch.testing.assert_close(chunked.expression, whole.expression)
    torch.testing.assert_close(chunked.lip, whole.lip)
