"""Stage `predict`: the trained model's tag probabilities and embeddings for every clip, saved once, with
the embeddings of each published tagger that recommend.features joins."""
from musictag.errors import run_main
from musictag.inference.tagger import Tagger
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR
from musictag.pretrained import reference_names


def main() -> None:
    select_backend(load_params("train")["backend"])  # the backend the model trained on
    references = reference_names(load_params("recommend")["features"])
    predictions = Tagger(DATA_DIR / "model").predict_shards(DATA_DIR / "shards", references=references)
    predictions.save(DATA_DIR / "predictions.npz")
    joined = "".join(f", {name}'s embeddings of {vectors.shape[1]}"
                     for name, vectors in predictions.reference_embeddings.items())
    print(f"predictions: {len(predictions.ids)} clips x {len(predictions.tag_names)} tags, "
          f"embeddings of {predictions.embeddings.shape[1]}{joined}")


if __name__ == "__main__":
    run_main(main)
