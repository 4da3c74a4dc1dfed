"""Stage `catalogue`: the songs to recommend from, tagged from audio when they are not the training data's."""
from musictag.errors import run_main
from musictag.inference.catalogue import build_catalogue
from musictag.params import load_params
from musictag.paths import DATA_DIR
from musictag.pretrained import reference_names


def main() -> None:
    params, clean = load_params("catalogue"), load_params("clean")
    chosen = params.pop("model")  # trained: the pipeline's model; else a published tagger's name
    model = DATA_DIR / "model" if chosen == "trained" else chosen
    references = reference_names(load_params("recommend")["features"])
    counts = build_catalogue(DATA_DIR / "catalogue", model, DATA_DIR / "predictions.npz",
                             DATA_DIR / "clean.csv", **params, references=references, data_params=load_params("data"),
                             file_checks={"min_duration_s": clean["min_duration_s"],
                                          "silence_dbfs": clean["silence_dbfs"]})
    if params["source"] == "training":
        print(f"catalogue: {counts['n_songs']} songs, the pipeline's own (data/predictions.npz)")
    else:
        print(f"catalogue: {counts['n_songs']} songs ({counts['n_tagged']} tagged now, {counts['n_reused']} "
              f"from the last run, {counts['n_failed']} could not be tagged) by {model}")


if __name__ == "__main__":
    run_main(main)
