"""Recommendation index: exact neighbours, IVF recall, playlists, retrieval metrics, save/load, faults."""
import numpy as np
import pandas as pd
import pytest

from musictag.datasets.manifest import Manifest
from musictag.errors import MusictagError
from songs import synthetic_probabilities

from musictag.inference.recommendation import RecommendIndex, build_recommendations, retrieval_metrics
from musictag.params import defaults


@pytest.fixture(scope="module")
def Predictions():
    from musictag.inference.predictions import Predictions

    return Predictions


def make_predictions(Predictions, n=200, n_tags=12, dim=6, seed=0, splits=None):
    rng = np.random.default_rng(seed)
    ids = np.array([f"song{i:04d}" for i in range(n)])
    splits = np.array(splits if splits is not None else ["test"] * n)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    reference = np.abs(rng.normal(size=(n, 2 * dim))).astype(np.float32)  # ELU outputs, as msd-cnn's
    return Predictions(ids, splits, synthetic_probabilities(n, n_tags, seed=seed), embeddings,
                       [f"tag{t}" for t in range(n_tags)], {"msd-cnn": reference})


def build(predictions, **options):
    """RecommendIndex.build with params.yaml's recommend section, but for `options`."""
    params = defaults("recommend", **options)
    return RecommendIndex.build(predictions, params["features"], params["embedding_components"],
                                params["exact_max_songs"], params["hnsw_m"],
                                params["ef_search"])


def metrics_of(predictions, manifest, **options):
    """retrieval_metrics with params.yaml's recommend section, but for `options` and the tag space (the hand
    examples are built in it)."""
    params = defaults("recommend", **{"features": ["tags"], **options})
    return retrieval_metrics(predictions, manifest, params["k"], params["split"], params["seed"], params["features"],
                             params["embedding_components"])


def unit(matrix):
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def brute_force(predictions, features):
    """Cosine distances between all songs, written independently of the library: one minus the mean over
    the blocks of each block's cosine."""
    blocks = {"tags": predictions.probabilities, "embeddings": predictions.embeddings,
              **predictions.reference_embeddings}
    return 1 - np.mean([unit(blocks[name]) @ unit(blocks[name]).T for name in features], axis=0)


@pytest.mark.parametrize("features", [["tags"], ["embeddings"], ["tags", "embeddings"], ["tags", "msd-cnn"],
                                      ["msd-cnn", "embeddings", "tags"]])
def test_similar_is_the_exact_brute_force_answer(Predictions, features):
    predictions = make_predictions(Predictions)
    index = RecommendIndex.brute_force(predictions, features)
    distances = brute_force(predictions, features)
    for row in (0, 17, 199):
        query = predictions.ids[row]
        found = index.similar(query, k=10)
        ids = [song_id for song_id, _ in found]
        assert len(ids) == 10 and len(set(ids)) == 10 and query not in ids
        got = np.array([d for _, d in found])
        assert np.all(np.diff(got) >= 0)
        order = np.argsort(np.where(np.arange(len(distances)) == row, np.inf, distances[row]), kind="stable")[:10]
        assert ids == list(predictions.ids[order])
        np.testing.assert_allclose(got, distances[row, order], atol=1e-5)


def test_a_wide_block_is_searched_in_its_leading_singular_directions(Predictions, tmp_path):
    predictions = make_predictions(Predictions, n=150)
    rng = np.random.default_rng(7)
    rank_8 = np.abs(rng.normal(size=(150, 8))) @ np.abs(rng.normal(size=(8, 64)))  # 64 dims, rank 8
    predictions.reference_embeddings["msd-cnn"] = rank_8.astype(np.float32)
    features = ["tags", "msd-cnn"]
    index = RecommendIndex.brute_force(predictions, features, embedding_components=8)
    assert index.projections["msd-cnn"].shape == (8, 64) and index.vectors.shape == (150, 12 + 8)
    whole = RecommendIndex.brute_force(predictions, features)  # a rank-8 block loses nothing in 8 directions
    assert not whole.projections and whole.vectors.shape == (150, 12 + 64)
    for row in (0, 77):
        assert [i for i, _ in index.similar(predictions.ids[row], 10)] == [i for i, _ in whole.similar(predictions.ids[row], 10)]
    np.testing.assert_allclose(index.neighbours(10)[1], whole.neighbours(10)[1], atol=1e-5)
    index.save(tmp_path / "index.npz")
    loaded = RecommendIndex.load(tmp_path / "index.npz")
    np.testing.assert_array_equal(loaded.projections["msd-cnn"], index.projections["msd-cnn"])
    outside = predictions.take(np.array([3, 9]))  # songs given as outputs, as an audio query is: projected alike
    np.testing.assert_allclose(loaded.vectors_of(outside), index.vectors[[3, 9]], atol=1e-6)
    again = RecommendIndex.brute_force(predictions, features, embedding_components=8)
    np.testing.assert_array_equal(again.projections["msd-cnn"], index.projections["msd-cnn"])  # signs fixed


