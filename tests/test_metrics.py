"""Evaluation metrics against scikit-learn, threshold tuning, Student-t intervals over runs, and the
`evaluate` stage on synthetic predictions."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from musictag.datasets.manifest import Manifest
from musictag.errors import MusictagError
from musictag.evaluation.experiments import (
    confidence_intervals_from_experiments,
    experiments_metrics,
    format_intervals,
    runs_table,
)
from musictag.evaluation.intervals import confidence_interval
from musictag.evaluation.scores import DEFAULT_THRESHOLD, NO_NEGATIVE, NO_POSITIVE, micro_curves, tag_metrics, tune_thresholds
from musictag.nested import flatten
from musictag.params import defaults

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVEL = defaults("ci")["level"]  # params.yaml's


def random_case(seed=0, n=120, n_tags=6):
    """Targets with tag 1 never positive and tag 4 always positive, and probabilities loosely tied to them."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_tags)) < 0.3).astype(int)
    y[:, 1], y[:, 4] = 0, 1
    p = np.clip(0.35 * y + 0.65 * rng.random((n, n_tags)), 0, 1)
    return y, p


def test_summary_and_per_tag_table_equal_sklearn():
    y, p = random_case()
    thresholds = np.random.default_rng(1).uniform(0.2, 0.8, y.shape[1])
    names = [f"t{j}" for j in range(y.shape[1])]
    table, summary = tag_metrics(y, p, names, thresholds)

    ev = [0, 2, 3, 5]  # tags with both classes
    half, tuned = (p >= 0.5).astype(int), (p >= thresholds).astype(int)
    expected = {
        ("roc_auc", "macro"): roc_auc_score(y[:, ev], p[:, ev], average="macro"),
        ("roc_auc", "micro"): roc_auc_score(y, p, average="micro"),
        ("pr_auc", "macro"): average_precision_score(y[:, ev], p[:, ev], average="macro"),
        ("pr_auc", "micro"): average_precision_score(y, p, average="micro"),
    }
    for (metric, average), value in expected.items():
        assert summary[metric][average] == pytest.approx(value, abs=1e-12)
    for key, decisions in (("at_half", half), ("at_tuned", tuned)):
        block = summary[key]
        assert block["accuracy"] == pytest.approx(accuracy_score(y.ravel(), decisions.ravel()), abs=1e-12)
        assert block["subset_accuracy"] == pytest.approx(accuracy_score(y, decisions), abs=1e-12)
        assert block["accuracy_min"] == pytest.approx(
            min(accuracy_score(y[:, j], decisions[:, j]) for j in range(y.shape[1])), abs=1e-12)
        for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
            assert block[name]["macro"] == pytest.approx(
                score(y[:, ev], decisions[:, ev], average="macro", zero_division=0), abs=1e-12)
            assert block[name]["micro"] == pytest.approx(
                score(y, decisions, average="micro", zero_division=0), abs=1e-12)

    assert list(table["tag"]) == names and summary["n_test"] == len(y) and summary["n_tags_evaluable"] == 4
    for j in ev:
        row = table.iloc[j]
        assert row["n_positive"] == y[:, j].sum() and row["threshold"] == pytest.approx(thresholds[j])
        assert row["roc_auc"] == pytest.approx(roc_auc_score(y[:, j], p[:, j]), abs=1e-12)
        assert row["pr_auc"] == pytest.approx(average_precision_score(y[:, j], p[:, j]), abs=1e-12)
        assert row["accuracy"] == pytest.approx(accuracy_score(y[:, j], half[:, j]), abs=1e-12)
        for suffix, decisions in (("", half), ("_tuned", tuned)):
            assert row["precision" + suffix] == pytest.approx(
                precision_score(y[:, j], decisions[:, j], zero_division=0), abs=1e-12)
            assert row["recall" + suffix] == pytest.approx(
                recall_score(y[:, j], decisions[:, j], zero_division=0), abs=1e-12)
            assert row["f1" + suffix] == pytest.approx(f1_score(y[:, j], decisions[:, j], zero_division=0), abs=1e-12)
        assert row["note"] == ""


def test_tag_without_positive_or_negative_is_reported_and_no_nan_reaches_json():
    y, p = random_case()
    table, summary = tag_metrics(y, p, [f"t{j}" for j in range(y.shape[1])])
    assert summary["tags_without_positives"] == ["t1"] and summary["tags_without_negatives"] == ["t4"]
    assert summary["n_tags"] == 6 and summary["n_tags_evaluable"] == 4
    assert table.loc[1, "note"] == NO_POSITIVE and table.loc[4, "note"] == NO_NEGATIVE
    for j in (1, 4):
        assert table.loc[[j], ["roc_auc", "pr_auc", "f1", "f1_tuned"]].isna().all(axis=None)
        assert not math.isnan(table.loc[j, "accuracy"])  # accuracy is defined for every tag
    json.dumps(summary, allow_nan=False)  # raises on NaN or infinity
    csv_line = table.to_csv(index=False).splitlines()[2]
    assert csv_line.startswith("t1,0,,,") and csv_line.endswith(NO_POSITIVE)


