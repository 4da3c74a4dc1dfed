"""Stage `compare` of paper/dvc.yaml: every run of the matrix compared per architecture (metrics/paper.json)
and the report a person opens (metrics/paper/report.html)."""
import json
import os
import platform

from musictag.datasets.categories import tag_categories
from musictag.datasets.manifest import Manifest
from musictag.errors import run_main
from musictag.evaluation.paper.report import library_versions, write_report
from musictag.evaluation.paper.statistics import compare, headline_metrics, load_runs
from musictag.files import write_json
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params()
    options = params["paper"]
    runs = load_runs(DATA_DIR / "paper" / "runs", options["architectures"], options["seeds"], DATA_DIR / "clean.csv")
    source = params["data"]["source"]
    categories = tag_categories(source, runs[0].tag_names, params["data"][source])
    converged = options["recipe"] == "converged"
    comparison = compare(runs, categories, level=options["level"], n_bootstrap=options["n_bootstrap"],
                         seed=options["bootstrap_seed"], max_epochs=options["max_epochs"] if converged else None)
    headline = headline_metrics(comparison)
    write_json(METRICS_DIR / "paper.json", headline)
    clips = Manifest.read(DATA_DIR / "clean.csv").summary()["clips_per_split"]
    trained = runs[0].config
    schedule = (f"until validation ROC-AUC stalls for {params['train']['early_stopping_patience']} epochs, at most "
                f"{options['max_epochs']}; the best epoch kept" if converged else
                "the dissertation's fixed epochs (AUC/AP figures), accuracy tables at epoch 30")
    settings = {"dataset": source, "training clips": clips["train"], "validation clips": clips["valid"],
                "test clips": clips["test"], "architectures": ", ".join(options["architectures"]),
                "seeds": ", ".join(map(str, options["seeds"])), "recipe": f"{options['recipe']}: {schedule}",
                "batch size": trained["train"]["batch_size"], "learning rate": trained["train"]["learning_rate"],
                "trained on": json.dumps(trained.get("hardware", {})),
                "report made on": f"{platform.platform()}, {os.cpu_count()} cores",
                "libraries": ", ".join(f"{k} {v}" for k, v in library_versions().items())}
    write_report(comparison, runs, settings, METRICS_DIR / "paper" / "report.html", params["tsne"],
                 top_songs=params["evaluate"]["top_songs"], top_k=params["evaluate"]["top_k"], recipe=options["recipe"])
    print(json.dumps(headline))


if __name__ == "__main__":
    run_main(main)
