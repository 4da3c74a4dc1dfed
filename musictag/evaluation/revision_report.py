"""A comparison of revisions or experiments, as Markdown and self-contained HTML: `musictag report`.

What a CI job would post on a pull request, made offline: `dvc metrics diff`'s rows and `dvc params diff`'s
(each revision against the first), and every top-level plot of dvc.yaml drawn once with all revisions laid
over each other (curves) or side by side (pictures). The HTML embeds its pictures, so one file is the
whole report; the Markdown links them from plots/ beside it. Why: `dvc plots diff`'s page fetches Vega from
the network, and a metrics table alone hides a curve that crossed.
"""
from __future__ import annotations

import base64
import html
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from musictag.errors import MusictagError
from musictag.files import first_line, replace_dir, write_text

WORKSPACE = "workspace"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif")


@dataclass(frozen=True)
class Revision:
    """A revision as the user named it (`HEAD`, a branch, an experiment, `workspace`) and its commit."""

    label: str
    sha: str | None  # None: the workspace

    def title(self) -> str:
        return self.label if self.sha is None or self.sha.startswith(self.label) else f"{self.label} ({self.sha[:7]})"


def write_report(revisions: list[str], out_dir: Path, repo_root: Path) -> Path:
    """Compare `revisions` (no name: HEAD and the workspace; one: it and the workspace; more: the first
    against each other) of the DVC project at `repo_root`; write report.md, report.html and plots/ into
    `out_dir` (replaced whole) and return the HTML's path. MusictagError names a revision DVC cannot resolve."""
    from dvc.repo import Repo

    names = list(revisions) or ["HEAD"]
    if len(names) == 1:
        names.append(WORKSPACE)
    with Repo(str(repo_root)) as repo:
        resolved = [_resolve(repo, name) for name in names]
        baseline, others = resolved[0], resolved[1:]
        blocks: list[tuple[str, object]] = [
            ("h1", "musictag report"),
            ("p", f"Baseline {baseline.title()}; compared: {', '.join(r.title() for r in others)}."),
        ]
        for kind in ("metrics", "params"):
            for other in others:
                rows = _diff_rows(getattr(repo, kind).diff(a_rev=baseline.sha or WORKSPACE, b_rev=other.sha or WORKSPACE))
                blocks.append(("h2", f"{kind.capitalize()}: {baseline.title()} -> {other.title()}"))
                blocks.append(("table", rows) if len(rows) > 1 else ("p", f"No {kind} differ."))
        definitions = _plot_definitions(repo_root / "dvc.yaml")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as scratch:
            staging = Path(scratch) / "report"
            (staging / "plots").mkdir(parents=True)
            blocks.append(("h2", "Plots"))
            for number, (plot_id, props) in enumerate(definitions):
                blocks += _plot_blocks(repo, repo_root, resolved, plot_id, props, staging / "plots", number)
            write_text(staging / "report.md", _markdown(blocks))
            write_text(staging / "report.html", _html(blocks, staging))
            replace_dir(staging, out_dir)
    return out_dir / "report.html"


def _resolve(repo, name: str) -> Revision:
    """A revision name as DVC resolves it: a commit, branch or tag, an experiment's name, or `workspace`."""
    from dvc.scm import RevError, resolve_rev

    if name == WORKSPACE:
        return Revision(name, None)
    try:
        return Revision(name, resolve_rev(repo.scm, name))
    except RevError as error:
        raise MusictagError(f"{name}: not a revision or experiment of this repository ({first_line(error)})") from None


def _diff_rows(diff: dict) -> list[list[str]]:
    """`dvc metrics diff` / `dvc params diff` output as table rows, header first, 4 significant digits."""
    rows = [["Path", "Key", "Old", "New", "Change"]]
    for path, keys in sorted(diff.get("diff", {}).items()):
        for key, values in sorted(keys.items()):
            rows.append([path, key, *(_number(values.get(column)) for column in ("old", "new", "diff"))])
    return rows


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _plot_definitions(dvc_yaml: Path) -> list[tuple[str, dict]]:
    """dvc.yaml's top-level plots as (id, properties) in their order: the report draws what `dvc plots` does."""
    definitions = []
    for entry in yaml.safe_load(dvc_yaml.read_text()).get("plots", []):
        if isinstance(entry, str):
            definitions.append((entry, {}))
        else:
            (plot_id, props), = entry.items()
            definitions.append((plot_id, props or {}))
    return definitions


def _read_file(repo, repo_root: Path, revision: Revision, path: str) -> bytes | None:
    """A git-tracked file (plots and metrics are `cache: false`) at a revision, or None where it is absent."""
    if revision.sha is None:
        target = repo_root / path
        return target.read_bytes() if target.is_file() else None
    fs = repo.scm.get_fs(revision.sha)
    return fs.read_bytes(path) if fs.isfile(path) else None


