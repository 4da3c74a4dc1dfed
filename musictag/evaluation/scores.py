"""Scores of a tagger's probabilities against the ground truth, as in dissertation chapter 4: per-tag and
averaged metrics and per-tag thresholds tuned on the validation split.

Every figure is scikit-learn's, computed on the arrays as given:

* ROC-AUC and PR-AUC (average precision), macro over the *evaluable* tags (both classes present in the
  test split) and micro over all (clip, tag) pairs;
* accuracy, precision, recall and F1 of binary decisions `p >= threshold`, once at 0.5 (the seed's
  rounding, section 4.2.1) and once at per-tag thresholds that maximise F1 on the validation split.

A tag without a positive (or without a negative) in the test split has no ROC-AUC and no AP: it is
left out of the macro averages, its cells are empty (NaN) in the table, it is named in the summary,
and no NaN is ever in the summary.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from musictag.errors import MusictagError
from musictag.inference.predictions import Predictions

DEFAULT_THRESHOLD = 0.5
MAX_CURVE_ROWS = 500
NO_POSITIVE, NO_NEGATIVE = "no positive in test", "no negative in test"
PER_TAG_COLUMNS = ["tag", "n_positive", "roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "threshold",
                   "precision_tuned", "recall_tuned", "f1_tuned", "note"]


def _check_arrays(y_true, y_prob, what: str = "test") -> tuple[np.ndarray, np.ndarray]:
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != y_prob.shape:
        raise MusictagError(f"{what}: need targets and probabilities of the same shape (n_clips, n_tags), "
                            f"got {y_true.shape} and {y_prob.shape}")
    if not np.isin(y_true, (0, 1)).all():
        raise MusictagError(f"{what}: targets must be 0 or 1")
    if not np.isfinite(y_prob).all():
        raise MusictagError(f"{what}: probabilities contain NaN or infinity")
    return y_true.astype(np.int64), y_prob


def tune_thresholds(y_valid, p_valid, default: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, list[str]]:
    """Per-tag thresholds maximising F1 of `p >= threshold` on the validation clips, and a note per tag.

    The best decision is searched over every distinct validation score (sklearn's precision-recall
    curve); the threshold returned lies midway between that score and the next lower one, so it makes
    the same decisions on valid while leaving a margin on either side. A tag without a positive in
    valid has no F1 to maximise: it keeps `default` and its note says so. Ties go to the lower threshold.
    """
    y_valid, p_valid = _check_arrays(y_valid, p_valid, "valid")
    thresholds, notes = np.full(y_valid.shape[1], float(default)), [""] * y_valid.shape[1]
    for j in range(y_valid.shape[1]):
        y, p = y_valid[:, j], p_valid[:, j]
        if y.sum() == 0:
            notes[j] = f"no positive in valid: threshold {default:g}"
            continue
        precision, recall, candidates = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        best = int(np.argmax(f1))
        scores = np.unique(p)
        lower = scores[scores < candidates[best]]
        middle = (lower[-1] + candidates[best]) / 2 if len(lower) else candidates[best]
        thresholds[j] = float(middle if len(lower) and lower[-1] < middle <= candidates[best] else candidates[best])
    return thresholds, notes


def _decision_metrics(y: np.ndarray, decisions: np.ndarray, macro_columns: np.ndarray) -> dict:
    """Accuracy and macro/micro precision, recall, F1 of 0/1 decisions (macro over `macro_columns`)."""
    per_tag_accuracy = (y == decisions).mean(axis=0)
    out = {"accuracy": float(accuracy_score(y.ravel(), decisions.ravel())),  # = mean per-tag accuracy
           "accuracy_min": float(per_tag_accuracy.min()),  # the seed's criterion: every tag above 0.5
           "subset_accuracy": float(accuracy_score(y, decisions))}  # every tag of a clip right
    for name, score in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        out[name] = {"macro": float(score(y[:, macro_columns], decisions[:, macro_columns], average="macro",
                                          zero_division=0)),
                     "micro": float(score(y, decisions, average="micro", zero_division=0))}
    return out


def tag_metrics(y_true, y_prob, tag_names: Sequence[str] | None = None,
                thresholds: Sequence[float] | None = None,
                threshold_notes: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Per-tag table and summary of test targets `y_true` (n, n_tags) against probabilities `y_prob`.

    `thresholds` (one per tag, usually `tune_thresholds` on valid) give the `*_tuned` figures; without
    them they are the 0.5 ones. The table has PER_TAG_COLUMNS, one row per tag in the given order;
    ROC-AUC, AP, precision, recall and F1 are empty (NaN) for a tag that is not evaluable and its
    `note` says why. The summary (JSON-ready: no NaN) holds the counts of clips and tags, the tags without
    positives or negatives, macro and micro ROC-AUC and PR-AUC, and `_decision_metrics` at 0.5 and tuned.
    """
    y, p = _check_arrays(y_true, y_prob)
    n_clips, n_tags = y.shape
    if n_clips == 0:
        raise MusictagError("test: no clips to evaluate")
    tag_names = [str(t) for t in tag_names] if tag_names is not None else [f"tag{j}" for j in range(n_tags)]
    if len(tag_names) != n_tags:
        raise MusictagError(f"test: {len(tag_names)} tag names for {n_tags} probability columns")
    tuned = np.full(n_tags, DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, np.float64)
    if tuned.shape != (n_tags,) or not np.isfinite(tuned).all():
        raise MusictagError(f"thresholds: need {n_tags} finite values, got shape {tuned.shape}")
    threshold_notes = list(threshold_notes) if threshold_notes is not None else [""] * n_tags

    positives = y.sum(axis=0)
    no_positive, no_negative = positives == 0, positives == n_clips
    evaluable = ~(no_positive | no_negative)
    if not evaluable.any():
        raise MusictagError("test: no tag has both positive and negative clips; nothing can be evaluated")
    columns = np.flatnonzero(evaluable)
    at_half, at_tuned = (p >= DEFAULT_THRESHOLD).astype(np.int64), (p >= tuned).astype(np.int64)

    rows = []
    for j, tag in enumerate(tag_names):
        yj = y[:, j]
        row = {"tag": tag, "n_positive": int(positives[j]), "threshold": float(tuned[j]),
               "accuracy": float(accuracy_score(yj, at_half[:, j]))}
        notes = [NO_POSITIVE if no_positive[j] else NO_NEGATIVE if no_negative[j] else "", threshold_notes[j]]
        if evaluable[j]:
            row |= {"roc_auc": float(roc_auc_score(yj, p[:, j])), "pr_auc": float(average_precision_score(yj, p[:, j]))}
            for suffix, decisions in (("", at_half[:, j]), ("_tuned", at_tuned[:, j])):
                row |= {"precision" + suffix: float(precision_score(yj, decisions, zero_division=0)),
                        "recall" + suffix: float(recall_score(yj, decisions, zero_division=0)),
                        "f1" + suffix: float(f1_score(yj, decisions, zero_division=0))}
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    table = pd.DataFrame(rows, columns=PER_TAG_COLUMNS)

    summary = {
        "n_test": int(n_clips),
        "n_tags": int(n_tags),
        "n_tags_evaluable": int(evaluable.sum()),
        "tags_without_positives": [tag_names[j] for j in np.flatnonzero(no_positive)],
        "tags_without_negatives": [tag_names[j] for j in np.flatnonzero(no_negative)],
        "roc_auc": {"macro": float(roc_auc_score(y[:, columns], p[:, columns], average="macro")),
                    "micro": float(roc_auc_score(y, p, average="micro"))},
        "pr_auc": {"macro": float(average_precision_score(y[:, columns], p[:, columns], average="macro")),
                   "micro": float(average_precision_score(y, p, average="micro"))},
        "at_half": _decision_metrics(y, at_half, columns),
        "at_tuned": _decision_metrics(y, at_tuned, columns),
    }
    return table, summary