def test_no_evaluable_tag_is_one_clear_error():
    with pytest.raises(MusictagError, match="no tag has both"):
        tag_metrics(np.zeros((5, 2), int), np.full((5, 2), 0.3))


def test_tuned_threshold_maximises_f1_on_valid_like_a_brute_force_search():
    rng = np.random.default_rng(3)
    y = (rng.random((80, 5)) < 0.35).astype(int)
    y[:, 3] = 0  # no positive in valid
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random((80, 5)), 0, 1), 2)  # rounded: ties between clips
    thresholds, notes = tune_thresholds(y, p)
    for j in (0, 1, 2, 4):
        candidates = np.unique(np.concatenate([p[:, j], [0.0, 1.0, 1.01]]))
        best = max(f1_score(y[:, j], (p[:, j] >= t).astype(int), zero_division=0) for t in candidates)
        assert f1_score(y[:, j], (p[:, j] >= thresholds[j]).astype(int)) == pytest.approx(best, abs=1e-12)
        assert notes[j] == ""
    assert thresholds[3] == DEFAULT_THRESHOLD and "no positive in valid" in notes[3]


def test_micro_curves_are_small_and_span_the_axes():
    y, p = random_case(n=3000, n_tags=8)
    roc, pr = micro_curves(y, p)
    assert list(roc.columns) == ["fpr", "tpr"] and list(pr.columns) == ["recall", "precision"]
    assert 2 <= len(roc) <= 500 and 2 <= len(pr) <= 500
    assert roc.iloc[0].tolist() == [0, 0] and roc.iloc[-1].tolist() == [1, 1]
    assert pr["recall"].is_monotonic_increasing and pr["recall"].iloc[-1] == 1


def test_confidence_interval_is_student_t_over_runs():
    mean, half_width = confidence_interval([0.8, 0.82, 0.84], level=0.95)
    s = np.std([0.8, 0.82, 0.84], ddof=1)
    assert mean == pytest.approx(0.82)
    assert half_width == pytest.approx(stats.t.ppf(0.975, 2) * s / math.sqrt(3))
    assert half_width == pytest.approx(4.302652729749464 * 0.02 / math.sqrt(3))
    ninety = stats.t.ppf(0.95, 2) * s / math.sqrt(3)
    assert confidence_interval([0.8, 0.82, 0.84], level=0.9)[1] == pytest.approx(ninety)
    with pytest.raises(MusictagError, match="at least 2 runs"):
        confidence_interval([0.8], level=0.95)
    with pytest.raises(MusictagError, match="between 0 and 1"):
        confidence_interval([0.8, 0.9], level=95)


def test_runs_table_takes_dotted_names_and_patterns():
    runs = [{"roc_auc": {"macro": v, "micro": v - 0.1}, "n_test": 10} for v in (0.8, 0.82, 0.84)]
    table = runs_table(runs, ["roc_auc.*"], level=LEVEL)
    assert list(table["metrics"]) == ["roc_auc.macro", "roc_auc.micro"] and table["n_runs"] == 3
    mean, half_width = confidence_interval([0.7, 0.72, 0.74], LEVEL)
    assert table["metrics"]["roc_auc.micro"]["mean"] == pytest.approx(mean)
    assert table["metrics"]["roc_auc.micro"]["half_width"] == pytest.approx(half_width)
    assert "n_test" in runs_table(runs, None, level=LEVEL)["metrics"]  # None = every shared numeric metric
    with pytest.raises(MusictagError, match="pr_auc"):
        runs_table(runs, ["pr_auc.macro"], level=LEVEL)


