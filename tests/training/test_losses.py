"""Supervised InfoNCE of the emotion embedder: hand-computed values, behaviour, stability."""

import math

import pytest
import torch
import torch.nn.functional as F

from dicetalk.training.losses import info_nce


def _naive(embeddings, labels, temperature):
    """Loop-by-loop reference: mean over anchors with positives of -mean_p log softmax_{k != i}."""
    z = F.normalize(embeddings.double(), dim=-1)
    n = len(labels)
    losses = []
    for i in range(n):
        positives = [j for j in range(n) if j != i and labels[j] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n) if k != i)
        losses.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / temperature) / denom) for p in positives) / len(positives))
    return sum(losses) / len(losses)


def test_hand_computed_value():
    # Cosine similarity, so the scale of each vector does not matter.
    e = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    t = 0.5
    # Anchors 0 and 1: positive at cosine 0, the other item at cosine 1/sqrt(2); anchor 2 has no positive.
    expected = -math.log(math.exp(0.0) / (math.exp(0.0) + math.exp((1 / math.sqrt(2)) / t)))
    torch.testing.assert_close(info_nce(e, labels, t), torch.tensor(expected))


def test_matches_a_naive_loop_with_several_positives():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(9, 5, generator=g)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 4])
    for t in (0.07, 0.5, 2.0):
        torch.testing.assert_close(info_nce(e, labels, t).double(), torch.tensor(_naive(e, labels, t), dtype=torch.float64))


def test_decreases_when_positives_move_together():
    labels = torch.tensor([0, 0, 1, 1])

    def batch(angle):  # positives `angle` apart, the two classes far apart
        a = torch.tensor([[1.0, 0.0, 0.0], [math.cos(angle), math.sin(angle), 0.0]])
        b = torch.tensor([[0.0, 0.0, 1.0], [0.0, math.sin(angle), math.cos(angle)]])
        return torch.cat([a, b])

    losses = [info_nce(batch(angle), labels, 0.1).item() for angle in (1.2, 0.8, 0.4, 0.1)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    # And the gradient points that way: one step of descent lowers the loss.
    e = batch(1.0).requires_grad_(True)
    loss = info_nce(e, labels, 0.1)
    loss.backward()
    assert info_nce(e.detach() - 0.05 * e.grad, labels, 0.1) < loss


def test_anchors_without_positives_are_ignored():
    g = torch.Generator().manual_seed(1)
    e = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 7, 8])  # items 4 and 5 are anchors without positives
    loss = info_nce(e, labels, 0.2)
    # They stay in the denominators (as negatives) but contribute no term of their own: relabelling
    # them among themselves changes nothing...
    torch.testing.assert_close(info_nce(e, torch.tensor([0, 0, 1, 1, 5, 9]), 0.2), loss)
    # ...the mean is over the four anchors that have a positive...
    z = F.normalize(e, dim=-1)
    logits = z @ z.t() / 0.2
    logits.fill_diagonal_(float("-inf"))
    log_prob = torch.log_softmax(logits, dim=1)
    expected = -(log_prob[0, 1] + log_prob[1, 0] + log_prob[2, 3] + log_prob[3, 2]) / 4
    torch.testing.assert_close(loss, expected)
    # ...and a batch with no positive pair at all gives zero, with a usable gradient.
    alone = e.clone().requires_grad_(True)
    zero = info_nce(alone, torch.arange(6), 0.2)
    assert zero.item() == 0.0
    zero.backward()
    assert torch.count_nonzero(alone.grad) == 0


def test_numerically_stable():
    g = torch.Generator().manual_seed(2)
    e = torch.randn(8, 16, generator=g)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    tiny_t = info_nce(e.clone().requires_grad_(True), labels, 1e-3)
    assert torch.isfinite(tiny_t)
    e_half = e.half().requires_grad_(True)
    loss = info_nce(e_half, labels, 0.05)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(e_half.grad).all()
    torch.testing.assert_close(loss, info_nce(e, labels, 0.05), atol=1e-2, rtol=1e-2)
    # Identical positives and a vanishing temperature: the loss tends to log(#positives) = 0, not nan.
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert info_nce(same, labels[:4], 1e-4).item() == pytest.approx(0.0, abs=1e-6)


def test_rejects_bad_arguments():
    e = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(e, torch.zeros(4, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match="labels"):
        info_nce(e, torch.zeros(3, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="embeddings"):
        info_nce(e[0], torch.zeros(3, dtype=torch.long), 0.1)


def test_lower_face_weights_cover_the_lower_face_box():
    from dicetalk.training.losses import LOWER_FACE, lower_face_weights

    whole = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])  # the face fills the frame
    assert torch.equal(lower_face_weights(whole, 16, 16, 1.0), torch.ones(1, 1, 1, 16, 16))
    w = lower_face_weights(whole, 16, 16, 5.0)[0, 0, 0]
    fx0, fy0, fx1, fy1 = LOWER_FACE
    assert float((w - 1).sum()) == pytest.approx(4.0 * (fx1 - fx0) * (fy1 - fy0) * 256, rel=1e-5)  # the box's area, in cells
    assert float(w.max()) == pytest.approx(5.0) and float(w.min()) == 1.0
    assert torch.all(w[: int(fy0 * 16)] == 1.0)  # eyes and brows keep the plain weight

    # The map follows the face: a face box a quarter of the frame to the right moves it 4 cells.
    small = torch.tensor([[[0.0, 0.25, 0.5, 0.75], [0.25, 0.25, 0.75, 0.75]]])
    maps = lower_face_weights(small, 16, 16, 3.0)[0, :, 0]
    assert torch.allclose(maps[1], torch.roll(maps[0], 4, dims=1), atol=1e-5)
    assert not torch.equal(maps[0], maps[1])
