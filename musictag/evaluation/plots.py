"""PNG figures of the evaluation (dissertation figures 4.2, 4.7-4.9 and table 4.3); paper mode's are in
musictag.evaluation.paper.figures.

Matplotlib's object API with the Agg canvas: no pyplot state, no display needed. Each function draws
one figure and saves it as PNG to `path` (the caller chooses the name; `musictag.evaluation.evaluate.evaluate` writes
to a temporary file and renames it).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

DPI = 120
HIT, MISS = "#1a7f37", "#222222"


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (no pyplot state), `width` x `height` inches."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> None:
    """`figure` as PNG into `path` (a file name or a buffer), trimmed to what it draws."""
    figure.savefig(path, format="png", dpi=DPI, bbox_inches="tight")


def per_tag_auc(table: pd.DataFrame, macro_auc: float, path: Path, title: str) -> None:
    """Horizontal bars of each evaluable tag's ROC-AUC, best at the top, with the macro average and chance."""
    rows = table.dropna(subset=["roc_auc"]).sort_values("roc_auc", ascending=True)
    figure = new_figure(8, max(3.5, 0.24 * len(rows) + 1.6))
    ax = figure.add_subplot()
    positions = np.arange(len(rows))
    ax.barh(positions, rows["roc_auc"], color="#4c72b0", height=0.7)
    ax.set_yticks(positions, rows["tag"], fontsize=9)
    for y, value in zip(positions, rows["roc_auc"]):
        ax.text(value + 0.004, y, f"{value:.2f}", va="center", fontsize=7)
    left = min(0.5, np.floor((rows["roc_auc"].min() - 0.05) * 10) / 10)
    ax.set_xlim(max(0.0, left), 1.04)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(macro_auc, color="#c44e52", linestyle="--", linewidth=1.2, label=f"macro average {macro_auc:.3f}")
    if left <= 0.5:
        ax.axvline(0.5, color="grey", linestyle=":", linewidth=1, label="chance (0.5)")
    ax.set_xlabel("ROC-AUC")
    ax.set_ylabel("tag")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    skipped = table[table["roc_auc"].isna()]
    if len(skipped):
        note = "Not evaluable: " + "; ".join(f"{t} ({n})" for t, n in zip(skipped["tag"], skipped["note"]))
        figure.text(0.01, 0.0, textwrap.fill(note, 110), fontsize=7, va="top", color="#555555")
    figure.tight_layout()
    save_png(figure, path)


def training_curves(history: pd.DataFrame, path: Path, title: str = "Training") -> None:
    """Loss and ROC-AUC / PR-AUC per epoch (train and validation) from Keras' history.csv."""
    epochs = history["epoch"].to_numpy() + 1
    figure = new_figure(11, 4.8)
    panels = [("Binary cross-entropy loss", [("loss", "C0"), ("val_loss", "C0")], "loss"),
              ("ROC-AUC and PR-AUC (macro over tags)",
               [("auc", "C0"), ("val_auc", "C0"), ("pr_auc", "C1"), ("val_pr_auc", "C1")], "area under curve")]
    names = {"loss": "loss", "auc": "ROC-AUC", "pr_auc": "PR-AUC"}
    for k, (panel_title, series, ylabel) in enumerate(panels, start=1):
        ax = figure.add_subplot(1, 2, k)
        for column, color in series:
            if column in history.columns:
                validation = column.startswith("val_")
                label = ("validation " if validation else "train ") + names[column.removeprefix("val_")]
                ax.plot(epochs, history[column], "-" if validation else "--", color=color, marker="o",
                        markersize=3, label=label)
        if k == 2 and "val_auc" in history.columns:
            best = int(history["val_auc"].to_numpy().argmax())
            ax.plot(epochs[best], history["val_auc"].iloc[best], "*", color="C3", markersize=12,
                    label=f"best validation ROC-AUC {history['val_auc'].iloc[best]:.3f} (epoch {epochs[best]})")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    figure.suptitle(title)
    figure.tight_layout()
    save_png(figure, path)


