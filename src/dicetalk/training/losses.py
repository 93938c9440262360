"""Losses that are not a method of the module they train.

:func:`info_nce` is the disentangled emotion embedder's objective (paper Sec. 3.1): a supervised
InfoNCE on cosine similarity. Priors of clips showing the same identity with the same emotion are
positives; for data without emotion labels (HDTF-style), clips cut from the same video are. The
caller encodes either rule in one integer label per embedding.

:func:`lower_face_weights` weights the denoising loss towards the mouth: lip-sync lives in a
small part of the frame (a fifth of a portrait's latent cells), so an unweighted loss spends most of
the model on the still parts of the face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.sync_expert import LOWER_FACE, lower_face_box  # noqa: F401  (LOWER_FACE re-exported)


def info_nce(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised InfoNCE over a batch, a scalar.

    With ``z_i = e_i / ||e_i||`` and ``l_ij = z_i . z_j / temperature``, every anchor ``i`` that has
    at least one positive (another item with its label) contributes

        ``-1/|P(i)| * sum_{p in P(i)} log( exp(l_ip) / sum_{k != i} exp(l_ik) )``

    (the "outside" form of Khosla et al.'s supervised contrastive loss, which for a single positive
    per anchor is plain InfoNCE). Self-pairs never appear, neither as positive nor in the
    denominator; anchors without a positive are left out of the mean. Computed in float32 with a
    log-sum-exp, so small temperatures and half-precision inputs are safe. A batch without any
    positive pair gives zero (still connected to the graph, so ``backward`` works).

    Args:
        embeddings: (N, d) embeddings (the emotion priors or their means).
        labels: (N,) integer labels; equal labels mark positives.
        temperature: softmax temperature, > 0.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (N, d), got {tuple(embeddings.shape)}")
    if labels.shape != embeddings.shape[:1]:
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = embeddings.shape[0]
    z = F.normalize(embeddings.float(), dim=-1)
    logits = z @ z.t() / temperature
    self_pair = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_pair, float("-inf"))
    positives = (labels[:, None] == labels[None, :]) & ~self_pair
    counts = positives.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return embeddings.sum() * 0.0
    # log_softmax subtracts the row maximum inside its log-sum-exp; the -inf diagonal drops out.
    log_prob = torch.log_softmax(logits[anchors], dim=1)
    # where(), not multiply: the diagonal holds -inf and 0 * -inf is nan.
    positive_log_prob = torch.where(positives[anchors], log_prob, torch.zeros_like(log_prob)).sum(1)
    return -(positive_log_prob / counts[anchors]).mean()




def _coverage(lo: torch.Tensor, hi: torch.Tensor, cells: int) -> torch.Tensor:
    """(..., cells): the share of each of ``cells`` equal bins of [0, 1] that [lo, hi] covers."""
    edges = torch.arange(cells + 1, dtype=lo.dtype, device=lo.device) / cells
    left, right = edges[:-1], edges[1:]
    overlap = torch.minimum(hi[..., None], right) - torch.maximum(lo[..., None], left)
    return overlap.clamp(min=0) * cells


def lower_face_weights(face_boxes: torch.Tensor, height: int, width: int, weight: float) -> torch.Tensor:
    """Per-cell loss weights (B, F, 1, height, width): 1, and ``weight`` on the lower face.

    ``face_boxes`` (B, F, 4) are each frame's face box (x0 y0 x1 y1, fractions of the frame). A cell
    the lower-face box covers in part gets a weight in between (so the map follows the head
    smoothly). ``weight`` 1 gives the plain, unweighted loss.
    """
    left, top, right, bottom = lower_face_box(face_boxes)
    cover_x = _coverage(left, right, width)  # (B, F, width)
    cover_y = _coverage(top, bottom, height)  # (B, F, height)
    cover = cover_y[..., :, None] * cover_x[..., None, :]  # (B, F, height, width)
    return (1.0 + (weight - 1.0) * cover)[:, :, None]
