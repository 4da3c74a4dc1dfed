"""Stage `run@<model>-<seed>` of paper/dvc.yaml: one (architecture, seed) of the paper matrix, trained from
the main pipeline's shards with its `train` params but `paper.epochs` and its own seed, then its valid and test
predictions saved beside it."""
import argparse
import json

from musictag.engines import select_backend
from musictag.errors import run_main
from musictag.files import write_json
from musictag.metrics import align_ground_truth, tag_metrics
from musictag.paper import MODEL_DIR, PREDICTIONS, TIMING, run_name
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR, train_recovery_dir
from musictag.tagging import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    params = load_params()
    select_backend(params["train"]["backend"])  # before Keras loads
    from musictag.training import train

    name = run_name(args.model, args.seed)
    run_dir = DATA_DIR / "paper" / "runs" / name
    summary = train(shards_dir=DATA_DIR / "shards", out_dir=run_dir / MODEL_DIR, recovery_root=train_recovery_dir(),
                    live_dir=run_dir / "live", timing_csv=run_dir / TIMING, model=args.model,
                    hyperparameters=(params.get("models") or {}).get(args.model) or {},
                    **{**params["train"], "seed": args.seed, "epochs": params["paper"]["epochs"]})
    predictions = Tagger(run_dir / MODEL_DIR).predict_shards(DATA_DIR / "shards", splits=("valid", "test"))
    predictions.save(run_dir / PREDICTIONS)
    test = predictions.subset("test")
    y, _ = align_ground_truth(test, DATA_DIR / "clean.csv")
    _, scores = tag_metrics(y, test.probabilities, test.tag_names)
    headline = summary | {"roc_auc": scores["roc_auc"], "pr_auc": scores["pr_auc"],
                          "accuracy": scores["at_half"]["accuracy"]}
    write_json(METRICS_DIR / "paper" / "runs" / f"{name}.json", headline)
    print(json.dumps(headline))


if __name__ == "__main__":
    run_main(main)