def _thin(n: int, max_rows: int = MAX_CURVE_ROWS) -> np.ndarray:
    """At most `max_rows` indices of 0..n-1, evenly spread, first and last kept."""
    return np.arange(n) if n <= max_rows else np.unique(np.linspace(0, n - 1, max_rows).round().astype(int))


def micro_curves(y_true, y_prob, max_rows: int = MAX_CURVE_ROWS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Micro-averaged ROC (fpr, tpr) and PR (recall, precision) points, each cut to <= `max_rows` rows.

    The points are sklearn's (roc_curve, precision_recall_curve on the flattened arrays), a subset of them
    when there are more: enough to draw, not to recompute the area exactly.
    """
    y, p = _check_arrays(y_true, y_prob)
    fpr, tpr, _ = roc_curve(y.ravel(), p.ravel(), drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(y.ravel(), p.ravel(), drop_intermediate=True)
    precision, recall = precision[::-1], recall[::-1]  # ascending recall
    keep_roc, keep_pr = _thin(len(fpr), max_rows), _thin(len(recall), max_rows)
    return (pd.DataFrame({"fpr": fpr[keep_roc], "tpr": tpr[keep_roc]}),
            pd.DataFrame({"recall": recall[keep_pr], "precision": precision[keep_pr]}))


def align_ground_truth(predictions: Predictions, manifest_path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Targets (n, n_tags) in the predictions' row and tag order, and the clips' rows of the manifest."""
    from musictag.datasets.manifest import Manifest

    manifest = Manifest.read(Path(manifest_path))
    ids = predictions.ids
    if len(set(ids)) != len(ids):
        raise MusictagError("predictions: a clip id appears more than once")
    row_of = pd.Series(np.arange(len(manifest)), index=manifest.clips["id"])
    missing = [i for i in ids if i not in row_of.index]
    if missing:
        raise MusictagError(f"{manifest_path}: {len(missing)} predicted clip(s) not in the manifest, e.g. "
                            f"'{missing[0]}' (stale predictions? run `dvc repro`)")
    rows = row_of.loc[list(ids)].to_numpy()
    tag_names = predictions.tag_names
    if set(tag_names) != set(manifest.tag_names) or len(tag_names) != len(manifest.tag_names):
        extra = sorted(set(tag_names) ^ set(manifest.tag_names))
        raise MusictagError(f"{manifest_path}: tags differ from the predictions' ({', '.join(extra[:5]) or 'order'})")
    columns = [manifest.tag_names.index(t) for t in tag_names]
    clips = manifest.clips.iloc[rows].reset_index(drop=True)
    differ = clips["split"].to_numpy() != predictions.splits
    if differ.any():
        k = int(np.flatnonzero(differ)[0])
        raise MusictagError(f"{manifest_path}: clip '{ids[k]}' is in split '{clips['split'][k]}' but was predicted "
                            f"as '{predictions.splits[k]}' (stale predictions? run `dvc repro`)")
    return manifest.targets[rows][:, columns].astype(np.int64), clips
