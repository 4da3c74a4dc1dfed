"""Paper mode's figures (dissertation figures 4.2-4.12) over architectures x seeds, as PNG.

Matplotlib's object API with the Agg canvas, as musictag.evaluation.plots; each function draws one figure into `path` (a
file or a buffer). An architecture keeps its colour in every figure (`colour_of`). Intervals come from
musictag.evaluation.paper.statistics as (low, high), so error bars are drawn asymmetric and stay inside [0, 1].
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np
import pandas as pd

from musictag.evaluation.plots import new_figure, save_png
from musictag.inference.tag_map import OTHER_COLOUR, PALETTE

ARCH_COLOURS = {"k2c1": "#1f77b4", "k1c2": "#2ca02c", "k2c2": "#d62728", "crnn": "#9467bd", "short_resnet": "#8c564b"}
PUBLISHED_COLOUR = "#7f7f7f"


def colour_of(model: str) -> str:
    return ARCH_COLOURS.get(model, "#17becf")


def _bar_errors(means, lows, highs) -> np.ndarray | None:
    """matplotlib's (2, n) asymmetric error array from intervals; None where no bar has one."""
    if all(low is None for low in lows):
        return None
    return np.array([[m - (lo if lo is not None else m) for m, lo in zip(means, lows)],
                     [(hi if hi is not None else m) - m for m, hi in zip(means, highs)]])


