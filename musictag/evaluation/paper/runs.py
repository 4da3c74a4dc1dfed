"""One run of paper mode's matrix (an architecture and a seed): where it keeps its files and how long it trains.

Two recipes (`paper.recipe`):

* `converged` (the default): each run trains until its validation macro ROC-AUC has not improved for
  `train.early_stopping_patience` epochs, at most `paper.max_epochs`; the best epoch's weights (best.keras)
  are the ones evaluated, for every table and figure.
* `seed`: the dissertation's fixed schedule (section 4.2): 150 epochs for k2c1 and k2c2 and 89 for k1c2 for
  its AUC and AP figures, and 30 for its accuracy tables 4.1-4.2. One run does both: it trains 30 epochs,
  predicts (ACCURACY_PREDICTIONS), then continues the same run to the full count (PREDICTIONS). Days of CPU:
  a GPU machine's recipe.

This module is all the matrix stage needs to know of paper mode, so editing the report does not retrain.
"""
from __future__ import annotations

from dataclasses import dataclass

from musictag.dissertation import dissertation_facts
from musictag.errors import MusictagError

PREDICTIONS, ACCURACY_PREDICTIONS = "predictions.npz", "predictions_accuracy.npz"  # in each run's folder
MODEL_DIR, TIMING = "model", "timing.csv"
RECIPES = ("converged", "seed")


def run_name(model: str, seed: int) -> str:
    """The folder of one run under data/paper/runs (and its metrics file's name)."""
    return f"{model}-seed{seed}"


@dataclass(frozen=True)
class Phase:
    """Train (or continue) the run to `epochs` epochs, stopping early after `patience` epochs without a better
    validation ROC-AUC (0: never), then save its valid and test predictions as `predictions`."""

    epochs: int
    patience: int
    predictions: str


def schedule(recipe: str, model: str, max_epochs: int, patience: int) -> list[Phase]:
    """The phases of one run of `model` under `recipe` (see the module docstring)."""
    if recipe == "converged":
        if patience < 1:
            raise MusictagError("train.early_stopping_patience: paper.recipe 'converged' stops a run after this many "
                                "epochs without a better validation ROC-AUC; set it to 1 or more")
        return [Phase(max_epochs, patience, PREDICTIONS)]
    if recipe == "seed":
        epochs = dissertation_facts()["epochs"]
        if model not in epochs:
            raise MusictagError(f"paper.recipe: the dissertation trained no {model} (it trained "
                                f"{', '.join(k for k in epochs if k != 'accuracy_sessions_each')}); use 'converged'")
        return [Phase(epochs["accuracy_sessions_each"], 0, ACCURACY_PREDICTIONS), Phase(epochs[model], 0, PREDICTIONS)]
    raise MusictagError(f"paper.recipe: '{recipe}' is not one of {', '.join(RECIPES)}")


def planned_epochs(recipe: str, model: str, max_epochs: int) -> int:
    """The most epochs one run of `model` trains under `recipe` (a converged run may stop sooner)."""
    return schedule(recipe, model, max_epochs, 1)[-1].epochs


def expected_seconds(measured: dict[str, dict], architectures, n_seeds: int, recipe: str, max_epochs: int,
                     patience: int, train_examples: int) -> dict[str, dict]:
    """Per architecture, the expected wall time of its `n_seeds` runs, from `measured` ({model: a run's
    metrics file, with `examples_per_s` (training) and `epoch_time_s` / `train_time_s` (validation's share)})
    for `train_examples` training clips: {"low_s", "high_s", "epochs": (low, high)}, or {"unmeasured": True}.
    A converged run lasts at least patience + 1 epochs and at most max_epochs; the seed's a fixed count."""
    out = {}
    for model in architectures:
        run = measured.get(model)
        if not run or not run.get("examples_per_s"):
            out[model] = {"unmeasured": True}
            continue
        epoch_s = train_examples / run["examples_per_s"] * run["epoch_time_s"] / run["train_time_s"]
        high = planned_epochs(recipe, model, max_epochs)
        low = min(high, patience + 1) if recipe == "converged" else high
        out[model] = {"low_s": n_seeds * low * epoch_s, "high_s": n_seeds * high * epoch_s, "epochs": (low, high),
                      "epoch_s": epoch_s, "measured_on": run.get("hardware", "")}
    return out


def describe_cost(estimate: dict[str, dict]) -> str:
    """The estimate as lines a person reads before starting hours of training."""
    def hours(seconds: float) -> str:
        return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"

    lines, low, high = [], 0.0, 0.0
    for model, cost in estimate.items():
        if cost.get("unmeasured"):
            lines.append(f"  {model}: no measured speed yet (no metrics/paper/runs/{model}-seed*.json)")
            continue
        first, last = cost["epochs"]
        span = f"{first}-{last}" if first != last else f"{last}"
        lines.append(f"  {model}: {span} epochs x {cost['epoch_s']:.0f} s per run: "
                     + (f"{hours(cost['low_s'])} to {hours(cost['high_s'])}" if first != last else hours(cost['high_s'])))
        low, high = low + cost["low_s"], high + cost["high_s"]
    measured_on = next((c["measured_on"] for c in estimate.values() if c.get("measured_on")), "")
    if not measured_on:
        return "\n".join(["expected wall time: unknown until a run has measured its speed", *lines])
    head = (f"expected wall time: {hours(low)} to {hours(high)}" if low != high else f"expected wall time: {hours(high)}")
    return "\n".join([f"{head} (speeds measured on {measured_on})", *lines])