def test_k_larger_than_the_catalogue_gives_every_other_song(Predictions):
    predictions = make_predictions(Predictions, n=6)
    found = RecommendIndex.brute_force(predictions, ["tags"]).similar("song0003", k=50)
    assert sorted(i for i, _ in found) == ["song0000", "song0001", "song0002", "song0004", "song0005"]


def test_batch_neighbours_agree_with_single_queries(Predictions):
    predictions = make_predictions(Predictions, n=120)
    index = RecommendIndex.brute_force(predictions, ["tags", "embeddings"])
    rows, distances = index.neighbours(k=7, block_songs=16)  # several blocks
    for row in (0, 5, 119):
        found = index.similar(index.ids[row], k=7)
        assert list(index.ids[rows[row]]) == [i for i, _ in found]
        np.testing.assert_allclose(distances[row], [d for _, d in found], atol=1e-6)


def test_the_hnsw_graph_keeps_high_recall_and_comes_out_the_same_every_build(Predictions, tmp_path):
    predictions = make_predictions(Predictions, n=3000, n_tags=50, seed=3)
    exact = RecommendIndex.brute_force(predictions, ["tags"])
    graph = build(predictions, features=["tags"], exact_max_songs=0, hnsw_m=8, ef_search=16)
    assert not graph.exact and graph.ef_search == 16
    queries = predictions.ids[::97]

    def recall(index):
        return np.mean([len({i for i, _ in index.similar(q, 10)} & {i for i, _ in exact.similar(q, 10)}) / 10
                        for q in queries])

    few = recall(graph)
    graph.ef_search = 200
    assert recall(graph) >= max(few, 0.98)  # more candidates, higher recall
    for query in queries[:5]:  # approximate, but still k distinct other songs, nearest first
        found = graph.similar(query, 10)
        assert len({i for i, _ in found}) == 10 and query not in {i for i, _ in found}
        assert all(a[1] <= b[1] for a, b in zip(found, found[1:]))
    graph.save(tmp_path / "a.npz")
    build(predictions, features=["tags"], exact_max_songs=0, hnsw_m=8, ef_search=200).save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()  # a DVC output: reproducible
    walk = graph.playlist(queries[0], length=60)  # played songs left out of each approximate search
    assert len(set(walk)) == 60 and walk[0] == queries[0]


@pytest.mark.parametrize("exact_max_songs", [20000, 0])
def test_saved_index_loads_back_with_the_same_answers(Predictions, tmp_path, exact_max_songs):
    predictions = make_predictions(Predictions, n=300)
    index = build(predictions, features=["tags", "msd-cnn"], exact_max_songs=exact_max_songs, ef_search=40)
    index.save(tmp_path / "index" / "index.npz")
    loaded = RecommendIndex.load(tmp_path / "index" / "index.npz")
    assert loaded.features == ["tags", "msd-cnn"] and loaded.ef_search == index.ef_search and len(loaded) == 300
    for query in ("song0000", "song0150"):
        assert loaded.similar(query, 8) == index.similar(query, 8)
    assert list(tmp_path.joinpath("index").iterdir()) == [tmp_path / "index" / "index.npz"]  # no temp file left


def test_bad_index_files_and_params_are_one_line_errors(Predictions, tmp_path):
    with pytest.raises(MusictagError, match="not found"):
        RecommendIndex.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MusictagError, match="junk.npz"):
        RecommendIndex.load(tmp_path / "junk.npz")
    predictions = make_predictions(Predictions, n=10)
    with pytest.raises(MusictagError, match="k must be"):
        RecommendIndex.brute_force(predictions, ["tags"]).similar("song0001", 0)
    with pytest.raises(MusictagError, match="recommend.features: the songs have no msd-crnn embeddings"):
        RecommendIndex.brute_force(predictions, ["tags", "msd-crnn"])
    with pytest.raises(MusictagError, match="recommend.features: a list of blocks"):
        RecommendIndex.brute_force(predictions, "tags")


