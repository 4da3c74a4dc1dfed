"""Stage `shift`: the embedded corpus's test split rendered again with soundfonts held out of training and tagged
by the trained model, per tag family (metrics/shift.json, its details, metrics/shift_families.csv). Another data source has
no scores to render again: the stage says so and writes that."""
import json

import pandas as pd

from musictag.errors import run_main
from musictag.files import write_csv
from musictag.headline import write_metrics
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params()
    data, shift = params["data"], params["shift"]
    if data["source"] != "embedded":
        summary = {"skipped": f"data.source is {data['source']}: only the embedded corpus can be rendered again"}
        write_metrics(METRICS_DIR / "shift.json", summary, ["skipped"])
        write_csv(METRICS_DIR / "shift_families.csv", pd.DataFrame(columns=["group", "n_tags"]))  # no rows
        print(json.dumps(summary))
        return
    select_backend(params["train"]["backend"])  # the backend the model trained on
    from musictag.evaluation.shift import timbre_shift

    embedded = data["embedded"]
    headline, families = timbre_shift(DATA_DIR / "model", DATA_DIR / "predictions.npz", DATA_DIR / "clean.csv",
                                      held_out=shift["soundfonts"], split=shift["split"], seed=embedded["seed"],
                                      sample_rate_hz=embedded["sample_rate_hz"],
                                      clip_duration_s=embedded["clip_duration_s"],
                                      timbre_variation=embedded["timbre_variation"],
                                      spectrogram_dtype=params["shards"]["spectrogram_dtype"],
                                      workers=shift["workers"])
    write_metrics(METRICS_DIR / "shift.json", headline, ["roc_auc", "drop"])  # split and clips: shift_details.json
    write_csv(METRICS_DIR / "shift_families.csv", families)
    print(json.dumps(headline))


if __name__ == "__main__":
    run_main(main)
