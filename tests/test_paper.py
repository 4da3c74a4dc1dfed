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
from dvc_repo import build_shards_repo

from musictag.datasets.categories import tag_categories
from musictag.errors import MusictagError
from musictag.evaluation.paper.figures import spread_labels
from musictag.evaluation.paper.report import p_value
from musictag.evaluation.paper.runs import ACCURACY_PREDICTIONS, PREDICTIONS, planned_epochs, schedule
from musictag.evaluation.paper.statistics import interval, paired_bootstrap, rank_auc
from musictag.inference.predictions import Predictions
from musictag.inference.tag_map import all_alike
from musictag.model.training import stalled
from musictag.params import defaults


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = build_shards_repo(tmp_path_factory.mktemp("paper"), epochs=1)
    repo.set_param("paper.max_epochs", 1)
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
    assert set(paper) == {"k2c1", "k1c2", "ordering", "tests", "seed_claims_hold"}
    for entry in (paper["k2c1"], paper["k1c2"]):
        assert entry["seeds"] == 2 and entry["epochs_mean"] == 1 and entry["runs_at_cap"] == 2
        assert 0 < entry["roc_auc_macro_low"] <= entry["roc_auc_macro"] <= entry["roc_auc_macro_high"] < 1
        assert entry["epoch_time_s"] > 0 and "epoch_time_s_ci95" in entry
        assert isinstance(entry["criterion_passed"], bool) and entry["criterion_failing_tags"] >= 0
    assert set(paper["tests"]) == {"k2c1-k1c2"} and 0 < paper["tests"]["k2c1-k1c2"]["bootstrap_p"] <= 1
    claims = paper["seed_claims_hold"]  # k2c2 not run: only the seed's k1c2 > k2c1 is checked
    assert isinstance(claims["ordering"], bool) and "k2c2_best_ap_on_most_tags" not in claims
    run_metrics = json.loads((repo.path / "metrics" / "paper" / "runs" / "k1c2-seed2.json").read_text())
    assert run_metrics["epochs_run"] == 1 and run_metrics["stopped"] == "at the cap"
    assert run_metrics["epoch_time_s"] >= run_metrics["train_time_s"] > 0 and run_metrics["examples_per_s"] > 0
    timing = pd.read_csv(repo.path / "data" / "paper" / "runs" / "k1c2-seed2" / "timing.csv")
    assert {"train_time_s", "epoch_time_s", "examples_per_s"} <= set(timing.columns) and len(timing) == 1
    history = pd.read_csv(repo.path / "data" / "paper" / "runs" / "k1c2-seed2" / "model" / "history.csv")
    assert "train_time_s" not in history  # the model folder reproduces byte for byte: no wall-clock time
    report = (repo.path / "metrics" / "paper" / "report.html").read_text()
    for heading in ("class=\"banner\"", "Stopped at the cap", "Settings", "headline numbers", "Figure 4.2",
                    "Figure 4.3", "Tables 4.1 and 4.2", "majority class", "Figure 4.4", "Figure 4.5", "Figure 4.6",
                    "Figure 4.7", "Figure 4.8", "Welch t-test", "paired bootstrap", "Table 4.3", "727",
                    "Choi et al.", "k2c1 - k1c2"):
        assert heading in report, heading
    assert "**" not in report and "0.000999" not in report
    chosen = re.search(r"From ([a-z0-9]+-seed\d)", report).group(1)
    predictions = Predictions.load(repo.path / "data" / "paper" / "runs" / chosen / "predictions.npz").subset("test")
    mapped = not all_alike(predictions.probabilities)  # a tiny run may answer alike for every song: said, not drawn
    assert ("Figure 4.12" in report and "Table 4.4" in report) if mapped else "a degenerate model" in report
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]*)"', report)
    assert len(images) == 7 + 2 * mapped  # figs. 4.2-4.6, one per architecture (4.7-4.8), the map and its close-up
    assert all(base64.b64decode(i).startswith(b"\x89PNG") and len(i) > 5000 for i in images)
    assert "src=\"http" not in report  # self-contained


