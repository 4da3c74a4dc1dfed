"""A degenerate model, one predicted tag vector for every song (an under-trained or collapsed run), goes through
every stage that reads predictions: each finishes, writes its files and says the songs are alike, on any
machine's round-off (the vectors here are bit-for-bit identical, the case where t-SNE's PCA start divides by 0)."""
import json

import numpy as np
import pandas as pd
import pytest
from songs import catalogue

from musictag.evaluation.evaluate import evaluate
from musictag.evaluation.paper.report import write_report
from musictag.evaluation.paper.statistics import Run, compare, headline_metrics
from musictag.inference.predictions import Predictions
from musictag.inference.recommendation import build_recommendations
from musictag.inference.tag_map import all_alike, build_map, embed
from musictag.params import defaults

N_SONGS, N_TAGS = 40, 16


def alike(predictions: Predictions, splits: np.ndarray) -> Predictions:
    """The same songs in `splits` with every probability row equal to one constant vector, and every embedding
    (the model's and msd-cnn's) zero."""
    constant = np.linspace(0.05, 0.9, predictions.probabilities.shape[1], dtype=np.float32)
    return Predictions(predictions.ids, splits, np.tile(constant, (len(predictions.ids), 1)),
                       np.zeros_like(predictions.embeddings), predictions.tag_names,
                       {"msd-cnn": np.zeros((len(predictions.ids), 256), np.float32)})


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """N_SONGS songs (6 valid, 2 train, the rest test) predicted alike, and their manifest."""
    root = tmp_path_factory.mktemp("degenerate")
    predictions, manifest = catalogue(root, n=N_SONGS, n_tags=N_TAGS)
    splits = np.asarray(predictions.splits).copy()
    splits[:6] = "valid"
    manifest.clips["split"] = splits
    return root, alike(predictions, splits), manifest


@pytest.mark.parametrize("implementation", ["opentsne", "sklearn"])
def test_embedding_alike_songs_gives_one_finite_point(implementation):
    points = np.tile(np.float32([0.1, 0.7, 0.3]), (30, 1))
    assert all_alike(points) and not all_alike(points + np.eye(30, 3, dtype=np.float32) * 0.01)
    coordinates, kl_divergence = embed(points, implementation, 30, "euclidean", 0, 1, 250)
    assert coordinates.shape == (30, 2) and np.isfinite(coordinates).all() and np.ptp(coordinates) == 0
    assert kl_divergence == 0


def test_the_tsne_map_of_alike_songs_is_written_and_says_so(songs):
    root, predictions, manifest = songs
    summary = build_map(predictions, manifest, root / "map", features=["tags"], embedding_components=0,
                        **defaults("tsne", n_iter=250, k=5, n_jobs=1, embed_audio_max_songs=0))
    assert summary["all_songs_alike"] is True and summary["n_songs"] == N_SONGS - 8
    assert (root / "map" / "map.png").stat().st_size > 1000
    assert "all predicted the same tags" in (root / "map" / "map.html").read_text()


def test_recommendations_among_alike_songs_are_scored(songs):
    root, predictions, manifest = songs
    metrics = build_recommendations(predictions, manifest, root / "index.npz", catalogue=None,
                                    **defaults("recommend", k=5))
    assert metrics["index"]["n_songs"] == N_SONGS
    assert all(np.isfinite(v) for v in pd.json_normalize(metrics).select_dtypes("number").iloc[0])


def test_evaluate_scores_alike_songs_at_chance(songs, tmp_path):
    root, predictions, manifest = songs
    predictions.save(tmp_path / "predictions.npz")
    manifest.write(tmp_path / "clean.csv")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    pd.DataFrame({"epoch": [0], "loss": [0.7], "val_loss": [0.7], "auc": [0.5], "val_auc": [0.5]}).to_csv(
        model_dir / "history.csv", index=False)
    summary = evaluate(tmp_path / "predictions.npz", tmp_path / "clean.csv", model_dir, tmp_path / "metrics",
                       tmp_path / "plots", top_songs=4, top_k=3, songs=[])
    assert summary["roc_auc"]["macro"] == pytest.approx(0.5) and summary["thresholds_tuned_on"] == "valid"
    assert json.loads((tmp_path / "metrics" / "evaluate.json").read_text())["auc_roc"]["macro"] == pytest.approx(0.5)
    assert (tmp_path / "plots" / "roc_pr.png").exists()


def test_paper_mode_compares_and_reports_alike_runs(songs, tmp_path):
    """Two architectures x two seeds, one of them degenerate in every run (identical scores, so the
    Welch test and its interval have no spread), the other informative."""
    _, predictions, manifest = songs
    test = predictions.subset("test")
    clips = manifest.clips.set_index("id").loc[test.ids].reset_index()
    y = manifest.targets[[list(manifest.clips["id"]).index(i) for i in test.ids]].astype(int)
    rng = np.random.default_rng(0)
    timing = pd.DataFrame({"epoch": [0], "train_time_s": [10.0], "epoch_time_s": [11.0], "examples_per_s": [5.0]})
    history = pd.DataFrame({"epoch": [0], "loss": [0.7], "val_loss": [0.7], "val_auc": [0.5]})
    config = {"train": {"epochs": 1, "batch_size": 16, "learning_rate": 0.001}}
    runs = [Run("flat", seed, y, test.probabilities.astype(np.float64), clips, list(test.tag_names), timing, history,
                config) for seed in (1, 2)]
    runs += [Run("good", seed, y, np.clip(0.6 * y + 0.4 * rng.random(y.shape), 0, 1), clips, list(test.tag_names),
                 timing, history, config) for seed in (1, 2)]
    paper = defaults("paper")
    comparison = compare(runs, {}, level=paper["level"], n_bootstrap=50, seed=0)
    flat = comparison["architectures"]["flat"]
    assert flat["headline"]["roc_auc_macro"]["mean"] == pytest.approx(0.5) and flat["degenerate_runs"] == [1, 2]
    assert comparison["architectures"]["good"]["degenerate_runs"] == []
    headline = headline_metrics(comparison)
    assert headline["flat"]["degenerate_runs"] == 2 and json.dumps(headline, allow_nan=False)
    settings = {"dataset": "embedded", "training clips": 100}
    write_report(comparison, runs, settings, tmp_path / "report.html", defaults("tsne", n_iter=250, n_jobs=1),
                 top_songs=3, top_k=3, recipe="converged")
    page = (tmp_path / "report.html").read_text()
    assert "flat predicts the same tags for every test song in seeds 1, 2" in page
