"""Retrieval scored per query: leave-one-out nearest neighbours by cosine, judged by a shared label.

Each song queries all the others; a neighbour is relevant when it has the query's label (artist, composer,
soundtrack). Per query: precision@k for each k and average precision over the whole ranking. Scores stay
per query so that two feature spaces can be compared on the same queries (a paired bootstrap), which is
how a difference between spaces gets an interval. The real-music benchmark (benchmarks/soundtrack_retrieval.py)
scores with it; the recommend stage's same-artist precision@k is the same definition, read from its index's
blocked neighbour search (musictag.inference.recommendation.same_artist_precision), which scales to MSD.
"""
from __future__ import annotations

import numpy as np

from musictag.errors import MusictagError


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def standardized(vectors: np.ndarray) -> np.ndarray:
    """Each dimension centred and scaled to unit variance over the songs (a constant one becomes 0): cosine
    then compares songs by how they differ from the collection, not by what every song shares."""
    vectors = np.asarray(vectors, dtype=np.float64)
    spread = vectors.std(axis=0)
    return (vectors - vectors.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def per_query_scores(vectors: np.ndarray, labels, ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """{"p@k": (n,) for each k, "ap": (n,)} for `vectors` (n, d) and `labels` (n,), each song querying
    the n - 1 others by cosine similarity (ties broken by position, so every space is ranked the same way).
    A query whose label no other song has scores 0 and counts: the catalogue offered nothing relevant."""
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2 or max(ks) > n - 1:
        raise MusictagError(f"retrieval: {n} songs cannot score precision@{max(ks)} (need more than {max(ks)})")
    unit = unit_rows(vectors)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, : n - 1]  # the query itself sorts last
    relevant = labels[order] == labels[:, None]
    hits = np.cumsum(relevant, axis=1)
    scores = {f"p@{k}": hits[:, k - 1] / k for k in ks}
    ranks = np.arange(1, n)
    n_relevant = relevant.sum(axis=1)
    scores["ap"] = np.where(n_relevant > 0, (relevant * hits / ranks).sum(axis=1) / np.maximum(n_relevant, 1), 0.0)
    return scores


def chance_scores(labels, ks=(1, 5, 10)) -> dict[str, np.ndarray]:
    """The expected per-query scores of a random ranking: precision@k is the share of relevant songs
    among the others; average precision, to first order, that share too."""
    labels = np.asarray(labels)
    same = (labels[:, None] == labels[None, :]).sum(axis=1) - 1
    share = same / (len(labels) - 1)
    return {**{f"p@{k}": share for k in ks}, "ap": share}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_resamples: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(mean of a - b, low, high): the percentile interval of the mean difference over queries resampled
    with replacement, the same queries for both (a and b are per-query scores of two spaces)."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = difference[rng.integers(0, len(difference), size=(n_resamples, len(difference)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(difference.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))