def _plot_blocks(repo, repo_root, revisions, plot_id, props, plots_dir: Path, number: int) -> list[tuple[str, object]]:
    """One plot definition drawn for every revision that has its data; the block list says which lack it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = props.get("title") or plot_id
    if plot_id.lower().endswith(IMAGE_SUFFIXES):
        images = [(r, _read_file(repo, repo_root, r, plot_id)) for r in revisions]
        blocks = [("h3", title)]
        for revision, data in images:
            if data is None:
                blocks.append(("p", f"{revision.title()}: no {plot_id}"))
                continue
            name = f"{number:02d}-{len(blocks):02d}{Path(plot_id).suffix}"
            (plots_dir / name).write_bytes(data)
            blocks.append(("image", (f"plots/{name}", f"{plot_id} at {revision.title()}")))
        return blocks
    y = props.get("y")
    sources = y if isinstance(y, dict) else {plot_id: y}
    series, missing = [], []
    for revision in revisions:
        for path, column in sources.items():
            data = _read_file(repo, repo_root, revision, path)
            if data is None:
                missing.append(f"{revision.title()}: no {path}")
                continue
            frame = pd.read_csv(io.BytesIO(data), sep="\t" if path.endswith(".tsv") else ",")
            absent = [c for c in (props.get("x"), column) if c is not None and c not in frame.columns]
            if absent:  # e.g. the shift stage's file for a dataset it does not apply to
                missing.append(f"{revision.title()}: {path} has no column {', '.join(absent)}")
                continue
            series.append((revision, path, frame, column))
    blocks: list[tuple[str, object]] = [("h3", title)]
    if series:
        horizontal = str(props.get("template", "")).startswith("bar_horizontal")
        figure = _bars(plt, series, props) if horizontal else _lines(plt, series, props, len(sources) > 1)
        name = f"{number:02d}.png"
        figure.savefig(plots_dir / name, dpi=90, bbox_inches="tight")
        plt.close(figure)
        blocks.append(("image", (f"plots/{name}", title)))
    blocks += [("p", line) for line in missing]
    return blocks


def _lines(plt, series, props, several_files: bool):
    """Curves: one colour per revision, one line style per file (dvclive's train/ and eval/ curves)."""
    figure, axes = plt.subplots(figsize=(7, 4))
    colours = {}
    styles = {}
    for revision, path, frame, column in series:
        colour = colours.setdefault(revision, f"C{len(colours)}")
        style = styles.setdefault(path, ["-", "--", ":", "-."][len(styles) % 4])
        label = revision.title() + (f": {Path(path).parent.name}" if several_files else "")  # train, eval
        axes.plot(frame[props["x"]], frame[column], style, color=colour, label=label)
    axes.set_xlabel(props.get("x_label", props["x"]))
    axes.set_ylabel(props.get("y_label", ""))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return figure


def _bars(plt, series, props):
    """Horizontal bars per category, one colour per revision, in the first revision's order of x."""
    first = series[0][2]
    category, value = props["y"] if isinstance(props["y"], str) else next(iter(props["y"].values())), props["x"]
    order = first.sort_values(value)[category].tolist() if "sorted" in str(props.get("template")) else \
        first[category].tolist()
    height = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(7, max(2.5, 0.22 * len(order) * max(1, len(series) / 2))))
    for i, (revision, _, frame, _) in enumerate(series):
        by_category = frame.set_index(category)[value]
        positions = [k + i * height for k in range(len(order))]
        axes.barh(positions, [by_category.get(c, float("nan")) for c in order], height=height,
                  color=f"C{i}", label=revision.title())
    axes.set_yticks([k + 0.4 - height / 2 for k in range(len(order))], order, fontsize=7)
    values = pd.concat([frame[value] for _, _, frame, _ in series])
    if values.min() >= 0.5 and values.max() <= 1:  # scores such as ROC-AUC: chance at 0.5, differences visible
        axes.set_xlim(0.5, 1)
    axes.set_xlabel(props.get("x_label", value))
    axes.legend(fontsize=7)
    return figure


def _markdown(blocks) -> str:
    out = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"{'#' * int(kind[1])} {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "table":
            header, *rows = content
            out.append("\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                                 + ["| " + " | ".join(row) + " |" for row in rows]) + "\n")
        elif kind == "image":
            source, alt = content
            out.append(f"![{alt}]({source})\n")
    return "\n".join(out)


def _html(blocks, staging: Path) -> str:
    """The same blocks as one HTML page, pictures inlined as data URIs."""
    body = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3", "p"):
            body.append(f"<{kind}>{html.escape(str(content))}</{kind}>")
        elif kind == "table":
            header, *rows = content
            cells = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
            cells += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
            body.append("<table>" + "".join(cells) + "</table>")
        elif kind == "image":
            source, alt = content
            suffix = Path(source).suffix.lstrip(".").replace("jpg", "jpeg").replace("svg", "svg+xml")
            data = base64.b64encode((staging / source).read_bytes()).decode()
            caption = f"<figcaption>{html.escape(alt)}</figcaption>" if " at " in alt else ""  # pictures per revision
            body.append(f'<figure><img src="data:image/{suffix};base64,{data}" alt="{html.escape(alt)}">{caption}</figure>')
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 8px}"
             "td:nth-child(n+3){text-align:right;font-family:monospace}img{max-width:100%}"
             "figure{display:inline-block;max-width:48%;margin:0.5em;vertical-align:top}figcaption{font-size:80%;color:#555}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>musictag report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