def exp_state(rev, name, metrics, params=None):
    """One ExpState as DVC 3.x `dvc exp show --json` prints it (deps/outs trimmed)."""
    params = {"params.yaml": {"data": params}} if params else {}
    return {"rev": rev, "name": name, "data": {"rev": rev, "timestamp": "2026-01-01T00:00:00", "params": params,
            "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}, "error": None, "experiments": None}


def evaluate_json(macro):
    return {"metrics/evaluate.json": {"data": {"n_test": 301, "roc_auc": {"macro": macro, "micro": macro - 0.05}}}}


EXP_SHOW = [
    exp_state("workspace", None, evaluate_json(0.84)),
    {**exp_state("a" * 40, "main", evaluate_json(0.5)), "experiments": [
        {"revs": [exp_state("b" * 40, "sunny-seed", evaluate_json(0.80))], "executor": None, "name": "sunny-seed"},
        {"revs": [exp_state("c" * 40, "rainy-seed", evaluate_json(0.82))], "executor": None, "name": "rainy-seed"},
        {"revs": [exp_state("d" * 40, "windy-seed", evaluate_json(0.84))], "executor": None, "name": "windy-seed"},
        {"revs": [exp_state("e" * 40, "queued-one", {})], "name": "queued-one",
         "executor": {"state": "queued", "name": "dvc-task", "local": None}},
        {"revs": [exp_state("f" * 40, "broken-one", {"metrics/evaluate.json": {
            "error": {"type": "FileNotFoundError", "msg": "No such file"}}})], "executor": None, "name": "broken-one"},
    ]},
]


def test_dvc_exp_show_json_gives_mean_and_interval_of_the_finished_experiments():
    result = confidence_intervals_from_experiments(json.dumps(EXP_SHOW), ["roc_auc.macro", "roc_auc.micro"],
                                                   level=LEVEL)
    assert list(result["groups"]) == ["all runs"]  # no params differ
    assert result["groups"]["all runs"]["runs"] == ["sunny-seed", "rainy-seed", "windy-seed"]
    assert set(result["skipped"]) == {"queued-one (experiment)", "broken-one (experiment)"}
    macro = result["groups"]["all runs"]["metrics"]["roc_auc.macro"]
    assert macro["mean"] == pytest.approx(0.82) and macro["n"] == 3
    assert macro["half_width"] == pytest.approx(stats.t.ppf((1 + LEVEL) / 2, 2) * 0.02 / math.sqrt(3))
    assert macro["low"] == pytest.approx(0.82 - macro["half_width"])
    json.dumps(result, allow_nan=False)
    assert "roc_auc.macro" in format_intervals(result)

    runs, _ = experiments_metrics(EXP_SHOW, include_workspace=True, include_baselines=True)
    assert list(runs) == ["workspace", "main", "sunny-seed", "rainy-seed", "windy-seed"]
    only_two, _ = experiments_metrics(EXP_SHOW, names=["sunny-seed", "ccccccc"])
    assert list(only_two) == ["sunny-seed", "rainy-seed"]  # a name or a revision prefix


def test_runs_are_grouped_by_the_params_that_differ_but_the_seed():
    def exp(rev, model, seed, macro, lr=0.001):
        state = exp_state(rev * 40, f"{model}-{seed}", evaluate_json(macro),
                          {"model": model, "train": {"seed": seed, "learning_rate": lr}})
        return {"revs": [state], "executor": None, "name": f"{model}-{seed}"}

    show = [exp_state("workspace", None, {}), {**exp_state("a" * 40, "main", {}), "experiments": [
        exp("b", "k2c1", 1, 0.80), exp("c", "k2c1", 2, 0.82), exp("d", "k1c2", 1, 0.86), exp("e", "k1c2", 2, 0.88),
        exp("f", "k1c2", 3, 0.90, lr=0.01)]}]
    result = confidence_intervals_from_experiments(show, ["roc_auc.macro"], level=LEVEL)
    groups = result["groups"]
    assert list(groups) == ["model=k2c1, train.learning_rate=0.001", "model=k1c2, train.learning_rate=0.001"]
    by_model = {label.split(",")[0]: table for label, table in groups.items()}
    assert by_model["model=k2c1"]["metrics"]["roc_auc.macro"]["mean"] == pytest.approx(0.81)  # not pooled
    assert by_model["model=k1c2"]["metrics"]["roc_auc.macro"]["mean"] == pytest.approx(0.87)
    assert "group model=k1c2, train.learning_rate=0.01" in result["skipped"]  # one run: no interval
    text = format_intervals(result)
    assert text.count("2 runs") == 2 and "skipped group" in text


def test_fewer_than_two_runs_or_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(MusictagError, match="need at least 2 runs.*found 1"):
        confidence_intervals_from_experiments(EXP_SHOW, None, level=LEVEL, names=["sunny-seed"])
    with pytest.raises(MusictagError, match="not JSON"):
        confidence_intervals_from_experiments("{oops", None, level=LEVEL)
    with pytest.raises(MusictagError, match="DVC 3"):
        confidence_intervals_from_experiments({"workspace": {}}, None, level=LEVEL)


def test_metric_files_give_the_same_interval_as_exp_show(tmp_path):
    paths = []
    for k, macro in enumerate((0.80, 0.82, 0.84)):
        paths.append(tmp_path / f"run{k}.json")
        paths[-1].write_text(json.dumps(evaluate_json(macro)["metrics/evaluate.json"]["data"]))
    from_files = confidence_intervals_from_experiments(paths, ["roc_auc.macro"], level=LEVEL)["groups"]["all runs"]
    from_exp = confidence_intervals_from_experiments(EXP_SHOW, ["roc_auc.macro"], level=LEVEL)["groups"]["all runs"]
    assert from_files["metrics"]["roc_auc.macro"] == pytest.approx(from_exp["metrics"]["roc_auc.macro"])
    with pytest.raises(MusictagError, match="not found"):
        confidence_intervals_from_experiments([tmp_path / "missing.json", paths[0]], None, level=LEVEL)



def test_the_ci_command_reads_the_metrics_file_it_is_given(monkeypatch, capsys):
    """`musictag ci --file metrics/shift.json`: every number of each experiment's shift.json, not evaluate.json's."""
    from musictag import cli

    def shift_json(drop):
        return {"metrics/shift.json": {"data": {"split": "test", "drop": {"FluidR3_GM": {"instrument": drop}}}}}

    show = [exp_state("workspace", None, {}), {**exp_state("a" * 40, "main", {}), "experiments": [
        {"revs": [exp_state(rev * 40, name, shift_json(drop))], "executor": None, "name": name}
        for rev, name, drop in (("b", "seed-1", 0.02), ("c", "seed-2", 0.04), ("d", "seed-3", 0.03))]}]
    monkeypatch.setattr(cli, "_dvc", lambda *args: json.dumps(show))
    cli.main(["ci", "--file", "metrics/shift.json"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["drop.FluidR3_GM.instrument", "0.0300", "±"] == lines[1][:3] and lines[1][-1] == "n=3" and len(lines) == 2

# --- the stage -------------------------------------------------------------------------------------------

TAGS = ["rock", "jazz", "never in test", "folk", "piano"]


def write_inputs(root, seed=0):
    """clean.csv, predictions.npz and model/ (history.csv, config.json) for 60 train, 30 valid, 40 test clips."""
    rng = np.random.default_rng(seed)
    n = 130
    ids = [f"clip{i:03d}" for i in range(n)]
    splits = np.array(["train"] * 60 + ["valid"] * 30 + ["test"] * 40)
    clips = pd.DataFrame({"id": ids, "audio_path": [f"{i}.flac" for i in ids], "split": splits,
                          "artist": [f"Artist {i % 9}" for i in range(n)], "title": [f"Song {i}" for i in range(n)]})
    targets = (rng.random((n, len(TAGS))) < 0.35).astype(np.uint8)
    targets[splits == "test", 2] = 0
    Manifest(clips, TAGS, targets).write(root / "clean.csv")
    probabilities = np.clip(0.4 * targets + 0.6 * rng.random(targets.shape), 0, 1).astype(np.float32)
    order = rng.permutation(n)  # the predictions' row order is not the manifest's
    np.savez(root / "predictions.npz", ids=np.array(ids)[order], splits=splits[order],
             probabilities=probabilities[order], embeddings=np.zeros((n, 3), np.float32), tag_names=np.array(TAGS))
    (root / "model").mkdir()
    pd.DataFrame({"epoch": [0, 1, 2], "auc": [0.6, 0.7, 0.75], "loss": [0.7, 0.6, 0.55], "pr_auc": [0.4, 0.5, 0.55],
                  "val_auc": [0.58, 0.66, 0.65], "val_loss": [0.72, 0.64, 0.63], "val_pr_auc": [0.4, 0.45, 0.47]}
                 ).to_csv(root / "model" / "history.csv", index=False)
    (root / "model" / "config.json").write_text(json.dumps({"model": "k2c1"}))
    return targets, probabilities, splits


def test_stage_writes_every_file_from_synthetic_inputs(tmp_path, monkeypatch):
    import stages.evaluate as stage

    data, metrics = tmp_path / "data", tmp_path / "metrics"
    data.mkdir()
    targets, probabilities, splits = write_inputs(data)
    monkeypatch.setattr(stage, "DATA_DIR", data)
    monkeypatch.setattr(stage, "METRICS_DIR", metrics)
    monkeypatch.setattr(stage, "load_params", lambda section: {"top_songs": 4, "top_k": 3, "songs": []})
    stage.main()

    summary = json.loads((metrics / "evaluate_details.json").read_text())
    json.dumps(summary, allow_nan=False)
    headline = json.loads((metrics / "evaluate.json").read_text())
    flat = flatten(headline)
    assert len(flat) <= 16 and sorted(flat)[:2] == ["auc_roc.macro", "auc_roc.micro"]  # DVC sorts a file's rows
    assert flat["auc_roc.macro"] == summary["roc_auc"]["macro"]
    assert flat["decisions_at_tuned.f1.macro"] == summary["at_tuned"]["f1"]["macro"]
    y, p = targets[splits == "test"].astype(int), probabilities[splits == "test"].astype(np.float64)
    ev = [0, 1, 3, 4]
    assert summary["n_test"] == 40 and summary["n_valid"] == 30 and summary["thresholds_tuned_on"] == "valid"
    assert summary["n_tags_evaluable"] == 4 and summary["tags_without_positives"] == ["never in test"]
    assert summary["roc_auc"]["macro"] == pytest.approx(roc_auc_score(y[:, ev], p[:, ev]), abs=1e-12)
    assert summary["pr_auc"]["micro"] == pytest.approx(average_precision_score(y, p, average="micro"), abs=1e-12)
    thresholds, _ = tune_thresholds(targets[splits == "valid"], probabilities[splits == "valid"])
    assert summary["at_tuned"]["f1"]["macro"] == pytest.approx(
        f1_score(y[:, ev], (p >= thresholds)[:, ev], average="macro", zero_division=0), abs=1e-12)

    per_tag = pd.read_csv(metrics / "per_tag.csv", keep_default_na=False)
    assert list(per_tag["tag"]) == TAGS and per_tag.loc[2, "roc_auc"] == "" and per_tag.loc[2, "note"] == NO_POSITIVE
    assert float(per_tag.loc[0, "roc_auc"]) == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]), abs=1e-12)
    assert "never in test" not in json.loads((metrics / "per_tag.json").read_text())["per_tag"]["roc_auc"]
    assert list(pd.read_csv(metrics / "roc.csv").columns) == ["fpr", "tpr"]
    assert list(pd.read_csv(metrics / "pr.csv").columns) == ["recall", "precision"]
    top = pd.read_csv(metrics / "plots" / "top_tags.csv")
    assert top["id"].nunique() == 4 and (top.groupby("id").size() == 3).all()
    for name in ("per_tag_auc.png", "training_curves.png", "roc_pr.png", "top_tags_table.png"):
        png = (metrics / "plots" / name).read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5000, name
    assert not [f for f in metrics.rglob("*") if f.name.endswith(".tmp")]


def test_stage_names_stale_or_missing_inputs(tmp_path):
    from musictag.evaluation.evaluate import evaluate

    write_inputs(tmp_path)
    args = dict(manifest_path=tmp_path / "clean.csv", model_dir=tmp_path / "model", metrics_dir=tmp_path / "m",
                plots_dir=tmp_path / "m" / "plots", **defaults("evaluate"))
    with pytest.raises(MusictagError, match="predictions not found"):
        evaluate(tmp_path / "nope.npz", **args)
    manifest = Manifest.read(tmp_path / "clean.csv")
    manifest.split("train").write(tmp_path / "clean.csv")  # valid and test clips gone from the manifest
    with pytest.raises(MusictagError, match="not in the manifest"):
        evaluate(tmp_path / "predictions.npz", **args)
    assert not (tmp_path / "m" / "evaluate.json").exists()


def test_ground_truth_alignment_names_a_missing_clip_or_a_moved_one(tmp_path):
    from musictag.evaluation.scores import align_ground_truth
    from musictag.inference.predictions import Predictions

    write_inputs(tmp_path)
    predictions = Predictions.load(tmp_path / "predictions.npz")
    targets, clips = align_ground_truth(predictions, tmp_path / "clean.csv")
    assert list(clips["id"]) == list(predictions.ids) and targets.shape == predictions.probabilities.shape
    stray = Predictions(np.append(predictions.ids, "ghost"), np.append(predictions.splits, "test"),
                        *(np.concatenate([a, a[:1]]) for a in (predictions.probabilities, predictions.embeddings)),
                        predictions.tag_names)
    with pytest.raises(MusictagError, match="'ghost'.*not in the manifest|not in the manifest.*'ghost'"):
        align_ground_truth(stray, tmp_path / "clean.csv")
    moved = Predictions(predictions.ids, np.where(predictions.splits == "test", "valid", predictions.splits),
                        predictions.probabilities, predictions.embeddings, predictions.tag_names)
    with pytest.raises(MusictagError, match="predicted as 'valid'"):
        align_ground_truth(moved, tmp_path / "clean.csv")
