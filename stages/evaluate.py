"""Stage `evaluate`: test-split metrics (thresholds tuned on valid), curves for `dvc plots`, and figures."""
import json

from musictag.errors import run_main
from musictag.metrics import evaluate
from musictag.paths import DATA_DIR, METRICS_DIR, load_params


def main() -> None:
    params = load_params("evaluate")
    summary = evaluate(
        predictions_path=DATA_DIR / "predictions.npz",
        manifest_path=DATA_DIR / "clean.csv",
        model_dir=DATA_DIR / "model",
        metrics_dir=METRICS_DIR,
        plots_dir=METRICS_DIR / "plots",
        top_songs=params.get("top_songs"),  # no default here: params.yaml holds it, a missing key is named
        top_k=params.get("top_k"),
        songs=params.get("songs") or (),
    )
    print(json.dumps({key: summary[key] for key in ("n_test", "n_tags_evaluable", "roc_auc", "pr_auc")}))


if __name__ == "__main__":
    run_main(main)
