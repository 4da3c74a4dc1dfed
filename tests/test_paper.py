"""Paper mode for real: `dvc repro paper/dvc.yaml` trains an architecture x seed matrix from the main
pipeline's shards and compares it; the statistics against plain references; tag categories per dataset."""
import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from test_queued_experiments import build_shards_repo

from musictag.categories import tag_categories
from musictag.paper import paired_bootstrap, rank_auc
from musictag.params import defaults


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = build_shards_repo(tmp_path_factory.mktemp("paper"), epochs=1)
    repo.set_param("paper.epochs", 1)
    repo.set_param("paper.architectures", ["k2c1", "k1c2"])
    repo.set_param("paper.seeds", [1, 2])
    repo.set_param("paper.n_bootstrap", 200)
    repo.set_param("tsne.n_iter", 250)
    return repo


def test_the_matrix_trains_every_pair_and_the_report_compares_the_architectures(repo):
    out = repo.dvc("repro", "paper/dvc.yaml")
    for stage in ("run@k2c1-1", "run@k2c1-2", "run@k1c2-1", "run@k1c2-2", "compare"):
        assert f"Running stage 'paper/dvc.yaml:{stage}'" in out, out[-3000:]
    paper = json.loads((repo.path / "metrics" / "paper.json").read_text())
    assert set(paper) == {"k2c1", "k1c2", "ordering"}
    for entry in (paper["k2c1"], paper["k1c2"]):
        assert entry["seeds"] == 2 and 0 <= entry["roc_auc_macro"] <= 1 and entry["roc_auc_macro_ci95"] >= 0
        assert entry["epoch_time_s"] > 0 and "epoch_time_s_ci95" in entry
        assert isinstance(entry["criterion_passed"], bool) and entry["criterion_failing_tags"] >= 0
    timing = pd.read_csv(repo.path / "data" / "paper" / "runs" / "k1c2-seed2" / "timing.csv")
    assert {"train_time_s", "epoch_time_s", "examples_per_s"} <= set(timing.columns) and len(timing) == 1
    history = pd.read_csv(repo.path / "data" / "paper" / "runs" / "k1c2-seed2" / "model" / "history.csv")
    assert "train_time_s" not in history  # the model folder reproduces byte for byte: no wall-clock time
    report = (repo.path / "metrics" / "paper" / "report.html").read_text()
    for heading in ("Settings", "Figure 4.3", "Tables 4.1 and 4.2", "Figure 4.4", "Figures 4.5-4.6",
                    "Figure 4.7", "Figure 4.8", "Welch t-test", "paired bootstrap", "Table 4.3",
                    "Figures 4.10-4.12", "Table 4.4", "727", "k2c1 - k1c2"):
        assert heading in report, heading
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]*)"', report)
    assert len(images) == 4 + 2 and all(base64.b64decode(i).startswith(b"\x89PNG") and len(i) > 5000 for i in images)
    assert "src=\"http" not in report  # self-contained