def test_unknown_song_id_is_named(Predictions):
    index = RecommendIndex.brute_force(make_predictions(Predictions, n=20), ["tags"])
    for call in (lambda: index.similar("no-such-song", 5), lambda: index.playlist("no-such-song", 5),
                 lambda: index.distance("song0001", "no-such-song")):
        with pytest.raises(MusictagError, match="unknown song id 'no-such-song'"):
            call()


@pytest.mark.parametrize("lookahead", [False, True])
def test_playlist_is_a_smooth_walk_without_repeats(Predictions, lookahead):
    predictions = make_predictions(Predictions, n=500, n_tags=50, seed=4)
    index = RecommendIndex.brute_force(predictions, ["tags"])
    distances = brute_force(predictions, ["tags"])
    rng = np.random.default_rng(0)
    random_pairs = distances[rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)].mean()
    row = {song_id: i for i, song_id in enumerate(predictions.ids)}
    for seed_id in ("song0000", "song0321"):
        playlist = index.playlist(seed_id, 25, lookahead=lookahead)
        assert playlist[0] == seed_id and len(playlist) == 25 and len(set(playlist)) == 25
        steps = [distances[row[a], row[b]] for a, b in zip(playlist, playlist[1:])]
        assert np.mean(steps) < 0.3 * random_pairs
        if not lookahead:  # greedy: each step goes to the nearest song not yet played
            for i, (a, b) in enumerate(zip(playlist, playlist[1:])):
                unplayed = [j for j in range(500) if predictions.ids[j] not in playlist[:i + 1]]
                assert distances[row[a], row[b]] <= distances[row[a], unplayed].min() + 1e-6


def test_playlist_lengths(Predictions):
    index = RecommendIndex.brute_force(make_predictions(Predictions, n=12), ["tags"])
    assert index.playlist("song0005", 1) == ["song0005"]
    everything = index.playlist("song0005", 12)
    assert sorted(everything) == sorted(index.ids.tolist())
    with pytest.raises(MusictagError, match="exceeds the 12 songs"):
        index.playlist("song0005", 13)
    with pytest.raises(MusictagError, match="positive integer"):
        index.playlist("song0005", 0)


