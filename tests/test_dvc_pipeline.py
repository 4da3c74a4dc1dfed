"""Real DVC in a temporary git repo: the dataset stage runs, caches, and reruns only when it should."""
import json

import pytest
from conftest import SOUNDFONT
from dvc_repo import DvcRepo

UP_TO_DATE = "Data and pipelines are up to date."


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = DvcRepo(tmp_path_factory.mktemp("dvc"))
    repo.set_param("data.embedded.n_clips", 5)
    repo.set_param("data.embedded.workers", 2)
    repo.set_param("data.embedded.soundfonts", [SOUNDFONT])
    return repo


def test_dataset_stage_runs_then_is_up_to_date(repo):
    out = repo.dvc("repro", "dataset")
    assert "Running stage 'dataset'" in out
    metrics = json.loads((repo.path / "metrics" / "dataset_details.json").read_text())
    assert metrics["n_clips"] == 5 and metrics["source"] == "embedded"
    assert json.loads((repo.path / "metrics" / "dataset.json").read_text()) == {"n_clips": 5, "n_tags": 45}
    assert abs(metrics["audio"]["min_duration_s"] - 29.12) <= 0.01
    assert abs(metrics["audio"]["max_duration_s"] - 29.12) <= 0.01
    assert len(list((repo.path / "data" / "corpus").glob("*.flac"))) == 5
    assert UP_TO_DATE in repo.dvc("status", "dataset")
    lock = (repo.path / "dvc.lock").read_text()
    assert "data/manifest.csv" in lock and "n_clips: 5" in lock


def test_unrelated_edits_do_not_rerun_it(repo):
    (repo.path / "README.md").write_text("edited\n")
    repo.set_param("unrelated.knob", 3)
    repo.set_param("data.embedded.workers", 1)  # how fast, not what: no rerun
    assert UP_TO_DATE in repo.dvc("status", "dataset")
    assert "Running stage" not in repo.dvc("repro", "dataset")


def test_changing_corpus_size_reruns_it(repo):
    repo.set_param("data.embedded.n_clips", 6)
    assert "data.embedded.n_clips" in repo.dvc("status", "dataset")
    assert "Running stage 'dataset'" in repo.dvc("repro", "dataset")
    assert json.loads((repo.path / "metrics" / "dataset.json").read_text())["n_clips"] == 6
    assert UP_TO_DATE in repo.dvc("status", "dataset")
