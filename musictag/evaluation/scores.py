"""Evaluation of a tagger as in dissertation chapter 4: per-tag and averaged metrics, tuned thresholds,
confidence intervals over seeded runs, and the files of the `evaluate` stage.

Every figure is scikit-learn's, computed on the arrays as given:

* ROC-AUC and PR-AUC (average precision), macro over the *evaluable* tags (both classes present in the
  test split) and micro over all (clip, tag) pairs;
* accuracy, precision, recall and F1 of binary decisions `p >= threshold`, once at 0.5 (the seed's
  rounding, section 4.2.1) and once at per-tag thresholds that maximise F1 on the validation split.

A tag without a positive (or without a negative) in the test split has no ROC-AUC and no AP: it is
left out of the macro averages, its cells are empty in the CSV, it is named in the JSON, and no NaN is
ever written. `confidence_interval` is the seed's Student-t interval over N runs (section 4.2.1),
and `confidence_intervals_from_experiments` applies it to `dvc exp show --json` or to metric files.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
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
from musictag.files import write_atomic, write_csv, write_json
from musictag.inference.predictions import Predictions

DEFAULT_THRESHOLD = 0.5
MAX_CURVE_ROWS = 500
NO_POSITIVE, NO_NEGATIVE = "no positive in test", "no negative in test"
PER_TAG_COLUMNS = ["tag", "n_positive", "roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "threshold",
                   "precision_tuned", "recall_tuned", "f1_tuned", "note"]


# --- per-tag and averaged metrics ------------------------------------------------------------------------

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
    `note` says why. The summary is JSON-ready (no NaN): see `evaluate` for its keys.
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


# --- confidence intervals over runs --------------------------------------------------------------------

def confidence_interval(values: Iterable[float], level: float) -> tuple[float, float]:
    """(mean, half width) of the two-sided Student-t interval for the mean of N runs: t * s / sqrt(N)."""
    values = np.asarray(list(values), dtype=np.float64)
    if not 0 < level < 1:
        raise MusictagError(f"confidence level: need a number between 0 and 1, got {level!r}")
    if len(values) < 2:
        raise MusictagError(f"confidence interval: need at least 2 runs, got {len(values)}")
    if not np.isfinite(values).all():
        raise MusictagError("confidence interval: a run's value is NaN or infinite")
    t = stats.t.ppf((1 + level) / 2, df=len(values) - 1)
    return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(len(values)))


def flatten_metrics(metrics: Mapping, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested metrics as {"roc_auc.macro": 0.9, ...}; strings, lists and booleans dropped."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten_metrics(value, name + ".")
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
            flat[name] = float(value)
    return flat


def runs_table(metric_dicts: Mapping[str, Mapping] | Sequence[Mapping], metric_names: Sequence[str] | None, *,
               level: float) -> dict:
    """Mean and Student-t interval per metric over runs.

    `metric_dicts`: one (nested) metrics dict per run, as a list or as {run name: dict}. `metric_names`:
    dotted names or shell patterns ("roc_auc.*", "per_tag.accuracy.*"); None takes every numeric metric
    that all runs have. A metric is averaged over the runs that have it and needs at least two.
    Returns {"level", "n_runs", "runs", "metrics": {name: {mean, half_width, low, high, std, n}}}.
    """
    runs = dict(metric_dicts) if isinstance(metric_dicts, Mapping) else \
        {f"run{i + 1}": m for i, m in enumerate(metric_dicts)}
    if len(runs) < 2:
        raise MusictagError(f"confidence interval: need at least 2 runs, got {len(runs)}")
    flat = {name: flatten_metrics(metrics) for name, metrics in runs.items()}
    if metric_names is None:
        selected = [k for k in next(iter(flat.values())) if all(k in f for f in flat.values())]
    else:
        available = list(dict.fromkeys(k for f in flat.values() for k in f))
        selected = []
        for pattern in metric_names:
            matches = [k for k in available if fnmatch.fnmatchcase(k, pattern)]
            if not matches:
                raise MusictagError(f"metric '{pattern}': in none of the runs; they have "
                                    f"{', '.join(available[:12])}{' ...' if len(available) > 12 else ''}")
            selected += [m for m in matches if m not in selected]
    if not selected:
        raise MusictagError("confidence interval: the runs share no numeric metric")
    table = {}
    for name in selected:
        values = [f[name] for f in flat.values() if name in f]
        if len(values) < 2:
            raise MusictagError(f"metric '{name}': present in {len(values)} run(s), need at least 2")
        mean, half_width = confidence_interval(values, level)
        table[name] = {"mean": mean, "half_width": half_width, "low": mean - half_width, "high": mean + half_width,
                       "std": float(np.std(values, ddof=1)), "n": len(values)}
    return {"level": level, "n_runs": len(runs), "runs": list(runs), "metrics": table}


def _exp_metrics(state: Mapping, metrics_file: str) -> tuple[dict | None, str]:
    """The `metrics_file` data of one ExpState entry, or None and why not."""
    data = state.get("data") or {}
    if state.get("error"):
        return None, f"error: {(state['error'] or {}).get('msg', state['error'])}"
    entry = (data.get("metrics") or {}).get(metrics_file)
    if not entry:
        return None, f"no {metrics_file}"
    if entry.get("error") or not isinstance(entry.get("data"), Mapping):
        return None, f"{metrics_file} unreadable ({(entry.get('error') or {}).get('type', 'no data')})"
    return dict(entry["data"]), ""


def experiments_metrics(exp_show: str | bytes | Path | Sequence, metrics_file: str = "metrics/evaluate.json",
                        include_workspace: bool = False, include_baselines: bool = False,
                        names: Sequence[str] | None = None, params: dict | None = None
                        ) -> tuple[dict[str, dict], dict[str, str]]:
    """{run name: metrics} of the finished experiments in DVC 3's `dvc exp show --json` output, and
    {run name: why skipped}; with a dict `params`, each run's flattened params.yaml goes into it too.

    `exp_show` is that output as text, a path to a file holding it, or the parsed list. The top-level
    entries are the workspace and the baseline commits; each baseline's `experiments` hold the runs of
    `dvc exp run`. Only experiments are taken by default (the workspace and a baseline usually repeat one
    of them); queued, running and failed ones, and those without `metrics_file`, are skipped. `names`
    keeps only experiments whose name (or revision prefix) is listed.
    """
    if isinstance(exp_show, Path):
        try:
            exp_show = exp_show.read_text()
        except OSError as err:
            raise MusictagError(f"{exp_show}: cannot read ({err.strerror})") from None
    if isinstance(exp_show, (str, bytes)):
        try:
            exp_show = json.loads(exp_show)
        except ValueError as err:
            raise MusictagError(f"dvc exp show --json: not JSON ({err})") from None
    if not isinstance(exp_show, list) or not all(isinstance(e, Mapping) and "rev" in e for e in exp_show):
        raise MusictagError("dvc exp show --json: expected DVC 3's list of {rev, name, data, experiments} entries")

    runs, skipped = {}, {}

    def take(state: Mapping, kind: str, executor_state: str | None = None) -> None:
        rev = str(state.get("rev") or "")
        name = state.get("name") or (rev if rev == "workspace" else rev[:7])
        if names is not None and not any(n == name or (n and rev.startswith(n)) for n in names):
            return
        if name in runs:  # the same run listed twice (e.g. under two baselines)
            return
        if executor_state in ("queued", "running", "failed"):
            skipped[f"{name} ({kind})"] = executor_state
            return
        metrics, why = _exp_metrics(state, metrics_file)
        if metrics is None:
            skipped[f"{name} ({kind})"] = why
        else:
            runs[name] = metrics
            if params is not None:
                values = (((state.get("data") or {}).get("params") or {}).get("params.yaml") or {}).get("data")
                params[name] = _flatten_params(values or {})

    for baseline in exp_show:
        is_workspace = baseline.get("rev") == "workspace"
        if (include_workspace and is_workspace) or (include_baselines and not is_workspace):
            take(baseline, "workspace" if is_workspace else "baseline")
        for exp_range in baseline.get("experiments") or []:
            revs = exp_range.get("revs") or []
            if revs:  # the range's first revision is the experiment's result
                take({**revs[0], "name": revs[0].get("name") or exp_range.get("name")}, "experiment",
                     (exp_range.get("executor") or {}).get("state"))
    return runs, skipped


REPLICATE_PARAMS = ("train.seed",)  # what differs between runs of one configuration


def _flatten_params(params: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            flat |= _flatten_params(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)  # lists and numbers compare as text
    return flat


def group_runs(params: Mapping[str, Mapping], replicate: Sequence[str] = REPLICATE_PARAMS) -> dict[str, list[str]]:
    """Runs grouped by every param that differs between them but the replicate ones (the seed): one
    interval per architecture (and per other setting), never one pooled over them. Label: "model=k1c2"."""
    names = list(params)
    keys = sorted({k for p in params.values() for k in p} - set(replicate))
    differing = [k for k in keys if len({params[n].get(k) for n in names}) > 1]
    groups: dict[str, list[str]] = {}
    for name in names:
        label = ", ".join(f"{k}={json.loads(params[name][k]) if k in params[name] else '(unset)'}"
                          for k in differing) or "all runs"
        groups.setdefault(label, []).append(name)
    return groups


def confidence_intervals_from_experiments(source: str | bytes | Path | Sequence,
                                          metric_names: Sequence[str] | None, *,
                                          level: float, metrics_file: str = "metrics/evaluate.json",
                                          include_workspace: bool = False, include_baselines: bool = False,
                                          names: Sequence[str] | None = None) -> dict:
    """Mean and Student-t interval of metrics over several runs (the seed's "mean ± CI over N runs"),
    per group of runs that share their params but the seed (`group_runs`).

    `source` is either `dvc exp show --json` output (text, parsed list, or a Path to a .json file holding
    it; see `experiments_metrics` for which entries count), or a list of metric JSON file paths, one per
    run (each a copy of metrics/evaluate.json; one group). `metric_names` are dotted names or patterns
    of that file's keys; None = every numeric one that all runs share. Returns {"level", "groups":
    {label: runs_table's dict}, "skipped": {run or group: reason}}; no group of two usable runs is a
    MusictagError.
    """
    skipped: dict[str, str] = {}
    if _is_path_list(source):
        runs = {}
        for path in map(Path, source):
            try:
                runs[str(path)] = json.loads(path.read_text())
            except FileNotFoundError:
                raise MusictagError(f"{path}: metrics file not found") from None
            except (OSError, ValueError) as err:
                raise MusictagError(f"{path}: not a readable JSON file ({err.__class__.__name__})") from None
            if not isinstance(runs[str(path)], Mapping):
                raise MusictagError(f"{path}: expected a JSON object of metrics")
        groups = {"all runs": list(runs)}
    else:
        params: dict = {}
        runs, skipped = experiments_metrics(source, metrics_file, include_workspace, include_baselines, names, params)
        groups = group_runs(params)
    tables = {}
    for label, members in groups.items():
        if len(members) < 2:
            skipped[f"group {label}"] = f"1 run ({members[0]}): an interval needs at least 2"
        else:
            tables[label] = runs_table({name: runs[name] for name in members}, metric_names, level=level)
    if not tables:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise MusictagError(f"confidence interval: need at least 2 runs with {metrics_file} and the same params "
                            f"but the seed, found {len(runs)} run(s)" + (f" (skipped {why})" if why else "")
                            + " - run e.g. `dvc exp run --queue -S train.seed=1,2,3` and `dvc queue start` first")
    return {"level": level, "groups": tables, "skipped": skipped}


def _is_path_list(source) -> bool:
    return (isinstance(source, (list, tuple)) and len(source) > 0
            and all(isinstance(s, (str, os.PathLike)) for s in source))


def format_intervals(result: Mapping) -> str:
    """`confidence_intervals_from_experiments`'s result as lines of "name  mean ± half_width  [low, high]",
    one block per group of runs."""
    lines = []
    for label, table in result["groups"].items():
        width = max([len(name) for name in table["metrics"]] + [6])
        lines.append(f"{label}: {table['n_runs']} runs, {100 * table['level']:g}% Student-t intervals: "
                     f"{', '.join(table['runs'])}")
        for name, m in table["metrics"].items():
            lines.append(f"  {name:<{width}}  {m['mean']:.4f} ± {m['half_width']:.4f}  "
                         f"[{m['low']:.4f}, {m['high']:.4f}]  n={m['n']}")
    for run, why in (result.get("skipped") or {}).items():
        lines.append(f"skipped {run}: {why}")
    return "\n".join(lines)


# --- the evaluate stage ---------------------------------------------------------------------------------

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