def learning_curves(runs: Sequence, path, cap: int | None) -> None:
    """Fig. 4.2 and the validation curve: per run, training loss and validation macro ROC-AUC per epoch; the
    kept (best) epoch starred, a run that stopped at the cap `cap` marked with a cross at its end."""
    figure = new_figure(11, 4.2)
    loss_axes, auc_axes = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    styles = ["-", "--", ":", "-."]
    seeds = sorted({run.seed for run in runs})
    seen = set()
    for run in runs:
        epochs = run.history["epoch"].to_numpy() + 1
        style = dict(color=colour_of(run.model), linestyle=styles[seeds.index(run.seed) % len(styles)],
                     linewidth=1.2, marker="o", markersize=2.5)
        label = run.model if run.model not in seen else None
        seen.add(run.model)
        loss_axes.plot(epochs, run.history["loss"], label=label, **style)
        auc_axes.plot(epochs, run.history["val_auc"], **style)
        best = int(run.history["val_auc"].to_numpy().argmax())
        auc_axes.plot(epochs[best], run.history["val_auc"].iloc[best], "*", color=colour_of(run.model), markersize=9)
        if cap is not None and len(epochs) >= cap:
            auc_axes.plot(epochs[-1], run.history["val_auc"].iloc[-1], "x", color="black", markersize=7)
    loss_axes.set_title("training loss (binary cross-entropy), fig. 4.2", fontsize=10)
    auc_axes.set_title("validation macro ROC-AUC (*: kept epoch, x: stopped at the cap)", fontsize=10)
    for axes in (loss_axes, auc_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        last = max(len(r.history) for r in runs)
        if last <= 20:
            axes.set_xticks(range(1, last + 1))
    loss_axes.legend(fontsize=8, title="line style: seed", title_fontsize=7)
    figure.tight_layout()
    save_png(figure, path)


def epoch_times(ours: dict[str, tuple[float, float | None]], published: dict[str, float], path, ours_title: str,
                published_title: str) -> None:
    """Fig. 4.3: mean training time per epoch with its 95% interval (black), ours beside published figures
    (one bar each, grey, with their own interval where one was given: `published` maps a label to (mean, ci))."""
    figure = new_figure(10, 3.6)
    panels = ((ours, ours_title, [colour_of(name) for name in ours]),
              (published, published_title, [PUBLISHED_COLOUR] * len(published)))
    for k, (values, title, colours) in enumerate(panels):
        axes = figure.add_subplot(1, 2, k + 1)
        names = list(values)
        means = [values[n][0] for n in names]
        errors = [values[n][1] for n in names]
        for i, (mean, error, colour) in enumerate(zip(means, errors, colours)):
            axes.bar(i, mean, color=colour, width=0.6)
            if error:
                axes.errorbar(i, mean, yerr=error, color="black", capsize=5, linewidth=1)
            axes.annotate(f"{mean:.0f} s" + (f" ± {error:.1f}" if error else ""), (i, mean + (error or 0)),
                          ha="center", va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
        axes.set_xticks(range(len(names)), [textwrap.fill(n, 16) for n in names], fontsize=8)
        axes.set_ylim(0, max(m + (e or 0) for m, e in zip(means, errors)) * 1.18)
        axes.set_title(title, fontsize=10)
        axes.set_ylabel("seconds per epoch (training)")
    figure.tight_layout(w_pad=3)
    save_png(figure, path)


def per_tag_bars(tables: dict[str, pd.DataFrame], column: str, path, xlabel: str, title: str) -> None:
    """Figs. 4.4 / 4.7-4.9: one horizontal bar per tag and architecture (mean over seeds, its interval from
    `column`_low/_high), tags in the order of the first architecture's value."""
    first = next(iter(tables.values()))
    order = first.dropna(subset=[column]).sort_values(column)["tag"].tolist()  # a tag no run could score: left out
    n_arch = len(tables)
    figure = new_figure(8, 1.2 + 0.2 * len(order) * max(1, n_arch / 2))
    axes = figure.add_subplot(1, 1, 1)
    height = 0.8 / n_arch
    for k, (name, table) in enumerate(tables.items()):
        rows = table.set_index("tag").loc[order]
        positions = np.arange(len(order)) + (k - (n_arch - 1) / 2) * height
        means = rows[column].to_numpy()
        low = rows[column + "_low"].fillna(rows[column]).to_numpy()
        high = rows[column + "_high"].fillna(rows[column]).to_numpy()
        axes.barh(positions, means, height=height, xerr=np.array([means - low, high - means]), capsize=1.5,
                  color=colour_of(name), label=name, error_kw={"elinewidth": 0.6})
    axes.set_yticks(np.arange(len(order)), order, fontsize=7)
    axes.set_xlabel(xlabel)
    axes.set_xlim(0, 1)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    save_png(figure, path)


def per_tag_overlay(tables: dict[str, pd.DataFrame], means: dict[str, float], path, ylabel: str) -> None:
    """Fig. 4.5: every tag's ROC-AUC for every architecture as points over the tags (ordered by their mean over
    architectures), each architecture's macro average as a line of its colour, chance dotted."""
    merged = pd.DataFrame({name: table.set_index("tag")["roc_auc"] for name, table in tables.items()})
    merged = merged.loc[merged.mean(axis=1).sort_values().index].dropna(how="all")
    figure = new_figure(11, 4.6)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(merged))
    for name in merged.columns:
        axes.scatter(x, merged[name], s=16, color=colour_of(name), label=f"{name} per tag", zorder=3)
        axes.axhline(means[name], color=colour_of(name), linewidth=1.2, label=f"{name} mean {means[name]:.3f}")
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance 0.5")
    axes.set_xticks(x, [textwrap.shorten(str(tag), 24, placeholder="…") for tag in merged.index], rotation=90,
                    fontsize=7)
    axes.set_ylim(min(0.45, float(np.nanmin(merged.to_numpy())) - 0.02), 1.0)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, ncol=2, loc="lower right")
    figure.tight_layout()
    save_png(figure, path)


