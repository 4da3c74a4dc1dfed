"""Paper mode's report: one self-contained HTML page (figures inline as PNG) with chapter 4's tables and figures,
each beside the dissertation's own, from musictag.evaluation.paper.statistics's comparison.

What the page must never do is pass off weak evidence as the dissertation's: a banner at the top says whenever
the runs fall short of the seed's recipe (fewer epochs, runs stopped at the cap, another dataset, runs that
answer alike for every song), and every criterion is also judged against always answering the commoner class.
"""
from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from musictag.dissertation import dissertation_facts
from musictag.evaluation.evaluate import pick_songs, top_tags_rows
from musictag.evaluation.paper import figures as paper_figures
from musictag.evaluation.paper.runs import run_name
from musictag.evaluation.paper.statistics import HEADLINES, Run, seed_claims
from musictag.files import write_atomic
from musictag.inference.tag_map import all_alike

MSD_TRAINING_CLIPS = 201_680  # Choi et al.'s training split, which the seed's epoch times are for
MIN_MAP_SONGS = 10  # fewer test songs make no t-SNE map (and openTSNE's affinities degenerate)
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
         "font-size:13px;text-align:left}th{background:#f3f3f3}img{max-width:100%}"
         ".banner{background:#fff4e5;border:2px solid #e8a33d;padding:0.6em 1em;margin:1em 0}"
         ".no{color:#b42318}.yes{color:#1a7f37}")


