"""Stage `evaluate`: test-split metrics (thresholds tuned on valid), curves for `dvc plots`, and figures."""
import json

from musictag.errors import run_main
from musictag.evaluation.evaluate import evaluate
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params("evaluate")
    summary = evaluate(
        predictions_path=DATA_DIR / "predictions.npz",
        manifest_path=DATA_DIR / "clean.csv",
        model_dir=DATA_DIR / "model",
        metrics_dir=METRICS_DIR,
        plots_dir=METRICS_DIR / "plots",
        top_songs=params["top_songs"],
        top_k=params["top_k"],
        songs=params["songs"],
    )
    print(json.dumps({key: summary[key] for key in ("n_test", "n_tags_evaluable", "roc_auc", "pr_auc")}))


if __name__ == "__main__":
    run_main(main)