def test_the_report_renders_in_headless_chromium(repo, browser):
    browser.get((repo.path / "metrics" / "paper" / "report.html").as_uri())
    assert browser.find_element("tag name", "h1").text.startswith("Paper mode")
    assert len(browser.find_elements("tag name", "table")) >= 6
    images = browser.find_elements("tag name", "img")
    assert len(images) == 4 + 2  # figs. 4.3, 4.4, 4.5-4.6, one per architecture (4.7-4.9), the map
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) > 100
               for i in images)  # every figure decoded and drawn
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_adding_a_seed_trains_only_its_runs_and_a_second_call_does_nothing(repo):
    repo.set_param("paper.seeds", [1, 2, 3])
    out = repo.dvc("repro", "paper/dvc.yaml")
    ran = sorted(line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage"))
    assert ran == ["paper/dvc.yaml:compare", "paper/dvc.yaml:run@k1c2-3", "paper/dvc.yaml:run@k2c1-3"], out[-2000:]
    assert json.loads((repo.path / "metrics" / "paper.json").read_text())["k1c2"]["seeds"] == 3
    assert "Running stage" not in repo.dvc("repro", "paper/dvc.yaml")


def test_raising_epochs_continues_a_finished_matrix_run(repo):
    repo.set_param("paper.epochs", 2)
    out = repo.dvc("repro", "-s", "paper/dvc.yaml:run@k2c1-1")
    assert "continuing its finished run after epoch 1" in out, out[-3000:]
    history = pd.read_csv(repo.path / "data" / "paper" / "runs" / "k2c1-seed1" / "model" / "history.csv")
    assert list(history["epoch"]) == [0, 1]


def test_rank_auc_is_scikit_learns_and_the_bootstrap_sees_a_real_difference():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    y[:, 3] = 0  # no positive: not evaluable
    p = np.round(0.5 * y + rng.random(y.shape), 1)  # rounded: ties
    auc = rank_auc(y, p)
    for j in range(3):
        assert auc[j] == pytest.approx(roc_auc_score(y[:, j], p[:, j]), abs=1e-12)
    assert np.isnan(auc[3])
    good = [0.8 * y + 0.5 * rng.random(y.shape) for _ in range(2)]
    noise = [rng.random(y.shape) for _ in range(2)]
    clear = paired_bootstrap(y, good, noise, n_resamples=300, seed=1)
    assert clear["difference"] > 0.3 and clear["ci_low"] > 0 and clear["p"] < 0.01
    same = paired_bootstrap(y, noise, noise, n_resamples=300, seed=1)
    assert same["difference"] == 0 and same["p"] == 1.0


def test_welch_over_seeds_is_scipys():
    from musictag.paper import Run, compare

    rng = np.random.default_rng(3)
    y = (rng.random((60, 3)) < 0.4).astype(int)
    clips = pd.DataFrame({"id": [f"c{i}" for i in range(60)], "artist": ["a"] * 60, "title": ["t"] * 60})
    timing = pd.DataFrame({"train_time_s": [10.0], "examples_per_s": [5.0]})
    runs = [Run(model, seed, y, np.clip(y * strength + rng.random(y.shape), 0, 2) / 2, clips, ["x", "y", "z"],
                timing, {}) for model, strength in (("a", 0.6), ("b", 0.1)) for seed in (1, 2, 3)]
    paper = defaults("paper")
    result = compare(runs, {"x": "genre"}, level=paper["level"], n_bootstrap=50, seed=paper["bootstrap_seed"])
    scores = {m: [roc_auc_score(r.y, r.p, average="macro") for r in runs if r.model == m] for m in "ab"}
    test = result["tests"][0]
    assert test["welch_p"] == pytest.approx(stats.ttest_ind(scores["a"], scores["b"], equal_var=False).pvalue)
    mean, half = result["architectures"]["a"]["headline"]["roc_auc_macro"]["mean"], \
        result["architectures"]["a"]["headline"]["roc_auc_macro"]["ci"]
    assert mean == pytest.approx(np.mean(scores["a"]))
    assert half == pytest.approx(stats.t.ppf((1 + paper["level"]) / 2, 2) * np.std(scores["a"], ddof=1) / np.sqrt(3))
    assert result["ordering"] == ["a", "b"]
    assert result["architectures"]["a"]["per_tag"].set_index("tag").loc["y", "category"] == "other"


def test_tag_categories_come_from_each_dataset(tmp_path):
    msd = tag_categories("msd", ["rock", "Mellow", "guitar", "80s", "made up"], {})
    assert msd == {"rock": "genre", "Mellow": "mood", "guitar": "instrument", "80s": "era", "made up": "other"}
    embedded = tag_categories("embedded", ["baroque", "jig", "violin", "minor"], {})
    assert embedded == {"baroque": "era", "jig": "dance", "violin": "instrument", "minor": "mode"}
    assert tag_categories("mtg-jamendo", ["genre---rock", "mood/theme---sad"], {}) == {
        "genre---rock": "genre", "mood/theme---sad": "mood/theme"}
    csv_path = tmp_path / "tags.csv"
    csv_path.write_text("path,tags,categories\na.wav,rock|happy,genre|mood\nb.wav,rock,genre\nc.wav,jazz,\n")
    assert tag_categories("folder", ["happy", "jazz", "rock"], {"tags_csv": str(csv_path)}) == {
        "happy": "mood", "jazz": "other", "rock": "genre"}
    csv_path.write_text("path,tags,categories\na.wav,rock,genre\nb.wav,rock,mood\n")
    from musictag.errors import MusictagError
    with pytest.raises(MusictagError, match="line 3 puts tag 'rock' in category 'mood'"):
        tag_categories("folder", ["rock"], {"tags_csv": str(csv_path)})