def roc_pr(y_true: np.ndarray, y_prob: np.ndarray, tag_names: Sequence[str], table: pd.DataFrame, path: Path,
           n_tags_shown: int = 3) -> None:
    """ROC and precision-recall curves: micro-average over all tags, plus the best, median and worst tag."""
    evaluable = table.dropna(subset=["roc_auc"]).sort_values("roc_auc", ascending=False)
    picks = evaluable.index.to_numpy()
    if len(picks) > n_tags_shown:
        picks = picks[np.unique(np.linspace(0, len(picks) - 1, n_tags_shown).round().astype(int))]
    figure = new_figure(11, 4.8)
    ax_roc, ax_pr = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)

    def draw(y, p, label, **style):
        fpr, tpr, _ = roc_curve(y, p)
        precision, recall, _ = precision_recall_curve(y, p)
        ax_roc.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})", **style)
        ax_pr.plot(recall, precision, drawstyle="steps-post",
                   label=f"{label} (AP {average_precision_score(y, p):.3f})", **style)

    draw(y_true.ravel(), y_prob.ravel(), "micro-average", color="black", linewidth=2)
    for j in picks:
        draw(y_true[:, j], y_prob[:, j], f"'{tag_names[j]}'", linewidth=1.2)
    ax_roc.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax_pr.axhline(y_true.mean(), linestyle=":", color="grey", label=f"chance (micro) {y_true.mean():.3f}")
    for ax, (x, y), title in ((ax_roc, ("false positive rate", "true positive rate"), "ROC curves"),
                              (ax_pr, ("recall", "precision"), "Precision-recall curves")):
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{title} on the test set", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "upper right")
    figure.tight_layout()
    save_png(figure, path)


def top_tags_table(rows: Sequence[dict], path: Path, title: str) -> None:
    """Table 4.3: per song, artist - title, its top predicted tags with scores (green when the tag is in
    the ground truth) and its ground-truth tags."""
    widths = (34, 30, 44)  # characters per column
    blocks = []
    for row in rows:
        song = textwrap.wrap(f"{row['artist']} \u2014 {row['title']}", widths[0]) or ["?"]
        truth = textwrap.wrap(", ".join(row["truth"]) or "(none)", widths[2])
        blocks.append((song, row["predicted"], truth, max(len(song), len(row["predicted"]), len(truth))))
    n_lines = sum(b[3] for b in blocks) + len(blocks) * 0.6
    figure = new_figure(11.5, 0.95 + 0.21 * (n_lines + 1.5))
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(n_lines + 1.3, 0)
    x_song, x_tag, x_score, x_truth = 0.0, 0.35, 0.555, 0.62
    for x, header in ((x_song, "Artist \u2014 song title"), (x_tag, "Predicted tag"), (x_score, "Score"),
                      (x_truth, "Ground-truth tags")):
        ax.text(x, 0.5, header, fontsize=10, fontweight="bold", va="center")
    y = 1.3
    ax.axhline(y - 0.15, color="black", linewidth=1)
    for song, predicted, truth, height in blocks:
        for k, line in enumerate(song):
            ax.text(x_song, y + 0.5 + k, line, fontsize=9, va="center")
        for k, (tag, score, hit) in enumerate(predicted):
            color = HIT if hit else MISS
            ax.text(x_tag, y + 0.5 + k, ("\u2713 " if hit else "   ") + tag, fontsize=9, va="center", color=color)
            ax.text(x_score, y + 0.5 + k, f"{score:.2f}", fontsize=9, va="center", color=color, family="monospace")
        for k, line in enumerate(truth):
            ax.text(x_truth, y + 0.5 + k, line, fontsize=9, va="center", color="#444444")
        y += height + 0.6
        ax.axhline(y - 0.3, color="#bbbbbb", linewidth=0.6)
    ax.set_title(title + "\n\u2713 green: predicted tag is in the song's ground truth", fontsize=11)
    figure.tight_layout()
    save_png(figure, path)
