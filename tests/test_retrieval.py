"""Per-query retrieval scores (musictag.evaluation.retrieval) against rankings worked out by hand."""
import numpy as np
import pytest

from musictag.errors import MusictagError
from musictag.evaluation.retrieval import chance_scores, paired_bootstrap, per_query_scores, standardized


def test_scores_of_a_ranking_worked_out_by_hand():
    # Four songs on a line in 2-D (angles 0, 10, 80, 90 degrees); labels a a b a.
    angles = np.radians([0, 10, 80, 90])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    scores = per_query_scores(vectors, ["a", "a", "b", "a"], ks=(1, 2))
    # song 0 ranks 1, 2, 3 (relevant, wrong, relevant): p@1 1, p@2 1/2, AP (1/1 + 2/3) / 2
    assert scores["p@1"][0] == 1 and scores["p@2"][0] == 0.5
    assert scores["ap"][0] == pytest.approx((1 + 2 / 3) / 2)
    # song 3 ranks 2 (b), 1, 0: AP (1/2 + 2/3) / 2
    assert scores["p@1"][3] == 0 and scores["ap"][3] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # song 2 (b) has no relevant neighbour: zeros, still counted
    assert scores["p@1"][2] == 0 and scores["ap"][2] == 0


def test_a_perfect_space_and_a_constant_one():
    labels = np.repeat(["x", "y", "z"], 4)
    perfect = np.eye(3)[np.repeat([0, 1, 2], 4)] + 0.01 * np.random.default_rng(0).normal(size=(12, 3))
    assert per_query_scores(perfect, labels, ks=(3,))["p@3"].tolist() == [1.0] * 12
    constant = per_query_scores(np.ones((12, 3)), labels, ks=(3,))  # every song alike: ties by position
    assert 0 < constant["p@3"].mean() < 1


def test_standardizing_weighs_dimensions_alike():
    """Raw cosine follows the dimension with the largest spread (noise here); standardized, the label's
    small but consistent dimension counts as much, and a constant offset drops out."""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 20)
    vectors = np.stack([np.where(labels == 0, 0.1, -0.1) + 0.02 * rng.normal(size=40),  # the label, small
                        5 * rng.normal(size=40),                                          # noise, large
                        np.full(40, 50.0)], axis=1)                                       # shared by all
    raw = per_query_scores(vectors, labels, ks=(5,))["p@5"].mean()
    assert per_query_scores(standardized(vectors), labels, ks=(5,))["p@5"].mean() > raw + 0.2


def test_chance_and_the_paired_bootstrap():
    chance = chance_scores(["a", "a", "a", "b"], ks=(1,))
    assert chance["p@1"].tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0])
    a, b = np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0])
    mean, low, high = paired_bootstrap(a, b, 2000, seed=0)
    assert mean == 0.5 and 0 <= low < 0.5 < high <= 1
    assert paired_bootstrap(a, a, 100, seed=0) == (0.0, 0.0, 0.0)


def test_too_few_songs_is_one_line():
    with pytest.raises(MusictagError, match="3 songs cannot score precision@5"):
        per_query_scores(np.eye(3), ["a", "b", "c"], ks=(5,))
