"""Scores over several runs: the finished experiments of `dvc exp show --json` (or metric files, one per
run), grouped by the params they differ in but the seed, and each group's mean and Student-t interval
per metric (`musictag ci`), so one figure is never pooled over two configurations.
"""
from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from musictag.errors import MusictagError
from musictag.evaluation.intervals import confidence_interval
from musictag.nested import flatten


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
    flat = {name: _numbers(flatten(metrics)) for name, metrics in runs.items()}
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


def _numbers(flat_metrics: Mapping) -> dict[str, float]:
    """The numeric values of flattened metrics as floats; strings, lists, booleans and None dropped."""
    return {name: float(value) for name, value in flat_metrics.items()
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))}


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
                params[name] = {key: json.dumps(value, sort_keys=True)  # lists and numbers compare as text
                                for key, value in flatten(values or {}).items()
                                if not isinstance(value, Mapping)}  # an empty section holds no param

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
