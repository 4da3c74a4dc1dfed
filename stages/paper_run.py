"""Stage `run@<model>-<seed>` of paper/dvc.yaml: one (architecture, seed) of the paper matrix, trained from
the main pipeline's shards with its `train` params but its own seed and `paper.recipe`'s schedule
(musictag.evaluation.paper.runs), its valid and test predictions saved beside it, its headline and epoch times in
metrics/paper/runs/<run>.json."""
import argparse
import json
import platform

import pandas as pd

from musictag.errors import run_main
from musictag.evaluation.paper.runs import MODEL_DIR, TIMING, describe_cost, expected_seconds, run_name, schedule
from musictag.evaluation.scores import align_ground_truth, tag_metrics
from musictag.features.shard_reader import read_index
from musictag.files import write_json
from musictag.inference.tagger import Tagger
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR, train_recovery_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    paper, train_params = params["paper"], params["train"]
    phases = schedule(paper["recipe"], args.model, paper["max_epochs"], train_params["early_stopping_patience"])
    select_backend(train_params["backend"])  # before Keras loads
    from musictag.model.training import train

    name = run_name(args.model, args.seed)
    run_dir, metrics_path = DATA_DIR / "paper" / "runs" / name, METRICS_DIR / "paper" / "runs" / f"{name}.json"
    train_examples = read_index(DATA_DIR / "shards")["splits"]["train"]["n_examples"]
    previous = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    print(f"{name}: " + describe_cost(expected_seconds({args.model: previous}, [args.model], 1, paper["recipe"],
                                                       paper["max_epochs"], train_params["early_stopping_patience"],
                                                       train_examples)))
    for phase in phases:
        summary = train(shards_dir=DATA_DIR / "shards", out_dir=run_dir / MODEL_DIR, recovery_root=train_recovery_dir(),
                        live_dir=run_dir / "live", timing_csv=run_dir / TIMING, model=args.model,
                        hyperparameters=(params.get("models") or {}).get(args.model) or {},
                        **{**train_params, "init": "", "seed": args.seed, "epochs": phase.epochs,
                           "early_stopping_patience": phase.patience})
        predictions = Tagger(run_dir / MODEL_DIR).predict_shards(DATA_DIR / "shards", splits=("valid", "test"))
        predictions.save(run_dir / phase.predictions)
    test = predictions.subset("test")
    y, _ = align_ground_truth(test, DATA_DIR / "clean.csv")
    _, scores = tag_metrics(y, test.probabilities, test.tag_names)
    timing = pd.read_csv(run_dir / TIMING)
    stopped = "fixed schedule" if paper["recipe"] == "seed" else \
        "at the cap" if summary["epochs_run"] >= paper["max_epochs"] else "patience"
    headline = summary | {"stopped": stopped, "roc_auc": scores["roc_auc"], "pr_auc": scores["pr_auc"],
                          "accuracy": scores["at_half"]["accuracy"],
                          "epoch_time_s": round(float(timing["epoch_time_s"].mean()), 2),
                          "train_time_s": round(float(timing["train_time_s"].mean()), 2),
                          "examples_per_s": round(float(timing["examples_per_s"].mean()), 2),
                          "hardware": f"{platform.machine()}, {platform.system()}, "
                                      f"{json.loads((run_dir / MODEL_DIR / 'config.json').read_text())['hardware']['cpu_cores']} cores"}
    write_json(metrics_path, headline)
    print(json.dumps(headline))


if __name__ == "__main__":
    run_main(main)