def tiny_example(Predictions):
    """Four test songs in two tight pairs (A~B, C~D) plus a train song E identical to A.

    Ground truth: A {t0}, B {t0, t2}, C {t1}, D {t2}; artists x, x, y, z (E: x, no tags). msd-cnn's block
    repeats the tags, so that any recommend.features of tags and msd-cnn ranks alike.
    """
    ids = np.array(["A", "B", "C", "D", "E"])
    probabilities = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.1], [1.0, 0.0, 0.0]],
                             dtype=np.float32)
    predictions = Predictions(ids, np.array(["test"] * 4 + ["train"]), probabilities, np.eye(5, 3, dtype=np.float32),
                              ["t0", "t1", "t2"], {"msd-cnn": probabilities.copy()})
    clips = pd.DataFrame({"id": ids, "audio_path": [f"{i}.flac" for i in ids], "split": ["test"] * 4 + ["train"],
                          "artist": ["x", "x", "y", "z", "x"], "title": ids})
    targets = [[1, 0, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    return predictions, Manifest(clips, ["t0", "t1", "t2"], targets)


def test_retrieval_metrics_on_a_hand_computed_example(Predictions):
    predictions, manifest = tiny_example(Predictions)
    # k=1: A->B (share t0, same artist), B->A (t0, same artist), C->D (no tag, other artist), D->C (none).
    metrics = metrics_of(predictions, manifest, k=1)
    assert metrics["n_songs"] == 4 and metrics["k"] == 1
    # Jaccard: A-B 1/2, B-A 1/2, C-D 0, D-C 0.
    assert metrics["precision_at_k"] == {"shared_tag": 0.5, "same_artist": 0.5, "tag_jaccard": 0.25}
    # k=3 is every other test song, for the model and the random baseline alike:
    # shared tag A 1/3, B 2/3 (A, D), C 0, D 1/3 (B) -> 1/3; same artist A 1/3, B 1/3, C 0, D 0 -> 1/6;
    # Jaccard A (1/2 + 0 + 0)/3, B (1/2 + 0 + 1/2)/3, C 0, D (0 + 1/2 + 0)/3 -> 1/6.
    metrics = metrics_of(predictions, manifest, k=3)
    for key in ("precision_at_k", "random_precision_at_k"):
        assert metrics[key] == {"shared_tag": pytest.approx(1 / 3), "same_artist": pytest.approx(1 / 6),
                                "tag_jaccard": pytest.approx(1 / 6)}
    assert metrics["ratio_over_random"] == {key: pytest.approx(1.0) for key in ("shared_tag", "same_artist",
                                                                              "tag_jaccard")}
    assert metrics_of(predictions, manifest, k=99)["k"] == 3  # capped at the other test songs
    assert metrics["same_artist"] == {"precision_at_5": None, "precision_at_5_ci95": None,  # 4 songs: no precision@5
                                      "precision_at_10": None, "precision_at_10_ci95": None}


def test_same_artist_is_not_available_when_no_artist_is_known(Predictions):
    predictions, manifest = tiny_example(Predictions)
    manifest.clips["artist"] = ""  # as MSD without its track metadata
    metrics = metrics_of(predictions, manifest, k=1)
    assert metrics["precision_at_k"]["same_artist"] is None and metrics["ratio_over_random"]["same_artist"] is None
    assert metrics["precision_at_k"]["shared_tag"] == 0.5  # the rest as before
    manifest.clips.loc[manifest.clips["id"] == "C", "artist"] = "y"  # one known: scored over the known only
    assert metrics_of(predictions, manifest, k=1)["precision_at_k"]["same_artist"] == 0.0


def test_retrieval_metrics_beat_random_on_tag_structured_songs(Predictions):
    predictions = make_predictions(Predictions, n=400, n_tags=50, seed=5)
    clips = pd.DataFrame({"id": predictions.ids, "audio_path": "x.flac", "split": "test",
                          "artist": [f"artist{np.argmax(p)}" for p in predictions.probabilities],
                          "title": predictions.ids})
    manifest = Manifest(clips, predictions.tag_names, predictions.probabilities > 0.8)
    metrics = metrics_of(predictions, manifest, k=10, seed=3)
    assert metrics == metrics_of(predictions, manifest, k=10, seed=3)  # seeded baseline
    assert metrics["precision_at_k"]["shared_tag"] > metrics["random_precision_at_k"]["shared_tag"]
    assert metrics["ratio_over_random"]["tag_jaccard"] > 2 and metrics["ratio_over_random"]["same_artist"] > 2
    same_artist = metrics["same_artist"]  # leave-one-out precision@5 and @10 with their intervals, as the benchmark's
    chance = metrics["random_precision_at_k"]["same_artist"]
    assert same_artist["precision_at_5"] > 2 * chance and same_artist["precision_at_10"] > 2 * chance
    assert 0 < same_artist["precision_at_5_ci95"] < 0.2 and 0 < same_artist["precision_at_10_ci95"] < 0.2


def test_retrieval_metrics_faults(Predictions):
    predictions, manifest = tiny_example(Predictions)
    with pytest.raises(MusictagError, match="split 'valid' has 0"):
        metrics_of(predictions, manifest, split="valid")
    with pytest.raises(MusictagError, match="'C' is not in the manifest"):
        metrics_of(predictions, Manifest(manifest.clips.drop(index=2), manifest.tag_names,
                                         np.delete(manifest.targets, 2, axis=0)))


def test_build_recommendations_from_files(Predictions, tmp_path):
    predictions, manifest = tiny_example(Predictions)
    predictions.save(tmp_path / "predictions.npz")
    manifest.write(tmp_path / "clean.csv")
    params = defaults("recommend", k=1, features=["tags", "msd-cnn"])
    metrics = build_recommendations(tmp_path / "predictions.npz", tmp_path / "clean.csv",
                                    tmp_path / "recommend" / "index.npz", catalogue=None, **params)
    assert metrics["precision_at_k"]["shared_tag"] == 0.5
    assert metrics["index"] == {"n_songs": 5, "exact": True, "dimensions": 6}  # two blocks of three
    index = RecommendIndex.load(tmp_path / "recommend" / "index.npz")
    assert index.similar("A", 1)[0] == ("E", pytest.approx(0.0, abs=1e-6))  # the whole catalogue, train too
