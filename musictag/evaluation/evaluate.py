"""The `evaluate` stage: a tagger's test-split scores with thresholds tuned on valid, written as DVC
metrics (the headline and the full summary), per-tag tables, curves, plots and the table of top tags for
a few test songs (dissertation table 4.3).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from musictag.errors import MusictagError
from musictag.evaluation.scores import DEFAULT_THRESHOLD, align_ground_truth, micro_curves, tag_metrics, tune_thresholds
from musictag.files import write_atomic, write_csv, write_json
from musictag.inference.predictions import Predictions


def pick_songs(y_true: np.ndarray, y_prob: np.ndarray, artists: Sequence[str], n: int) -> list[int]:
    """`n` rows showing a variety of tags: greedily the song bringing the most ground-truth tags not yet
    shown, preferring a new artist, then the most confident top prediction, then row order."""
    chosen, covered, used_artists = [], set(), set()
    candidates = list(range(len(y_true)))
    for _ in range(min(n, len(candidates))):
        def key(i):
            new_tags = len(set(np.flatnonzero(y_true[i])) - covered)
            return (artists[i] not in used_artists, new_tags, float(y_prob[i].max()), -i)
        best = max((i for i in candidates if i not in chosen), key=key)
        chosen.append(best)
        covered |= set(np.flatnonzero(y_true[best]))
        used_artists.add(artists[best])
    return chosen


def top_tags_rows(y_true, y_prob, clips: pd.DataFrame, tag_names: Sequence[str], rows: Sequence[int],
                  k: int = 5) -> list[dict]:
    """Table 4.3's content for the clips at `rows`: artist, title, top-`k` (tag, score), true tags."""
    out = []
    for i in rows:
        order = np.argsort(-y_prob[i], kind="stable")[:k]
        out.append({"id": str(clips["id"].iloc[i]), "artist": str(clips["artist"].iloc[i]),
                    "title": str(clips["title"].iloc[i]),
                    "predicted": [(str(tag_names[j]), float(y_prob[i, j]), bool(y_true[i, j])) for j in order],
                    "truth": [str(tag_names[j]) for j in np.flatnonzero(y_true[i])]})
    return out


def headline(summary: Mapping) -> dict:
    """What a person compares between runs (`dvc metrics diff`, `dvc exp show`): ROC-AUC and PR-AUC (average
    precision, the seed's fig. 4.4), then accuracy (mean and worst tag: the seed's criterion) and F1 at 0.5
    and at the tuned thresholds. DVC lists a file's metrics sorted by name, so the names sort in that order
    (auc_roc < average_precision < decisions_*). The full summary, under the names tag_metrics gives it
    (roc_auc, pr_auc, at_half, ...), is evaluate_details.json."""
    def decisions(block: Mapping) -> dict:
        return {"accuracy": block["accuracy"], "accuracy_min": block["accuracy_min"], "f1": block["f1"]}

    return {"auc_roc": summary["roc_auc"], "average_precision": summary["pr_auc"],
            "decisions_at_half": decisions(summary["at_half"]), "decisions_at_tuned": decisions(summary["at_tuned"]),
            "n_test": summary["n_test"], "n_tags_evaluable": summary["n_tags_evaluable"]}


