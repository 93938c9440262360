"""Expression coefficients, emotion targets, intensities and identity habits."""

import itertools

import numpy as np
import pytest

from dicetalk import EMOTIONS
from dicetalk.synthetic import EMOTION_TARGETS, EXPRESSION_NAMES, emotion_expression, emotion_levels, sample_identity


def test_expression_names_are_the_documented_twelve_in_order():
    assert EXPRESSION_NAMES == (
        "brow_raise", "brow_lower", "eye_open", "lid_tension", "cheek_raise", "lip_corner_pull",
        "lip_corner_depress", "corner_asym", "lip_press", "nose_wrinkle", "jaw_drop", "lip_round",
    )  # fmt: skip


def test_emotion_targets_are_distinct_and_neutral_is_rest():
    assert set(EMOTION_TARGETS) == set(EMOTIONS)
    assert np.allclose(EMOTION_TARGETS["neutral"], 0)
    for a, b in itertools.combinations(EMOTIONS, 2):
        assert np.linalg.norm(EMOTION_TARGETS[a] - EMOTION_TARGETS[b]) > 0.7, (a, b)
    # The defining coefficients of a few emotions.
    index = {n: i for i, n in enumerate(EXPRESSION_NAMES)}
    assert EMOTION_TARGETS["happy"][index["lip_corner_pull"]] > 0.5 and EMOTION_TARGETS["happy"][index["cheek_raise"]] > 0.5
    assert EMOTION_TARGETS["contempt"].argmax() == index["corner_asym"]
    assert EMOTION_TARGETS["disgusted"].argmax() == index["nose_wrinkle"]
    assert EMOTION_TARGETS["angry"].argmax() == index["brow_lower"]


def test_levels_neutral_has_one_the_others_three():
    assert emotion_levels("neutral") == (1,)
    assert all(emotion_levels(e) == (1, 2, 3) for e in EMOTIONS if e != "neutral")


@pytest.mark.parametrize("identity_index", [None, 0, 1, 2])
def test_intensity_grows_with_level(identity_index):
    habits = None if identity_index is None else sample_identity(0, identity_index).habits
    rest = emotion_expression("neutral", 1, habits)
    for emotion in EMOTIONS:
        if emotion == "neutral":
            continue
        distances = [np.linalg.norm(emotion_expression(emotion, level, habits) - rest) for level in (1, 2, 3)]
        assert distances[0] < distances[1] < distances[2], (emotion, distances)


def test_identities_bend_the_same_emotion_differently():
    a, b = (sample_identity(0, i).habits for i in (0, 1))
    assert not np.allclose(emotion_expression("happy", 3, a), emotion_expression("happy", 3, b), atol=0.05)
    assert np.array_equal(emotion_expression("happy", 3, a), emotion_expression("happy", 3, sample_identity(0, 0).habits))
    # Still recognisably the emotion: closer to its own target than to any other.
    for emotion in EMOTIONS:
        bent = emotion_expression(emotion, 3, a) - a.offset
        nearest = min(EMOTIONS, key=lambda e: np.linalg.norm(bent - EMOTION_TARGETS[e]))
        assert nearest == emotion


def test_unknown_emotion_or_level_is_rejected():
    with pytest.raises(ValueError, match="unknown emotion"):
        emotion_expression("bored", 1)
    with pytest.raises(ValueError, match="level"):
        emotion_expression("happy", 4)
