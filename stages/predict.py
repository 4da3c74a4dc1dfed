"""Stage `predict`: the trained model's tag probabilities and embeddings for every clip, saved once."""
from musictag.errors import run_main
from musictag.inference.tagger import Tagger
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR


def main() -> None:
    select_backend(load_params("train")["backend"])  # the backend the model trained on
    predictions = Tagger(DATA_DIR / "model").predict_shards(DATA_DIR / "shards")
    predictions.save(DATA_DIR / "predictions.npz")
    print(f"predictions: {len(predictions.ids)} clips x {len(predictions.tag_names)} tags, "
          f"embeddings of {predictions.embeddings.shape[1]}")


if __name__ == "__main__":
    run_main(main)