def test_the_report_renders_in_headless_chromium(repo, browser):
    browser.get((repo.path / "metrics" / "paper" / "report.html").as_uri())
    assert browser.find_element("tag name", "h1").text.startswith("Paper mode")
    assert browser.find_element("class name", "banner").is_displayed()
    assert len(browser.find_elements("tag name", "table")) >= 6
    images = browser.find_elements("tag name", "img")
    assert len(images) >= 7  # figs. 4.2-4.6, one per architecture (4.7-4.8), and the maps where drawn
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
    repo.set_param("paper.max_epochs", 2)
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
    from musictag.evaluation.paper.statistics import Run, compare

    rng = np.random.default_rng(3)
    y = (rng.random((60, 3)) < 0.4).astype(int)
    clips = pd.DataFrame({"id": [f"c{i}" for i in range(60)], "artist": ["a"] * 60, "title": ["t"] * 60})
    timing = pd.DataFrame({"train_time_s": [10.0], "examples_per_s": [5.0]})
    history = pd.DataFrame({"epoch": [0], "loss": [0.5], "val_auc": [0.7]})
    runs = [Run(model, seed, y, np.clip(y * strength + rng.random(y.shape), 0, 2) / 2, clips, ["x", "y", "z"],
                timing, history, {}) for model, strength in (("a", 0.6), ("b", 0.1)) for seed in (1, 2, 3)]
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


def test_bounded_intervals_stay_inside_0_1_and_are_the_logit_t_interval():
    level = defaults("paper")["level"]
    near_one = [0.97, 0.999, 0.93]
    value = interval(near_one, level, bounded=True)
    plain_high = value["mean"] + value["ci"]
    assert plain_high > 1 and 0 < value["low"] < value["mean"] < value["high"] < 1  # the plain t interval leaves it
    logits = np.log(np.array(near_one) / (1 - np.array(near_one)))
    t = stats.t.ppf((1 + level) / 2, 2) * logits.std(ddof=1) / np.sqrt(3)
    assert value["high"] == pytest.approx(1 / (1 + np.exp(-(logits.mean() + t))))
    assert interval([1.0, 1.0, 1.0], level, bounded=True)["low"] == pytest.approx(1.0)  # no spread: no width
    assert interval([0.2, 0.4], level)["low"] == pytest.approx(0.3 - interval([0.2, 0.4], level)["ci"])
    assert interval([0.5], level, bounded=True)["low"] is None


def test_recipes_schedule_each_run():
    assert schedule("converged", "k2c2", 30, 3)[0].epochs == 30 and schedule("converged", "k2c2", 30, 3)[0].patience == 3
    seed = schedule("seed", "k1c2", 30, 3)
    assert [(p.epochs, p.patience, p.predictions) for p in seed] == [(30, 0, ACCURACY_PREDICTIONS), (89, 0, PREDICTIONS)]
    assert planned_epochs("seed", "k2c1", 5) == 150
    with pytest.raises(MusictagError, match="early_stopping_patience"):
        schedule("converged", "k2c1", 30, 0)
    with pytest.raises(MusictagError, match="trained no crnn"):
        schedule("seed", "crnn", 30, 3)


def test_a_run_has_stalled_when_its_best_epoch_is_patience_epochs_old():
    assert not stalled([0.6, 0.7, 0.65, 0.66], 3)
    assert stalled([0.6, 0.7, 0.65, 0.66, 0.7], 3)  # equal to the best is no improvement
    assert not stalled([0.6, 0.7, 0.65, 0.66, 0.71], 3) and not stalled([0.5] * 9, 0)


def test_p_values_print_as_a_reader_wants():
    assert p_value(1 / 1001, floor=1 / 1001).startswith("≤ 0.001")
    assert p_value(0.0004) == "< 0.001" and p_value(0.04321) == "0.0432" and p_value(None).startswith("n/a")


def test_map_labels_keep_their_distance():
    points = np.random.default_rng(0).random((200, 2))
    chosen = spread_labels(points, range(200), 30, 0.15)
    assert 5 < len(chosen) <= 30
    assert min(np.hypot(*(points[a] - points[b])) for a in chosen for b in chosen if a < b) >= 0.15


def test_the_expected_cost_follows_the_measured_speed_and_the_recipe():
    from musictag.evaluation.paper.runs import describe_cost, expected_seconds

    measured = {"k2c1": {"examples_per_s": 100.0, "epoch_time_s": 22.0, "train_time_s": 20.0, "hardware": "box"}}
    cost = expected_seconds(measured, ["k2c1", "k2c2"], 3, "converged", 30, 3, train_examples=2000)
    assert cost["k2c1"]["epoch_s"] == pytest.approx(22.0) and cost["k2c1"]["epochs"] == (4, 30)
    assert cost["k2c1"]["low_s"] == pytest.approx(3 * 4 * 22.0) and cost["k2c1"]["high_s"] == pytest.approx(3 * 30 * 22.0)
    assert cost["k2c2"] == {"unmeasured": True}
    assert expected_seconds(measured, ["k2c1"], 3, "seed", 30, 3, 2000)["k2c1"]["epochs"] == (150, 150)
    text = describe_cost(cost)
    assert text.startswith("expected wall time: 4 min to 33 min (speeds measured on box)") and "k2c2: no measured" in text
