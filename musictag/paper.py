"""Paper mode: the dissertation's chapter 4 over every (architecture, seed) run, compared with intervals.

`paper/dvc.yaml` trains each pair of `paper.architectures` x `paper.seeds` into `data/paper/runs/<run>/`
(stages/paper_run.py), then `compare` reads them all. Statistics follow the seed (section 4.2.1):
a two-sided Student-t 95% interval over the seeds of one architecture, never pooled across
architectures. For each pair of architectures the difference of macro ROC-AUC is tested twice: Welch's
t-test over the seeds' scores (run-to-run variation) and a paired bootstrap over test songs (every
resample scores both architectures' runs on the same songs: test-set variation). The success criterion
(every tag's accuracy above 50% and its interval's lower bound too) is checked per architecture.
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from musictag import plots
from musictag.categories import dissertation_facts
from musictag.errors import MusictagError
from musictag.files import write_atomic
from musictag.metrics import align_ground_truth, confidence_interval, pick_songs, tag_metrics, top_tags_rows
from musictag.predictions import Predictions

PREDICTIONS, MODEL_DIR, TIMING = "predictions.npz", "model", "timing.csv"  # in each run's folder
MSD_TRAINING_CLIPS = 201_680  # Choi et al.'s training split, which the seed's epoch times are for
MIN_MAP_SONGS = 10  # fewer test songs make no t-SNE map (and openTSNE's affinities degenerate)
HEADLINES = {"roc_auc_macro": ("roc_auc", "macro"), "roc_auc_micro": ("roc_auc", "micro"),
             "pr_auc_macro": ("pr_auc", "macro"), "pr_auc_micro": ("pr_auc", "micro"),
             "accuracy": ("at_half", "accuracy")}


def run_name(model: str, seed: int) -> str:
    """The folder of one run under data/paper/runs (and its metrics file's name)."""
    return f"{model}-seed{seed}"


@dataclass
class Run:
    """One trained (architecture, seed): its test targets and probabilities (n, n_tags) and training log."""

    model: str
    seed: int
    y: np.ndarray
    p: np.ndarray
    clips: pd.DataFrame
    tag_names: list[str]
    timing: pd.DataFrame  # per epoch: train_time_s, epoch_time_s, examples_per_s (musictag.training.Throughput)
    config: dict


def load_runs(runs_dir: Path, models: Sequence[str], seeds: Sequence[int], manifest_path: Path) -> list[Run]:
    """Every listed run's test predictions, aligned with the manifest; all runs must share the test songs."""
    runs = []
    for model, seed in itertools.product(models, seeds):
        folder = Path(runs_dir) / run_name(model, seed)
        test = Predictions.load(folder / PREDICTIONS).subset("test")
        y, clips = align_ground_truth(test, manifest_path)
        try:
            timing = pd.read_csv(folder / TIMING)
            config = json.loads((folder / MODEL_DIR / "config.json").read_text())
        except (OSError, ValueError) as err:
            raise MusictagError(f"{folder}: unreadable training log or config ({err.__class__.__name__}); "
                                "run `dvc repro paper/dvc.yaml`") from None
        runs.append(Run(model, int(seed), y, test.probabilities.astype(np.float64), clips, test.tag_names,
                        timing, config))
    first = runs[0]
    for run in runs[1:]:
        if list(run.clips["id"]) != list(first.clips["id"]) or run.tag_names != first.tag_names:
            raise MusictagError(f"{run_name(run.model, run.seed)}: other test songs or tags than "
                                f"{run_name(first.model, first.seed)} (stale run? `dvc repro paper/dvc.yaml`)")
    return runs


def interval(values: Sequence[float], level: float) -> dict:
    """Mean and Student-t half width over runs (None with a single run)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return {"mean": values[0], "ci": None, "n": len(values)}
    mean, half_width = confidence_interval(values, level)
    return {"mean": mean, "ci": half_width, "n": len(values)}


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
    replacement, the same songs for both: observed difference, 95% percentile interval, two-sided p."""
    rng = np.random.default_rng(seed)

    def difference(rows) -> float:
        yb = y[rows]
        aucs_a = np.array([rank_auc(yb, p[rows]) for p in runs_a])
        aucs_b = np.array([rank_auc(yb, p[rows]) for p in runs_b])
        tags = np.isfinite(aucs_a[0])  # evaluable in this resample: the same tags for both
        return float(aucs_a[:, tags].mean() - aucs_b[:, tags].mean())

    observed = difference(np.arange(len(y)))
    resampled = np.array([difference(rng.integers(0, len(y), len(y))) for _ in range(n_resamples)])
    at_or_below, at_or_above = (resampled <= 0).sum(), (resampled >= 0).sum()
    p_value = min(1.0, (2 * min(at_or_below, at_or_above) + 1) / (n_resamples + 1))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {"difference": observed, "ci_low": float(low), "ci_high": float(high), "p": float(p_value),
            "n_resamples": int(n_resamples)}


def compare(runs: Sequence[Run], categories: dict[str, str], level: float, n_bootstrap: int, seed: int) -> dict:
    """Everything the report shows: per architecture the headline scores, epoch time and per-tag table
    with intervals over seeds, the success criterion, and the pairwise tests of macro ROC-AUC."""
    models = list(dict.fromkeys(run.model for run in runs))
    tag_names = runs[0].tag_names
    per_run = {}
    for run in runs:
        table, summary = tag_metrics(run.y, run.p, tag_names)
        scores = {name: summary[a][b] for name, (a, b) in HEADLINES.items()}
        scores["epoch_time_s"] = float(run.timing["train_time_s"].mean())
        scores["examples_per_s"] = float(run.timing["examples_per_s"].mean())
        per_run[(run.model, run.seed)] = (table.set_index("tag"), scores)

    architectures = {}
    for model in models:
        mine = [per_run[key] for key in per_run if key[0] == model]
        headline = {name: interval([s[name] for _, s in mine], level) for name in mine[0][1]}
        rows = []
        for tag in tag_names:
            row = {"tag": tag, "category": categories.get(tag, "other")}
            for column in ("accuracy", "roc_auc", "pr_auc"):
                values = [t.loc[tag, column] for t, _ in mine if np.isfinite(t.loc[tag, column])]
                if values:
                    value = interval(values, level)
                    row |= {column: value["mean"], column + "_ci": value["ci"]}
            rows.append(row)
        table = pd.DataFrame(rows)
        low = table["accuracy"] - table["accuracy_ci"].fillna(0)  # one seed: no interval, the mean alone
        table["passes"] = (table["accuracy"] > 0.5) & (low > 0.5)
        seeds = sorted(s for m, s in per_run if m == model)
        architectures[model] = {"seeds": seeds, "headline": headline, "per_tag": table,
                                "criterion_failures": table.loc[~table["passes"], "tag"].tolist(),
                                "criterion_has_intervals": len(seeds) > 1}

    tests = []
    y = runs[0].y
    for a, b in itertools.combinations(models, 2):
        scores_a = [s["roc_auc_macro"] for (m, _), (_, s) in per_run.items() if m == a]
        scores_b = [s["roc_auc_macro"] for (m, _), (_, s) in per_run.items() if m == b]
        welch = (stats.ttest_ind(scores_a, scores_b, equal_var=False).pvalue
                 if len(scores_a) > 1 and len(scores_b) > 1 else None)
        bootstrap = paired_bootstrap(y, [r.p for r in runs if r.model == a], [r.p for r in runs if r.model == b],
                                     n_bootstrap, seed)
        tests.append({"a": a, "b": b, "mean_difference": float(np.mean(scores_a) - np.mean(scores_b)),
                      "welch_p": None if welch is None or not np.isfinite(welch) else float(welch),
                      "bootstrap": bootstrap})
    ordering = sorted(models, key=lambda m: -architectures[m]["headline"]["roc_auc_macro"]["mean"])
    return {"level": level, "models": models, "architectures": architectures, "tests": tests,
            "ordering": ordering, "tag_names": tag_names}


def headline_metrics(comparison: dict) -> dict:
    """metrics/paper.json: a few numbers per architecture for `dvc metrics diff` (the rest is the report)."""
    out = {}
    for model, arch in comparison["architectures"].items():
        entry = {}
        for name, value in arch["headline"].items():
            entry[name] = round(value["mean"], 4)
            if value["ci"] is not None:
                entry[name + "_ci95"] = round(value["ci"], 4)
        entry |= {"seeds": len(arch["seeds"]), "criterion_passed": not arch["criterion_failures"],
                  "criterion_failing_tags": len(arch["criterion_failures"])}
        out[model] = entry
    out["ordering"] = " > ".join(comparison["ordering"])
    return out


# --- the report --------------------------------------------------------------------------------------------


def _png(draw) -> str:
    """An <img> of the PNG that `draw(file)` writes, inline, so the page needs no other file."""
    buffer = io.BytesIO()
    draw(buffer)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _cell(mean, ci, scale: float = 1.0, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and not np.isfinite(mean)):
        return ""
    text = f"{mean * scale:.{digits}f}"
    return text + (f" ± {ci * scale:.{digits}f}" if ci is not None and np.isfinite(ci) else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _clusters(coordinates: np.ndarray, top_tags: Sequence[str], seed: int) -> np.ndarray:
    """Rows of the map's most coherent cluster (k-means on the map; the one whose songs most often
    share their top tag, at least 4 songs), for table 4.4."""
    from sklearn.cluster import KMeans

    k = max(2, int(round(np.sqrt(len(coordinates) / 4))))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(coordinates)
    best, best_share = np.arange(len(coordinates)), -1.0
    for label in range(k):
        rows = np.flatnonzero(labels == label)
        if len(rows) >= 4:
            share = pd.Series([top_tags[i] for i in rows]).value_counts().iloc[0] / len(rows)
            if share > best_share:
                best, best_share = rows, share
    return best


def write_report(comparison: dict, runs: Sequence[Run], settings: dict, path: Path, tsne_options: dict,
                 top_songs: int, top_k: int) -> None:
    """One self-contained HTML page (figures inline as PNG) with every table and figure of chapter 4,
    each beside the dissertation's own where it gives one."""
    facts = dissertation_facts()
    level = comparison["level"]
    models, archs = comparison["models"], comparison["architectures"]
    sections = [f"<h1>Paper mode: {html.escape(' vs '.join(models))}</h1>",
                "<p>Dissertation chapter 4 reproduced on this pipeline's data. Intervals: two-sided Student-t "
                f"{100 * level:g}% over the seeds of one architecture.</p>"]
    sections.append("<h2>Settings</h2>" + _table(["setting", "value"], [
        (html.escape(k), html.escape(str(v))) for k, v in settings.items()]))

    headers = ["architecture", "seeds", "macro ROC-AUC", "micro ROC-AUC", "macro PR-AUC", "micro PR-AUC",
               "accuracy", "epoch (s, training)", "criterion"]
    rows = []
    for model in models:
        h = archs[model]["headline"]
        failures = archs[model]["criterion_failures"]
        rows.append([model, str(len(archs[model]["seeds"]))]
                    + [_cell(h[n]["mean"], h[n]["ci"]) for n in HEADLINES]
                    + [_cell(h["epoch_time_s"]["mean"], h["epoch_time_s"]["ci"], digits=1) if "epoch_time_s" in h else ""]
                    + [("passed" if not failures else f"failed ({len(failures)} tags)")
                       + ("" if archs[model]["criterion_has_intervals"] else " (means only: one seed)")])
    sections.append("<h2>Headline (test split)</h2>" + _table(headers, rows)
                    + f"<p>Ordering by macro ROC-AUC here: <b>{' > '.join(comparison['ordering'])}</b>; "
                    f"the dissertation: <b>{' > '.join(facts['ordering'])}</b>. "
                    f"<i>{html.escape(facts['ordering_statement'])}</i></p>")

    if all("epoch_time_s" in archs[m]["headline"] for m in models):
        ours = {m: (archs[m]["headline"]["epoch_time_s"]["mean"], archs[m]["headline"]["epoch_time_s"]["ci"])
                for m in models}
        theirs = {"k2c1 (dissertation)": (facts["epoch_time_s"]["k2c1"]["mean"], facts["epoch_time_s"]["k2c1"]["ci95"]),
                  "k2c1 (Choi et al.)": (facts["epoch_time_s"]["choi_et_al_k2c1"], None)}
        sections.append("<h2>Figure 4.3: time per epoch</h2>"
                        + _png(lambda out: plots.epoch_times(ours, theirs, out,
                                                             f"this run ({settings['training clips']} clips)"))
                        + f"<p>Dissertation ({html.escape(facts['figures'].get('4.3', ''))}): k2c1 "
                        f"{facts['epoch_time_s']['k2c1']['mean']} ± {facts['epoch_time_s']['k2c1']['ci95']} s per "
                        f"epoch against Choi et al.'s {facts['epoch_time_s']['choi_et_al_k2c1']} s, on MSD's "
                        f"{MSD_TRAINING_CLIPS:,} training clips: "
                        f"{MSD_TRAINING_CLIPS / facts['epoch_time_s']['k2c1']['mean']:.0f} examples/s. Here: "
                        + ", ".join(f"{m} {archs[m]['headline']['examples_per_s']['mean']:.1f} examples/s"
                                    for m in models) + ".</p>")

    sections.append("<h2>Tables 4.1 and 4.2: per-tag accuracy by category</h2>"
                    f"<p>The criterion: <i>{html.escape(facts['success_criterion'].split(' || ')[0])}</i></p>")
    # the seed's per-tag accuracies are MSD's: beside another dataset's tags of the same name they would mislead
    reference = ({t.lower(): v for t, v in facts["per_tag_accuracy_percent"].items()}
                 if settings.get("dataset") == "msd" else {})
    first = archs[models[0]]["per_tag"]
    for category in sorted(first["category"].unique()):
        rows = []
        for tag in first.loc[first["category"] == category, "tag"]:
            row = [html.escape(tag)]
            for model in models:
                entry = archs[model]["per_tag"].set_index("tag").loc[tag]
                mark = "" if entry["passes"] else " ✗"
                row.append(_cell(entry["accuracy"], entry["accuracy_ci"], 100, 1) + "%" + mark)
            theirs = reference.get(tag.lower())
            row.append(f"{theirs['mean']}% ± {theirs['ci95']}%" if theirs else "")
            rows.append(row)
        sections.append(f"<h3>{html.escape(category)}</h3>"
                        + _table(["tag", *models, "dissertation k2c1 (MSD)" if reference else ""], rows))

    tables = {m: archs[m]["per_tag"] for m in models}
    sections.append("<h2>Figure 4.4: average precision per tag</h2>"
                    + _png(lambda out: plots.per_tag_bars(tables, "pr_auc", out, "average precision (test)",
                                                          "AP per tag"))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.4', ''))}</p>")
    mean_scores = {m: {"macro": (archs[m]["headline"]["roc_auc_macro"]["mean"], archs[m]["headline"]["roc_auc_macro"]["ci"]),
                       "micro": (archs[m]["headline"]["roc_auc_micro"]["mean"], archs[m]["headline"]["roc_auc_micro"]["ci"])}
                   for m in models}
    sections.append("<h2>Figures 4.5-4.6: mean ROC-AUC</h2>"
                    + _png(lambda out: plots.mean_scores(mean_scores, out, "mean ROC-AUC"))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.5', ''))}</p>")
    for k, model in enumerate(models):
        sections.append(f"<h2>Figure 4.{7 + k}: per-tag ROC-AUC, {html.escape(model)}</h2>"
                        + _png(lambda out: plots.per_tag_bars({model: tables[model]}, "roc_auc", out,
                                                            "ROC-AUC (test)", model)))

    rows = [[f"{t['a']} - {t['b']}", f"{t['mean_difference']:+.4f}",
             "" if t["welch_p"] is None else f"{t['welch_p']:.3g}",
             f"{t['bootstrap']['difference']:+.4f} [{t['bootstrap']['ci_low']:+.4f}, {t['bootstrap']['ci_high']:+.4f}]",
             f"{t['bootstrap']['p']:.3g}"] for t in comparison["tests"]]
    sections.append("<h2>Is the difference significant? (macro ROC-AUC)</h2>"
                    + _table(["pair", "difference of the seed means", "Welch t-test p (over seeds)",
                              "paired bootstrap over test songs: difference [95%]", "bootstrap p"], rows)
                    + f"<p>{comparison['tests'][0]['bootstrap']['n_resamples'] if comparison['tests'] else 0} "
                    "resamples of the test songs, the same for both architectures; p two-sided.</p>")

    best = comparison["ordering"][0]
    best_runs = [r for r in runs if r.model == best]
    probabilities = np.mean([r.p for r in best_runs], axis=0)
    y, clips, tag_names = best_runs[0].y, best_runs[0].clips, best_runs[0].tag_names
    rows = []
    for entry in top_tags_rows(y, probabilities, clips, tag_names, pick_songs(y, probabilities, list(clips["artist"]),
                                                                              top_songs), top_k):
        predicted = ", ".join(f"{'<b>' if hit else ''}{html.escape(t)}{'</b>' if hit else ''} {s:.2f}"
                              for t, s, hit in entry["predicted"])
        rows.append([html.escape(entry["artist"]), html.escape(entry["title"]), predicted,
                     html.escape(", ".join(entry["truth"]))])
    theirs = [[html.escape(r["artist"]), html.escape(r["song"]),
               ", ".join(f"{html.escape(t['tag'])} {t['score_verbatim']}" for t in r["tags"])]
              for r in facts["table_4_3"]]
    sections.append(f"<h2>Table 4.3: tag predictions for test songs ({html.escape(best)}, mean of its seeds)</h2>"
                    + _table(["artist", "title", "predicted (bold: a true tag)", "true tags"], rows)
                    + "<p>Dissertation:</p>" + _table(["artist", "song", "predicted"], theirs))

    if len(probabilities) >= MIN_MAP_SONGS:
        sections.append(_map_sections(probabilities, clips, tag_names, best, tsne_options, top_k, facts))
    else:
        sections.append(f"<h2>Figures 4.10-4.12 and table 4.4</h2><p>Not drawn: {len(probabilities)} test songs, "
                        f"a map needs at least {MIN_MAP_SONGS}.</p>")

    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:left}th{background:#f3f3f3}img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>musictag paper mode</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")
    write_atomic(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _map_sections(probabilities: np.ndarray, clips: pd.DataFrame, tag_names: Sequence[str], model: str,
                  tsne_options: dict, top_k: int, facts: dict) -> str:
    """Figures 4.10-4.12 (the t-SNE map with artist names) and table 4.4 (one cluster's artists)."""
    from musictag.tsne_map import embed

    coordinates, _ = embed(probabilities, **{key: tsne_options[key] for key in
                                             ("implementation", "perplexity", "metric", "seed", "n_jobs", "n_iter")})
    top_tags = [tag_names[j] for j in probabilities.argmax(axis=1)]
    cluster = _clusters(coordinates, top_tags, tsne_options["seed"])
    spread = np.linspace(0, len(coordinates) - 1, min(40, len(coordinates))).astype(int)
    labelled = sorted(set(spread) | set(cluster[:12]))
    html_map = (f"<h2>Figures 4.10-4.12: t-SNE of predicted tags with artist names ({html.escape(model)})</h2>"
                + _png(lambda out: plots.labelled_map(coordinates, top_tags, list(clips["artist"]), labelled, out,
                                           f"{len(coordinates)} test songs, coloured by top predicted tag"))
                + f"<p>Dissertation: {html.escape(facts['figures'].get('4.10', ''))}</p>")
    rows = [[html.escape(str(clips["artist"].iloc[i])), html.escape(str(clips["title"].iloc[i])),
             ", ".join(f"{html.escape(tag_names[j])} {probabilities[i, j]:.2f}"
                       for j in np.argsort(-probabilities[i])[:top_k])] for i in cluster[:12]]
    theirs = [[html.escape(r["artist"]), html.escape(r["song"]),
               ", ".join(f"{html.escape(t['tag'])} {t['score_verbatim']}" for t in r["tags"])]
              for r in facts["table_4_4"]]
    return (html_map + "<h2>Table 4.4: the artists of one cluster and their tags</h2>"
            + _table(["artist", "title", "top tags"], rows)
            + "<p>Dissertation:</p>" + _table(["artist", "song", "tags"], theirs))


def library_versions() -> dict[str, str]:
    """Versions of the libraries behind the numbers, for the report's settings."""
    names = ["tensorflow-cpu", "tensorflow", "keras", "numpy", "scipy", "scikit-learn", "librosa", "openTSNE", "dvc"]
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
