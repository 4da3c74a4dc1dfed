"""Metrics files that hold headlines only: what `dvc exp show` and `dvc metrics diff` put side by side.

A stage's summary goes whole to <name>_details.json, a plain output in git, and the few numbers a person
compares between runs to <name>.json, the file dvc.yaml declares as metrics. Why: every count in a metrics
file becomes a column of `dvc exp show`, and a table a thousand columns wide shows nothing.
"""
from __future__ import annotations

from pathlib import Path

from musictag.files import write_json


def write_metrics(path: Path, summary: dict, headline: list[str]) -> None:
    """`summary` whole to <stem>_details.json beside `path`, and only its `headline` keys (dotted paths
    into it, nesting kept) to `path`. A headline key missing from `summary` is a KeyError: a programming
    fault, not a user's."""
    picked: dict = {}
    for dotted in headline:
        *parents, leaf = dotted.split(".")
        source, target = summary, picked
        for key in parents:
            source, target = source[key], target.setdefault(key, {})
        target[leaf] = source[leaf]
    write_json(path.with_name(f"{path.stem}_details.json"), summary)
    write_json(path, picked)
