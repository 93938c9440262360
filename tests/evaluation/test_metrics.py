"""Fréchet distances, clip-level features, clustering strength and pair separation."""

import numpy as np
import pytest

from dicetalk.evaluation.metrics import (
    clustering_strength,
    frechet_distance,
    frechet_from_stats,
    same_vs_different,
    segment_features,
)


def test_frechet_matches_the_closed_form_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_from_stats(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_of_rotated_covariances_uses_the_matrix_square_root():
    # S1 = R diag(4, 1) R^T and S2 = R diag(1, 9) R^T commute: Tr(S1 + S2 - 2 (S1 S2)^1/2) = (2-1)^2 + (1-3)^2.
    a = 0.3
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    s1, s2 = r @ np.diag([4.0, 1.0]) @ r.T, r @ np.diag([1.0, 9.0]) @ r.T
    assert frechet_from_stats(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(1.0 + 4.0, rel=1e-9)


def test_frechet_is_zero_for_identical_sets_and_grows_with_a_shift():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)


def test_frechet_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(20000, 2))
    y = rng.normal(1.0, 2.0, size=(20000, 2))
    assert frechet_distance(x, y) == pytest.approx(2 * 1.0 + 2 * (2.0 - 1.0) ** 2, rel=0.05)


def test_frechet_rejects_too_few_samples():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_segment_features_are_mean_and_motion_of_16_frame_windows():
    f = np.arange(40, dtype=float)[:, None] * np.array([[1.0, 0.0]])  # feature 0 rises by 1 per frame
    seg = segment_features(f)
    assert seg.shape == (4, 4)  # starts 0, 8, 16, 24
    np.testing.assert_allclose(seg[0], [7.5, 0.0, 1.0, 0.0])
    assert segment_features(f[:5]).shape == (1, 4)  # short clip: one segment of all its frames


def test_clustering_strength_matches_a_hand_computed_case():
    emb = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
    labels = np.array([0, 0, 1, 1])
    result = clustering_strength(emb, labels)
    # centroids (1, 0) and (10, 2); distances to them 1, 1 and 2, 2
    assert result["d_inter"] == pytest.approx(np.sqrt(85.0))
    assert result["d_intra"] == pytest.approx(1.5)
    assert result["strength"] == pytest.approx(np.sqrt(85.0) / 1.5)
    assert result["per_class_intra"] == pytest.approx([1.0, 2.0])


def test_clustering_strength_weighs_classes_equally():
    emb = np.array([[0.0], [2.0], [0.0], [2.0], [10.0], [14.0]])
    labels = np.array([0, 0, 0, 0, 1, 1])  # intra 1 (4 samples) and 2 (2 samples)
    assert clustering_strength(emb, labels)["d_intra"] == pytest.approx(1.5)


def test_same_vs_different_is_one_for_separated_clusters_and_half_for_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    labels = np.repeat(np.arange(3), 20)
    emb = centres[labels] + rng.normal(size=(60, 16)) * 0.1
    groups = np.arange(60) // 5  # four "clips" per label
    assert same_vs_different(emb, labels, groups)["triplet"] == pytest.approx(1.0)
    noise = same_vs_different(rng.normal(size=(60, 16)), labels, groups)
    assert 0.35 < noise["triplet"] < 0.65 and 0.35 < noise["pairs"] < 0.65
