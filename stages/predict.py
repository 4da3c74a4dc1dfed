"""Stage `predict`: the trained model's tag probabilities and embeddings for every clip, saved once."""
from musictag.errors import run_main
from musictag.paths import DATA_DIR
from musictag.tagging import Tagger


def main() -> None:
    predictions = Tagger(DATA_DIR / "model").predict_shards(DATA_DIR / "shards")
    predictions.save(DATA_DIR / "predictions.npz")
    print(f"predictions: {len(predictions.ids)} clips x {len(predictions.tag_names)} tags, "
          f"embeddings of {predictions.embeddings.shape[1]}")


if __name__ == "__main__":
    run_main(main)