def evaluate(predictions_path: Path, manifest_path: Path, model_dir: Path, metrics_dir: Path, plots_dir: Path,
             top_songs: int, top_k: int, songs: Sequence[str]) -> dict:
    """The `evaluate` stage: test-split metrics with thresholds tuned on valid, and its files.

    Writes (each atomically) `metrics_dir`/evaluate.json (the `headline` of the summary returned),
    evaluate_details.json (all of it), per_tag.csv, per_tag.json ({"per_tag": {metric: {tag: value}}}
    for intervals over saved runs), roc.csv and pr.csv
    (micro-averaged curves), and into `plots_dir` per_tag_auc.png, training_curves.png, roc_pr.png,
    top_tags_table.png and top_tags.csv. `songs` names clip ids for the table; empty = pick `top_songs`.
    """
    from musictag.evaluation import plots

    metrics_dir, plots_dir, model_dir = Path(metrics_dir), Path(plots_dir), Path(model_dir)
    predictions = Predictions.load(Path(predictions_path))
    y_all, clips = align_ground_truth(predictions, manifest_path)
    p_all = predictions.probabilities.astype(np.float64)
    tag_names, splits = predictions.tag_names, predictions.splits
    test, valid = splits == "test", splits == "valid"
    if not test.any():
        raise MusictagError(f"{predictions_path}: no test clips among the predictions")

    if valid.any():
        thresholds, notes = tune_thresholds(y_all[valid], p_all[valid])
        tuned_on = "valid"
    else:
        thresholds = np.full(len(tag_names), DEFAULT_THRESHOLD)
        notes = ["no valid clips: threshold 0.5"] * len(tag_names)
        tuned_on = "none (no valid clips): 0.5"
    y, p = y_all[test], p_all[test]
    table, summary = tag_metrics(y, p, tag_names, thresholds, notes)
    summary = {"split": "test", "n_valid": int(valid.sum()), "thresholds_tuned_on": tuned_on} | summary
    history = _read_history(model_dir / "history.csv")
    model_name = _model_name(model_dir)

    roc, pr = micro_curves(y, p)
    per_tag_json = {"per_tag": {metric: {r["tag"]: float(r[metric]) for r in table.to_dict("records")
                                         if not pd.isna(r[metric])}
                                for metric in ("roc_auc", "pr_auc", "accuracy", "f1_tuned")}}
    write_csv(metrics_dir / "per_tag.csv", table)
    write_json(metrics_dir / "per_tag.json", per_tag_json)
    write_csv(metrics_dir / "roc.csv", roc)
    write_csv(metrics_dir / "pr.csv", pr)

    test_clips = clips[test].reset_index(drop=True)
    if songs:
        where = {clip_id: i for i, clip_id in enumerate(test_clips["id"])}
        unknown = [s for s in songs if s not in where]
        if unknown:
            raise MusictagError(f"evaluate.songs: '{unknown[0]}' is not a test clip")
        rows = [where[s] for s in songs]
    else:
        rows = pick_songs(y, p, list(test_clips["artist"]), top_songs)
    song_rows = top_tags_rows(y, p, test_clips, tag_names, rows, top_k)
    write_csv(plots_dir / "top_tags.csv", pd.DataFrame(
        [{"id": r["id"], "artist": r["artist"], "title": r["title"], "rank": rank + 1, "tag": tag, "score": score,
          "in_ground_truth": hit} for r in song_rows for rank, (tag, score, hit) in enumerate(r["predicted"])]))

    label = f"{model_name}, " if model_name else ""
    write_atomic(plots_dir / "per_tag_auc.png", lambda tmp: plots.per_tag_auc(
        table, summary["roc_auc"]["macro"], tmp, f"Per-tag ROC-AUC on the test set ({label}{summary['n_test']} clips)"))
    write_atomic(plots_dir / "training_curves.png", lambda tmp: plots.training_curves(
        history, tmp, f"Training of {model_name}" if model_name else "Training"))
    write_atomic(plots_dir / "roc_pr.png", lambda tmp: plots.roc_pr(y, p, tag_names, table, tmp))
    write_atomic(plots_dir / "top_tags_table.png", lambda tmp: plots.top_tags_table(
        song_rows, tmp, f"Top-{top_k} predicted tags for test songs ({label.rstrip(', ') or 'model'})"))
    write_json(metrics_dir / "evaluate_details.json", summary)
    write_json(metrics_dir / "evaluate.json", headline(summary))  # last: its presence means the others are fresh
    return summary


def _read_history(path: Path) -> pd.DataFrame:
    try:
        history = pd.read_csv(path)
    except FileNotFoundError:
        raise MusictagError(f"{path}: training log not found (run `dvc repro train`)") from None
    except (OSError, ValueError) as err:
        raise MusictagError(f"{path}: cannot read the training log ({err.__class__.__name__})") from None
    if "epoch" not in history.columns or history.empty:
        raise MusictagError(f"{path}: training log has no epochs")
    return history


def _model_name(model_dir: Path) -> str:
    try:
        return str(json.loads((model_dir / "config.json").read_text()).get("model") or "")
    except (OSError, ValueError, AttributeError):
        return ""