def _png(draw) -> str:
    """An <img> of the PNG that `draw(file)` writes, inline, so the page needs no other file."""
    buffer = io.BytesIO()
    draw(buffer)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _cell(value: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """mean [low, high] of an interval dict (musictag.evaluation.paper.statistics.interval), or the mean alone."""
    if value is None or value.get("mean") is None or not np.isfinite(value["mean"]):
        return ""
    text = f"{value['mean'] * scale:.{digits}f}{unit}"
    if value.get("low") is not None:
        text += f" [{value['low'] * scale:.{digits}f}, {value['high'] * scale:.{digits}f}]"
    return text


def _row_cell(row: pd.Series, column: str, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    if column not in row or pd.isna(row[column]):
        return ""
    low, high = row.get(column + "_low"), row.get(column + "_high")
    return _cell({"mean": row[column], "low": None if pd.isna(low) else low, "high": None if pd.isna(high) else high},
                 scale, digits, unit)


def p_value(p: float | None, floor: float | None = None) -> str:
    """A p-value as a reader wants it: three significant digits, '< 0.001' below that, and '≤ floor' at the
    smallest value a bootstrap of its size can give."""
    if p is None:
        return "n/a (no spread over seeds)"
    if floor is not None and p <= floor * (1 + 1e-9):
        return f"≤ {floor:.2g} (every resample on one side)"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _plain(text: str) -> str:
    """The seed's text without its Markdown emphasis, escaped for HTML."""
    return html.escape(re.sub(r"\*{1,2}([^*]+)\*{1,2}", r"\1", text))


def _verdict(holds: bool | None) -> str:
    return {True: '<span class="yes">holds</span>', False: '<span class="no">does not hold</span>',
            None: "not checked here"}[holds]


def _seeds(seeds: Sequence[int]) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def shortfalls(comparison: dict, settings: dict, recipe: str) -> list[str]:
    """What keeps these runs from being the dissertation's comparison, one sentence each (empty: nothing)."""
    facts = dissertation_facts()
    archs = comparison["architectures"]
    found = []
    if recipe != "seed":
        trained = ", ".join(f"{m} {min(a['epochs'])}-{max(a['epochs'])}" if min(a["epochs"]) != max(a["epochs"])
                            else f"{m} {a['epochs'][0]}" for m, a in archs.items())
        seed = ", ".join(f"{m} {facts['epochs'][m]}" for m in archs if m in facts["epochs"])
        found.append(f"Epochs trained per run: {trained}; the dissertation trained {seed} for its AUC and AP figures "
                     f"and {facts['epochs']['accuracy_sessions_each']} per run for its accuracy tables.")
    at_cap = {m: a["runs_at_cap"] for m, a in archs.items() if a["runs_at_cap"]}
    if at_cap:
        found.append("Stopped at the cap of paper.max_epochs = "
                     f"{comparison['max_epochs']} while still improving, so not converged: "
                     + "; ".join(f"{m} {_seeds(s)}" for m, s in at_cap.items()) + ".")
    degenerate = {m: a["degenerate_runs"] for m, a in archs.items() if a["degenerate_runs"]}
    for model, seeds in degenerate.items():
        found.append(f"{model} predicts the same tags for every test song in {_seeds(seeds)}: "
                     "a degenerate model, scored at chance.")
    alike = {m: max(a["top_tag_share"].values()) for m, a in archs.items()}
    answering_alike = [f"{m} ({100 * share:.0f}% of songs)" for m, share in alike.items() if share >= 0.5
                       and not archs[m]["degenerate_runs"]]
    if answering_alike:
        found.append("Under-trained runs answer alike: one tag is the top prediction of most test songs in "
                     + ", ".join(answering_alike) + ".")
    trivial = {m: len(a["trivial_passes"]) for m, a in archs.items() if a["trivial_passes"]}
    if trivial:
        found.append("Tags that pass the seed's criterion only by always answering the commoner class: "
                     + ", ".join(f"{m} {n}" for m, n in trivial.items()) + " (flagged in tables 4.1-4.2).")
    if settings.get("dataset") != "msd":
        found.append(f"Data: the {settings.get('dataset')} corpus ({settings.get('training clips')} training clips), "
                     f"not MSD's {MSD_TRAINING_CLIPS:,}; per-tag figures are not comparable tag for tag.")
    return found


def write_report(comparison: dict, runs: Sequence[Run], settings: dict, path: Path, tsne_options: dict,
                 top_songs: int, top_k: int, recipe: str) -> None:
    """The report page at `path`, written atomically. `settings` (label -> value) is shown as given and must
    hold "dataset" and "training clips"; `recipe` is paper.recipe."""
    facts = dissertation_facts()
    archs, models = comparison["architectures"], comparison["models"]
    tables = {m: archs[m]["per_tag"] for m in models}
    sections = [f"<h1>Paper mode: {html.escape(' vs '.join(models))}</h1>"]
    short = shortfalls(comparison, settings, recipe)
    if short:
        sections.append('<div class="banner"><b>These runs fall short of the dissertation\'s recipe; read every '
                        "number below with that in mind.</b><ul>"
                        + "".join(f"<li>{html.escape(s)}</li>" for s in short) + "</ul></div>")
    sections.append(f"<p>Dissertation chapter 4 reproduced on this pipeline's data. Intervals: {100 * comparison['level']:g}% "
                    "Student-t over the seeds of one architecture; for scores between 0 and 1 (ROC-AUC, AP, accuracy) "
                    "computed on the logit scale and mapped back, so [low, high] stays inside (0, 1).</p>")
    sections.append("<h2>Settings</h2>" + _table(["setting", "value"], [
        (html.escape(k), html.escape(str(v))) for k, v in settings.items()]))
    sections.append(_headline_section(comparison))
    sections.append(_claims_section(comparison))
    sections.append("<h2>Figure 4.2: training loss, and the validation curve that stops each run</h2>"
                    + _png(lambda out: paper_figures.learning_curves(runs, out, comparison["max_epochs"]))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.2', ''))}</p>")
    sections.append(_epoch_time_section(comparison, settings, facts))
    sections.append(_accuracy_section(comparison, settings, facts))
    sections.append("<h2>Figure 4.4: average precision per tag</h2>"
                    + _png(lambda out: paper_figures.per_tag_bars(tables, "pr_auc", out, "average precision (test)",
                                                                  "AP per tag, mean over seeds and interval"))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.4', ''))}</p>")
    means = {m: archs[m]["headline"]["roc_auc_macro"]["mean"] for m in models}
    sections.append("<h2>Figure 4.5: per-tag ROC-AUC of every architecture, with their means</h2>"
                    + _png(lambda out: paper_figures.per_tag_overlay(tables, means, out, "ROC-AUC (test)"))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.5', ''))}</p>")
    mean_scores = {m: {kind: (h["mean"], h["low"], h["high"]) for kind, h in
                       (("macro", archs[m]["headline"]["roc_auc_macro"]), ("micro", archs[m]["headline"]["roc_auc_micro"]))}
                   for m in models}
    sections.append("<h2>Figure 4.6: mean ROC-AUC</h2>"
                    + _png(lambda out: paper_figures.mean_scores(mean_scores, out, "mean ROC-AUC over tags"))
                    + f"<p>Dissertation: {html.escape(facts['figures'].get('4.6', ''))}</p>")
    for k, model in enumerate(models):
        sections.append(f"<h2>Figure 4.{7 + k}: per-tag ROC-AUC, {html.escape(model)}</h2>"
                        + _png(lambda out, m=model: paper_figures.per_tag_bars({m: tables[m]}, "roc_auc", out,
                                                                               "ROC-AUC (test)", m)))
    sections.append(_tests_section(comparison))
    sections.append(_songs_sections(comparison, runs, tsne_options, top_songs, top_k, facts))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>musictag paper mode</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n")
    write_atomic(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _headline_section(comparison: dict) -> str:
    archs = comparison["architectures"]
    headers = ["architecture", "seeds", "epochs (mean, range)", "stopped at the cap", "macro ROC-AUC",
               "micro ROC-AUC", "macro PR-AUC", "micro PR-AUC", "accuracy", "epoch (s, training)", "criterion"]
    rows = []
    for model in comparison["models"]:
        arch, h = archs[model], archs[model]["headline"]
        failures, trivial = arch["criterion_failures"], arch["trivial_passes"]
        criterion = ("passed" if not failures else f"failed ({len(failures)} tags)") \
            + (f"; {len(trivial)} pass trivially" if trivial else "") \
            + ("" if arch["criterion_has_intervals"] else " (means only: one seed)")
        epochs = arch["epochs"]
        rows.append([model, str(len(arch["seeds"])), f"{np.mean(epochs):.1f} ({min(epochs)}-{max(epochs)})",
                     f"{len(arch['runs_at_cap'])} of {len(epochs)}" if comparison["max_epochs"] else "fixed",
                     *[_cell(h[n]) for n in HEADLINES],
                     f"{h['epoch_time_s']['mean']:.1f}" + (f" ± {h['epoch_time_s']['ci']:.1f}" if h['epoch_time_s']['ci'] else ""),
                     criterion])
    facts = dissertation_facts()
    return ("<h2>Headline (test split)</h2>" + _table(headers, rows)
            + f"<p>Ordering by macro ROC-AUC here: <b>{' > '.join(comparison['ordering'])}</b>; the dissertation: "
            f"<b>{' > '.join(facts['ordering'])}</b>. <i>{_plain(facts['ordering_statement'])}</i></p>")


def _claims_section(comparison: dict) -> str:
    rows = [[html.escape(c["claim"]), html.escape(str(c["seed"])), html.escape(str(c["here"])), _verdict(c["holds"])]
            for c in seed_claims(comparison)]
    return ("<h2>The dissertation's headline numbers, and ours</h2>"
            + _table(["statement", "dissertation (MSD, GPU)", "here", "verdict"], rows))


def _epoch_time_section(comparison: dict, settings: dict, facts: dict) -> str:
    archs, models = comparison["architectures"], comparison["models"]
    ours = {m: (archs[m]["headline"]["epoch_time_s"]["mean"], archs[m]["headline"]["epoch_time_s"]["ci"]) for m in models}
    times = facts["epoch_time_s"]
    published = {"k2c1, the dissertation": (times["k2c1"]["mean"], times["k2c1"]["ci95"]),
                 "k2c1, Choi et al. 2017": (times["choi_et_al_k2c1"], None)}
    return ("<h2>Figure 4.3: time per epoch</h2>"
            + _png(lambda out: paper_figures.epoch_times(ours, published, out,
                                                         f"here ({settings['training clips']} training clips)",
                                                         f"published (MSD, {MSD_TRAINING_CLIPS:,} clips, GPU)"))
            + f"<p>Dissertation ({html.escape(facts['figures'].get('4.3', ''))}): k2c1 {times['k2c1']['mean']} ± "
            f"{times['k2c1']['ci95']} s per epoch against Choi et al.'s {times['choi_et_al_k2c1']} s (no interval "
            f"given), on MSD's {MSD_TRAINING_CLIPS:,} training clips: "
            f"{MSD_TRAINING_CLIPS / times['k2c1']['mean']:.0f} examples/s. Here: "
            + ", ".join(f"{m} {archs[m]['headline']['examples_per_s']['mean']:.1f} examples/s" for m in models) + ".</p>")


def _accuracy_section(comparison: dict, settings: dict, facts: dict) -> str:
    archs, models = comparison["architectures"], comparison["models"]
    out = ["<h2>Tables 4.1 and 4.2: per-tag accuracy by category</h2>"
           f"<p>The criterion: <i>{_plain(facts['success_criterion'].split(' || ')[0])}</i> "
           "✗: fails it. ≈: passes it but its interval's lower bound is no better than always answering the "
           "commoner class (the majority column), which any model reaches without listening.</p>"]
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
                mark = "" if not entry["passes"] else " ≈" if not entry["beats_majority"] else ""
                row.append(_row_cell(entry, "accuracy", 100, 1, "%") + (" ✗" if not entry["passes"] else mark))
            row.append(f"{100 * first.set_index('tag').loc[tag, 'majority']:.1f}%")
            if reference:
                theirs = reference.get(tag.lower())
                row.append(f"{theirs['mean']}% ± {theirs['ci95']}%" if theirs else "")
            rows.append(row)
        header = ["tag", *models, "majority class"] + (["dissertation k2c1 (MSD)"] if reference else [])
        out.append(f"<h3>{html.escape(category)}</h3>" + _table(header, rows))
    return "".join(out)


def _tests_section(comparison: dict) -> str:
    rows = [[f"{t['a']} - {t['b']}", f"{t['mean_difference']:+.4f}", p_value(t["welch_p"]),
             f"{t['bootstrap']['difference']:+.4f} [{t['bootstrap']['ci_low']:+.4f}, {t['bootstrap']['ci_high']:+.4f}]",
             p_value(t["bootstrap"]["p"], t["bootstrap"]["p_floor"])] for t in comparison["tests"]]
    n = comparison["tests"][0]["bootstrap"]["n_resamples"] if comparison["tests"] else 0
    return ("<h2>Is the difference significant? (macro ROC-AUC)</h2>"
            + _table(["pair", "difference of the seed means", "Welch t-test p (over seeds)",
                      "paired bootstrap over test songs: difference [95%]", "bootstrap p"], rows)
            + f"<p>{n} resamples of the test songs, the same for both architectures; p two-sided.</p>")


def _songs_sections(comparison: dict, runs: Sequence[Run], tsne_options: dict, top_songs: int, top_k: int,
                    facts: dict) -> str:
    """Table 4.3, figs. 4.10-4.12 and table 4.4 from one model, as the seed: the best seed of the architecture
    with the best mean validation ROC-AUC, both chosen on validation."""
    chosen = comparison["chosen"]
    run = next(r for r in runs if r.model == chosen["model"] and r.seed == chosen["seed"])
    name = run_name(run.model, run.seed)
    why = (f"{html.escape(name)}: the best validation ROC-AUC ({run.best_val_auc:.3f}) of the architecture with the "
           "best mean validation ROC-AUC")
    rows = []
    for entry in top_tags_rows(run.y, run.p, run.clips, run.tag_names,
                               pick_songs(run.y, run.p, list(run.clips["artist"]), top_songs), top_k):
        predicted = ", ".join(f"{'<b>' if hit else ''}{html.escape(t)}{'</b>' if hit else ''} {s:.2f}"
                              for t, s, hit in entry["predicted"])
        rows.append([html.escape(entry["artist"]), html.escape(entry["title"]), predicted,
                     html.escape(", ".join(entry["truth"]))])
    theirs = [[html.escape(r["artist"]), html.escape(r["song"]),
               ", ".join(f"{html.escape(t['tag'])} {t['score_verbatim']}" for t in r["tags"])]
              for r in facts["table_4_3"]]
    out = (f"<h2>Table 4.3: tag predictions for test songs</h2><p>From {why}.</p>"
           + _table(["artist", "title", "predicted (bold: a true tag)", "true tags"], rows)
           + "<p>Dissertation:</p>" + _table(["artist", "song", "predicted"], theirs))
    if all_alike(run.p):
        return out + (f"<h2>Figures 4.10-4.12 and table 4.4</h2><p>Not drawn: {html.escape(name)} predicts the same "
                      f"tags for all {len(run.p)} test songs (a degenerate model), so a map has one point.</p>")
    if len(run.p) < MIN_MAP_SONGS:
        return out + (f"<h2>Figures 4.10-4.12 and table 4.4</h2><p>Not drawn: {len(run.p)} test songs, a map needs "
                      f"at least {MIN_MAP_SONGS}.</p>")
    return out + _map_sections(run, name, tsne_options, top_k, facts)


def distinctive_tags(probabilities: np.ndarray, tag_names: Sequence[str]) -> list[str]:
    """Each song's most distinctive predicted tag: the highest probability relative to that tag's mean over all
    songs. A tag an under-trained model gives every song (its top tag everywhere) says nothing of one song."""
    lift = probabilities / np.maximum(probabilities.mean(axis=0), 1e-9)
    return [tag_names[j] for j in lift.argmax(axis=1)]


def clusters(coordinates: np.ndarray, labels: Sequence[str], seed: int) -> np.ndarray:
    """Rows of the map's most coherent cluster (k-means on the map; of those with at least 4 songs, the one
    whose songs most often share their label), for fig. 4.12 and table 4.4."""
    from sklearn.cluster import KMeans

    k = max(2, int(round(np.sqrt(len(coordinates) / 4))))
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(coordinates)
    best, best_share = np.arange(len(coordinates)), -1.0
    for label in range(k):
        rows = np.flatnonzero(found == label)
        if len(rows) >= 4:
            share = pd.Series([labels[i] for i in rows]).value_counts().iloc[0] / len(rows)
            if share > best_share:
                best, best_share = rows, share
    return best


def _map_sections(run: Run, name: str, tsne_options: dict, top_k: int, facts: dict) -> str:
    """Figures 4.10-4.11 (the t-SNE map with artist names), 4.12 (a close-up of one cluster) and table 4.4."""
    from musictag.inference.tag_map import embed

    probabilities = run.p
    coordinates, _ = embed(probabilities, **{key: tsne_options[key] for key in
                                             ("implementation", "perplexity", "metric", "seed", "n_jobs", "n_iter")})
    labels = distinctive_tags(probabilities, run.tag_names)
    cluster = clusters(coordinates, labels, tsne_options["seed"])
    artists = list(run.clips["artist"])
    margin = 0.15 * max(np.ptp(coordinates[cluster], axis=0).max(), 1e-9)
    (x0, y0), (x1, y1) = coordinates[cluster].min(axis=0) - margin, coordinates[cluster].max(axis=0) + margin
    maps = (f"<h2>Figures 4.10-4.11: t-SNE of predicted tags with artist names ({html.escape(name)})</h2>"
            + _png(lambda out: paper_figures.labelled_map(
                coordinates, labels, artists, out, f"{len(coordinates)} test songs, coloured by their most "
                                                   "distinctive predicted tag"))
            + "<p>Colour: each song's most distinctive predicted tag (its probability over the tag's mean over all "
            "songs), since a tag the model gives every song says nothing of one. Names: artists of songs spread "
            f"over the map, none printed over another. Dissertation: {html.escape(facts['figures'].get('4.10', ''))}</p>"
            + f"<h2>Figure 4.12: close-up of one cluster ({len(cluster)} songs)</h2>"
            + _png(lambda out: paper_figures.labelled_map(coordinates, labels, artists, out,
                                                          "close-up: the map's most coherent k-means cluster",
                                                          box=(x0, x1, y0, y1), n_labels=20))
            + f"<p>Dissertation: {html.escape(facts['figures'].get('4.12', ''))}</p>")
    rows = [[html.escape(str(run.clips["artist"].iloc[i])), html.escape(str(run.clips["title"].iloc[i])),
             ", ".join(f"{html.escape(run.tag_names[j])} {probabilities[i, j]:.2f}"
                       for j in np.argsort(-probabilities[i])[:top_k])] for i in cluster[:12]]
    theirs = [[html.escape(r["artist"]), html.escape(r["song"]),
               ", ".join(f"{html.escape(t['tag'])} {t['score_verbatim']}" for t in r["tags"])]
              for r in facts["table_4_4"]]
    return (maps + "<h2>Table 4.4: the artists of that cluster and their tags</h2>"
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