def mean_scores(scores: dict[str, dict[str, tuple[float, float | None, float | None]]], path, title: str) -> None:
    """Fig. 4.6: macro and micro ROC-AUC per architecture, mean over seeds with its interval (low, high), on an
    axis from chance (0.5) to 1."""
    figure = new_figure(6, 3.4)
    axes = figure.add_subplot(1, 1, 1)
    names = list(scores)
    kinds = list(next(iter(scores.values())))
    width = 0.8 / len(kinds)
    hatches = ["", "//"]
    for k, kind in enumerate(kinds):
        means = [scores[n][kind][0] for n in names]
        errors = _bar_errors(means, [scores[n][kind][1] for n in names], [scores[n][kind][2] for n in names])
        positions = np.arange(len(names)) + (k - (len(kinds) - 1) / 2) * width
        axes.bar(positions, means, width=width, yerr=errors, capsize=4, label=kind, hatch=hatches[k % 2],
                 color=[colour_of(n) for n in names], edgecolor="white")
        for x, mean in zip(positions, means):
            axes.annotate(f"{mean:.3f}", (x, 0.5), ha="center", va="bottom", fontsize=7, xytext=(0, 3),
                          textcoords="offset points", color="white")
    axes.set_xticks(np.arange(len(names)), names)
    axes.set_ylim(0.5, 1.0)
    axes.set_ylabel("ROC-AUC (test)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(kinds), frameon=False)
    save_png(figure, path)


def spread_labels(coordinates: np.ndarray, candidates: Sequence[int], n_max: int, min_distance: float) -> list[int]:
    """Up to `n_max` of `candidates` (in their order of preference) whose points lie at least `min_distance`
    apart on the map, so their labels do not print over each other."""
    chosen: list[int] = []
    for i in candidates:
        if all(np.hypot(*(coordinates[i] - coordinates[j])) >= min_distance for j in chosen):
            chosen.append(int(i))
            if len(chosen) == n_max:
                break
    return chosen


def labelled_map(coordinates: np.ndarray, colour_labels: Sequence[str], names: Sequence[str], path, title: str,
                 box: tuple[float, float, float, float] | None = None, n_labels: int = 30,
                 n_colours: int = 12) -> None:
    """Figs. 4.10-4.12: the t-SNE map, songs coloured by `colour_labels` (the `n_colours` commonest get colours,
    the rest grey), artist names at songs spread over the map. With `box` (x0, x1, y0, y1) a close-up of that
    region (fig. 4.12), with the region's songs labelled."""
    figure = new_figure(10, 7)
    axes = figure.add_subplot(1, 1, 1)
    labels = np.asarray(colour_labels, dtype=object)
    inside = np.ones(len(coordinates), bool) if box is None else (
        (coordinates[:, 0] >= box[0]) & (coordinates[:, 0] <= box[1])
        & (coordinates[:, 1] >= box[2]) & (coordinates[:, 1] <= box[3]))
    shown = pd.Series(labels[inside]).value_counts().index.tolist()[: min(n_colours, len(PALETTE))]
    other = ~np.isin(labels, shown)
    size = 36 if box is not None else float(np.clip(6000 / len(coordinates), 6, 30))
    if other.any():
        axes.scatter(*coordinates[other].T, s=size, color=OTHER_COLOUR, label="other", alpha=0.7, linewidths=0)
    for k, tag in enumerate(shown):
        keep = labels == tag
        axes.scatter(*coordinates[keep].T, s=size, color=PALETTE[k], label=f"{tag} ({int((keep & inside).sum())})",
                     alpha=0.85, linewidths=0)
    if box is not None:
        axes.set_xlim(box[0], box[1])
        axes.set_ylim(box[2], box[3])
    x0, x1 = axes.get_xlim()
    y0, y1 = axes.get_ylim()
    span = max(x1 - x0, y1 - y0)
    rows = np.flatnonzero(inside)
    centre = coordinates[rows].mean(axis=0)
    order = rows[np.argsort(-np.hypot(*(coordinates[rows] - centre).T))] if box is None else rows
    for i in spread_labels(coordinates, order, n_labels, span / 9):
        axes.annotate(textwrap.shorten(str(names[i]), 24, placeholder="…"), coordinates[i], fontsize=7,
                      xytext=(3, 3), textcoords="offset points",
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, markerscale=1.2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                title="most distinctive tag")
    figure.tight_layout()
    save_png(figure, path)
