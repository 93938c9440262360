"""The latent lip-sync expert: the crop follows the face box, and the towers learn to align."""

import torch

from dicetalk.models.sync_expert import LOWER_FACE, LatentSyncExpert, crop_lower_face


def _boxes(b, f, box=(0.25, 0.25, 0.75, 0.75)):
    return torch.tensor(box).expand(b, f, 4).clone()


def test_the_crop_reads_the_lower_face_of_the_box_and_passes_gradients():
    # Box 0.25..0.75 of a 32-cell frame: its lower face spans x 0.325..0.675 (cells 10.4..21.6)
    # and y 0.525..0.75 (cells 16.8..24).
    assert LOWER_FACE == (0.15, 0.55, 0.85, 1.0)
    lat = torch.zeros(1, 2, 1, 32, 32, requires_grad=True)
    with torch.no_grad():
        lat[..., 16:24, 10:22] = 1.0  # the mouth and chin
        lat[..., 0:12, :] = -1.0  # the eyes and above
    crop = crop_lower_face(lat, _boxes(1, 2), 8)
    assert crop.shape == (1, 2, 1, 8, 8)
    assert crop.min() >= -1e-6  # nothing from the upper face
    assert crop[..., 1:7, 1:7].min() > 0.99  # the inside of the crop is the marked lower face
    crop.sum().backward()
    assert lat.grad[..., 16:24, 10:22].abs().sum() > 0
    assert lat.grad[..., 0:12, :].abs().sum() == 0
    # Move the box down and to the right: the crop follows it and no longer sees the mark.
    moved = crop_lower_face(lat.detach(), _boxes(1, 2, (0.5, 0.5, 1.0, 1.0)), 8)
    assert moved.abs().max() < 1e-6


def _aligned_batch(g, b=8, f=12, audio_dim=6):
    """Latents whose lower face holds a per-frame 'mouth' value that is a fixed function of the audio."""
    audio = torch.randn(b, f, audio_dim, generator=g)
    mouth = torch.tanh(audio[..., 0] - audio[..., 1])  # (B, F)
    lat = 0.1 * torch.randn(b, f, 4, 16, 16, generator=g)
    lat[:, :, 0, 9:14, 5:11] += mouth[..., None, None]
    return lat, _boxes(b, f), audio


def test_the_expert_learns_which_audio_belongs_to_which_mouth():
    torch.manual_seed(0)
    expert = LatentSyncExpert(latent_channels=4, audio_dim=6, span=3, crop=8, width=16, embed_dim=16)
    opt = torch.optim.Adam(expert.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    held_out = _aligned_batch(torch.Generator().manual_seed(99))
    with torch.no_grad():
        before = expert.loss(*held_out)
    for _ in range(150):
        loss, _ = expert.loss(*_aligned_batch(g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = expert.loss(*held_out)
        # The same mouths with the audio shifted by two frames: the true alignment must score better.
        lat, boxes, audio = held_out
        shifted = expert.loss(lat, boxes, torch.roll(audio, 2, dims=1))
    chance = 1 / (8 * 10)
    assert before[1] < 5 * chance
    assert after[1] > 0.5  # most chunks pick their own audio among 80
    assert after[0] < before[0] - 1.0
    assert shifted[0] > after[0] + 1.0


def test_masked_windows_do_not_count():
    expert = LatentSyncExpert(latent_channels=4, audio_dim=6, span=3, crop=8, width=16, embed_dim=16)
    lat, boxes, audio = _aligned_batch(torch.Generator().manual_seed(1), b=2)
    lat.requires_grad_(True)
    loss, _ = expert.loss(lat, boxes, audio, weight=torch.tensor([1.0, 0.0]))
    loss.backward()
    assert lat.grad[0].abs().sum() > 0
    assert lat.grad[1].abs().sum() == 0
