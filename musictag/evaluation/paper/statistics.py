"""Paper mode's statistics: the dissertation's chapter 4 over every (architecture, seed) run, compared with intervals.

`paper/dvc.yaml` trains each pair of `paper.architectures` x `paper.seeds` into `data/paper/runs/<run>/`
(stages/paper_run.py, musictag.evaluation.paper.runs), then `compare` reads them all; musictag.evaluation.paper.report draws them.
Statistics follow the seed (section 4.2.1): a two-sided Student-t interval over the seeds of one architecture,
never pooled across architectures. A score bounded by 0 and 1 (ROC-AUC, AP, accuracy) gets its interval on
the logit scale, mapped back, so it stays inside (0, 1) however few the seeds (`interval`). For each pair of
architectures the difference of macro ROC-AUC is tested twice: Welch's t-test over the seeds' scores
(run-to-run variation) and a paired bootstrap over test songs (test-set variation). The seed's success
criterion (every tag's accuracy above 50% and its interval's lower bound too) is checked per architecture,
and against each tag's majority-class baseline, which a model that always answers "no" already reaches.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from musictag.dissertation import dissertation_facts
from musictag.errors import MusictagError
from musictag.evaluation.intervals import confidence_interval
from musictag.evaluation.paper.runs import ACCURACY_PREDICTIONS, MODEL_DIR, PREDICTIONS, TIMING, run_name
from musictag.evaluation.scores import align_ground_truth, tag_metrics
from musictag.inference.predictions import Predictions
from musictag.inference.tag_map import all_alike

HEADLINES = {"roc_auc_macro": ("roc_auc", "macro"), "roc_auc_micro": ("roc_auc", "micro"),
             "pr_auc_macro": ("pr_auc", "macro"), "pr_auc_micro": ("pr_auc", "micro"),
             "accuracy": ("at_half", "accuracy")}
BOUNDED_EDGE = 1e-6  # a bounded score of exactly 0 or 1 sits this far inside on the logit scale


@dataclass
class Run:
    """One trained (architecture, seed): test targets and probabilities (n, n_tags), its logs and config.
    `p_accuracy` are the probabilities the accuracy tables use where the recipe takes them from another
    epoch (the seed's 30-epoch sessions); None: `p`."""

    model: str
    seed: int
    y: np.ndarray
    p: np.ndarray
    clips: pd.DataFrame
    tag_names: list[str]
    timing: pd.DataFrame  # per epoch: train_time_s, epoch_time_s, examples_per_s (musictag.model.training.Throughput)
    history: pd.DataFrame  # per epoch: loss, val_auc, ... (Keras' history.csv)
    config: dict
    p_accuracy: np.ndarray | None = None

    @property
    def best_val_auc(self) -> float:
        """The validation macro ROC-AUC of the epoch whose weights were kept (best.keras)."""
        return float(self.history["val_auc"].max()) if "val_auc" in self.history and len(self.history) else np.nan


def load_runs(runs_dir: Path, models: Sequence[str], seeds: Sequence[int], manifest_path: Path) -> list[Run]:
    """Every listed run's test predictions, aligned with the manifest; all runs must share the test songs."""
    runs = []
    for model, seed in itertools.product(models, seeds):
        folder = Path(runs_dir) / run_name(model, seed)
        test = Predictions.load(folder / PREDICTIONS).subset("test")
        y, clips = align_ground_truth(test, manifest_path)
        accuracy_file = folder / ACCURACY_PREDICTIONS
        p_accuracy = (Predictions.load(accuracy_file).subset("test").probabilities.astype(np.float64)
                      if accuracy_file.exists() else None)
        try:
            timing = pd.read_csv(folder / TIMING)
            history = pd.read_csv(folder / MODEL_DIR / "history.csv")
            config = json.loads((folder / MODEL_DIR / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise MusictagError(f"{folder}: unreadable training log or config ({err.__class__.__name__}); "
                                "run `dvc repro paper/dvc.yaml`") from None
        runs.append(Run(model, int(seed), y, test.probabilities.astype(np.float64), clips, test.tag_names,
                        timing, history, config, p_accuracy))
    first = runs[0]
    for run in runs[1:]:
        if list(run.clips["id"]) != list(first.clips["id"]) or run.tag_names != first.tag_names:
            raise MusictagError(f"{run_name(run.model, run.seed)}: other test songs or tags than "
                                f"{run_name(first.model, first.seed)} (stale run? `dvc repro paper/dvc.yaml`)")
    return runs


def interval(values: Sequence[float], level: float, bounded: bool = False) -> dict:
    """Mean, Student-t half width `ci` and interval [low, high] over runs (no interval with a single run).

    With `bounded`, for a score in [0, 1], low and high come from the t interval of the logits mapped back
    through the logistic function: inside (0, 1) whatever the spread, asymmetric near a bound; `ci` stays the
    plain half width the seed reports. Identical values give a zero-width interval at that value."""
    values = np.asarray([float(v) for v in values])
    mean = float(values.mean())
    if len(values) < 2:
        return {"mean": mean, "ci": None, "low": None, "high": None, "n": len(values)}
    _, half_width = confidence_interval(values, level)
    if not bounded or np.ptp(values) == 0:
        return {"mean": mean, "ci": half_width, "low": mean - half_width, "high": mean + half_width, "n": len(values)}
    centre, spread = confidence_interval(special.logit(np.clip(values, BOUNDED_EDGE, 1 - BOUNDED_EDGE)), level)
    low, high = special.expit(centre - spread), special.expit(centre + spread)
    return {"mean": mean, "ci": half_width, "low": float(min(low, mean)), "high": float(max(high, mean)),
            "n": len(values)}


def rank_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-tag ROC-AUC (n_tags,) from ranks, ties averaged (scikit-learn's value); NaN for a tag with one
    class. Vectorised over tags, so a bootstrap of thousands of resamples stays cheap."""
    ranks = stats.rankdata(p, axis=0)
    n_pos = y.sum(axis=0)
    n_neg = len(y) - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * y).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def paired_bootstrap(y: np.ndarray, runs_a: Sequence[np.ndarray], runs_b: Sequence[np.ndarray],
                     n_resamples: int, seed: int) -> dict:
    """Macro ROC-AUC difference (mean over A's runs - mean over B's) on test songs resampled with
    replacement, the same songs for both: observed difference, 95% percentile interval, two-sided p
    (its smallest value is 1 / (n_resamples + 1), kept as `p_floor`)."""
    rng = np.random.default_rng(seed)

    def difference(rows) -> float:
        yb = y[rows]
        aucs_a = np.array([rank_auc(yb, p[rows]) for p in runs_a])
        aucs_b = np.array([rank_auc(yb, p[rows]) for p in runs_b])
        tags = np.isfinite(aucs_a[0])  # evaluable in this resample: the same tags for both
        return float(aucs_a[:, tags].mean() - aucs_b[:, tags].mean()) if tags.any() else 0.0

    observed = difference(np.arange(len(y)))
    resampled = np.array([difference(rng.integers(0, len(y), len(y))) for _ in range(n_resamples)])
    at_or_below, at_or_above = (resampled <= 0).sum(), (resampled >= 0).sum()
    p_value = min(1.0, (2 * min(at_or_below, at_or_above) + 1) / (n_resamples + 1))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"difference": observed, "ci_low": float(low), "ci_high": float(high), "p": float(p_value),
            "p_floor": 1 / (n_resamples + 1), "n_resamples": int(n_resamples)}


def top_tag_share(p: np.ndarray) -> float:
    """The share of songs whose top predicted tag is the most common top tag: near 1 when a model answers
    alike for every song."""
    return float(np.bincount(p.argmax(axis=1)).max() / len(p))


def _per_run(run: Run) -> tuple[pd.DataFrame, dict]:
    """One run's per-tag table (accuracy from `p_accuracy` where the recipe says) and headline scores."""
    table, summary = tag_metrics(run.y, run.p, run.tag_names)
    if run.p_accuracy is not None:
        accuracy_table, accuracy_summary = tag_metrics(run.y, run.p_accuracy, run.tag_names)
        table["accuracy"] = accuracy_table["accuracy"]
        summary["at_half"]["accuracy"] = accuracy_summary["at_half"]["accuracy"]
    scores = {name: summary[a][b] for name, (a, b) in HEADLINES.items()}
    scores |= {"epoch_time_s": float(run.timing["train_time_s"].mean()),
               "examples_per_s": float(run.timing["examples_per_s"].mean())}
    return table.set_index("tag"), scores


def compare(runs: Sequence[Run], categories: dict[str, str], level: float, n_bootstrap: int, seed: int,
            max_epochs: int | None = None) -> dict:
    """Everything the report shows: per architecture the headline scores, epochs, epoch time and per-tag table
    with intervals over seeds, the success criterion against chance and against the majority class, the runs
    that answer alike for every song, the pairwise tests of macro ROC-AUC, and the run chosen on validation
    for the tables of single songs. `max_epochs`: the cap a converged run may have stopped at (None: fixed)."""
    models = list(dict.fromkeys(run.model for run in runs))
    tag_names = runs[0].tag_names
    per_run = {(run.model, run.seed): _per_run(run) for run in runs}
    base_rate = runs[0].y.mean(axis=0)
    majority = np.maximum(base_rate, 1 - base_rate)  # the accuracy of always answering the commoner class

    architectures = {}
    for model in models:
        mine = [per_run[key] for key in per_run if key[0] == model]
        headline = {name: interval([s[name] for _, s in mine], level, bounded=name in HEADLINES)
                    for name in mine[0][1]}
        rows = []
        for j, tag in enumerate(tag_names):
            row = {"tag": tag, "category": categories.get(tag, "other"), "majority": float(majority[j])}
            for column in ("accuracy", "roc_auc", "pr_auc"):
                values = [t.loc[tag, column] for t, _ in mine if np.isfinite(t.loc[tag, column])]
                if values:
                    value = interval(values, level, bounded=True)
                    row |= {column: value["mean"], column + "_low": value["low"], column + "_high": value["high"]}
            rows.append(row)
        table = pd.DataFrame(rows)
        low = table["accuracy_low"].fillna(table["accuracy"])  # one seed: no interval, the mean alone
        table["passes"] = (table["accuracy"] > 0.5) & (low > 0.5)
        table["beats_majority"] = low > table["majority"] + 1e-12
        my_runs = [run for run in runs if run.model == model]
        epochs = [len(run.history) for run in my_runs]
        architectures[model] = {
            "seeds": [run.seed for run in my_runs], "headline": headline, "per_tag": table,
            "criterion_failures": table.loc[~table["passes"], "tag"].tolist(),
            "trivial_passes": table.loc[table["passes"] & ~table["beats_majority"], "tag"].tolist(),
            "criterion_has_intervals": len(my_runs) > 1,
            "epochs": epochs, "runs_at_cap": [run.seed for run, e in zip(my_runs, epochs)
                                              if max_epochs is not None and e >= max_epochs],
            "degenerate_runs": [run.seed for run in my_runs if all_alike(run.p)],
            "top_tag_share": {run.seed: top_tag_share(run.p) for run in my_runs},
            "best_seed": max(my_runs, key=lambda run: run.best_val_auc).seed,
            "best_val_auc_mean": float(np.mean([run.best_val_auc for run in my_runs]))}

    tests = []
    y = runs[0].y
    for a, b in itertools.combinations(models, 2):
        scores_a = [s["roc_auc_macro"] for (m, _), (_, s) in per_run.items() if m == a]
        scores_b = [s["roc_auc_macro"] for (m, _), (_, s) in per_run.items() if m == b]
        welch = None
        if len(scores_a) > 1 and len(scores_b) > 1 and np.ptp(scores_a) + np.ptp(scores_b) > 0:
            welch = stats.ttest_ind(scores_a, scores_b, equal_var=False).pvalue  # no spread at all: no test
        bootstrap = paired_bootstrap(y, [r.p for r in runs if r.model == a], [r.p for r in runs if r.model == b],
                                     n_bootstrap, seed)
        tests.append({"a": a, "b": b, "mean_difference": float(np.mean(scores_a) - np.mean(scores_b)),
                      "welch_p": None if welch is None or not np.isfinite(welch) else float(welch),
                      "bootstrap": bootstrap})
    ordering = sorted(models, key=lambda m: -architectures[m]["headline"]["roc_auc_macro"]["mean"])
    chosen = max(models, key=lambda m: architectures[m]["best_val_auc_mean"])
    return {"level": level, "models": models, "architectures": architectures, "tests": tests,
            "ordering": ordering, "tag_names": tag_names, "max_epochs": max_epochs,
            "chosen": {"model": chosen, "seed": architectures[chosen]["best_seed"]}}


def seed_claims(comparison: dict) -> list[dict]:
    """The dissertation's headline statements beside this comparison's counterpart of each: {claim, seed,
    here, holds} and a short `key` (holds None where this comparison lacks an architecture the statement needs)."""
    facts = dissertation_facts()
    archs, models = comparison["architectures"], comparison["models"]
    auc = {m: archs[m]["headline"]["roc_auc_macro"]["mean"] for m in models}
    claims = [{"key": "best_roc_auc_macro", "claim": "best macro ROC-AUC (abstract: 'up to an AUC-ROC score of 0.78')", "seed": 0.78,
               "here": round(max(auc.values()), 4), "holds": max(auc.values()) >= 0.78}]
    seed_order = [m for m in facts["ordering"] if m in models]
    here_order = [m for m in comparison["ordering"] if m in seed_order]
    claims.append({"key": "ordering", "claim": "ordering by mean ROC-AUC", "seed": " > ".join(facts["ordering"]),
                   "here": " > ".join(comparison["ordering"]),
                   "holds": here_order == seed_order if len(seed_order) > 1 else None})
    if {"k2c2", "k2c1"} <= set(models):
        both = archs["k2c2"]["per_tag"].set_index("tag")["roc_auc"].to_frame("k2c2").join(
            archs["k2c1"]["per_tag"].set_index("tag")["roc_auc"].rename("k2c1")).dropna()
        wins = int((both["k2c2"] > both["k2c1"]).sum())
        claims.append({"key": "k2c2_beats_k2c1_on_every_tag", "claim": "k2c2 outperforms k2c1 (ROC-AUC) for all tags", "seed": "50 of 50",
                       "here": f"{wins} of {len(both)}", "holds": wins == len(both)})
    if "k2c2" in models and len(models) > 1:
        ap = pd.DataFrame({m: archs[m]["per_tag"].set_index("tag")["pr_auc"] for m in models}).dropna()
        best = int((ap.idxmax(axis=1) == "k2c2").sum())
        claims.append({"key": "k2c2_best_ap_on_most_tags", "claim": "k2c2 has the best average precision on most tags", "seed": "32 of 50",
                       "here": f"{best} of {len(ap)}", "holds": best > len(ap) / 2})
    for model in models:
        accuracy = archs[model]["per_tag"]["accuracy"].dropna()
        claims.append({"key": f"accuracy_81_to_99_{model}", "claim": f"per-tag accuracy range ({model}; the seed's is k2c1's)", "seed": "81%-99%",
                       "here": f"{100 * accuracy.min():.1f}%-{100 * accuracy.max():.1f}%",
                       "holds": bool(accuracy.min() >= 0.81)})
        trivial, failures = archs[model]["trivial_passes"], archs[model]["criterion_failures"]
        n_tags = len(archs[model]["per_tag"])
        claims.append({"key": f"criterion_{model}", "claim": f"every tag above 50% accuracy, interval too ({model})", "seed": "achieved",
                       "here": f"{n_tags - len(failures)} of {n_tags} tags; {len(trivial)} of them no better than "
                               "always answering the commoner class",
                       "holds": not failures})
    return claims


def headline_metrics(comparison: dict) -> dict:
    """metrics/paper.json: a few numbers per architecture for `dvc metrics diff`, the pairwise p-values and the
    seed's claims (the rest is the report)."""
    out = {}
    for model, arch in comparison["architectures"].items():
        epochs = arch["epochs"]
        entry = {"seeds": len(arch["seeds"]), "epochs_mean": round(float(np.mean(epochs)), 2),
                 "epochs_min": int(min(epochs)), "epochs_max": int(max(epochs)), "runs_at_cap": len(arch["runs_at_cap"])}
        for name, value in arch["headline"].items():
            entry[name] = round(value["mean"], 4)
            if value["low"] is not None and name in HEADLINES:
                entry[name + "_low"], entry[name + "_high"] = round(value["low"], 4), round(value["high"], 4)
            elif value["ci"] is not None:
                entry[name + "_ci95"] = round(value["ci"], 4)
        entry |= {"criterion_passed": not arch["criterion_failures"],
                  "criterion_failing_tags": len(arch["criterion_failures"]),
                  "criterion_trivial_tags": len(arch["trivial_passes"]),
                  "degenerate_runs": len(arch["degenerate_runs"])}
        out[model] = entry
    out["ordering"] = " > ".join(comparison["ordering"])
    out["tests"] = {f"{t['a']}-{t['b']}": {"difference": round(t["mean_difference"], 4),
                                           "welch_p": None if t["welch_p"] is None else round(t["welch_p"], 4),
                                           "bootstrap_p": round(t["bootstrap"]["p"], 4)}
                    for t in comparison["tests"]}
    out["seed_claims_hold"] = {c["key"]: c["holds"] for c in seed_claims(comparison)}
    return out
