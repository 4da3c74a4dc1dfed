"""Stage `predict`: the trained model's tag probabilities and embeddings for every clip, saved once, with
the embeddings of each published tagger that recommend.features joins."""
from musictag.errors import run_main
from musictag.inference.tagger import predict_with_references
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR
from musictag.pretrained import REFERENCE_TAGGERS


def main() -> None:
    select_backend(load_params("train")["backend"])  # the backend the model trained on
    references = [name for name in load_params("recommend")["features"] if name in REFERENCE_TAGGERS]
    predictions = predict_with_references(DATA_DIR / "model", DATA_DIR / "shards", references)
    predictions.save(DATA_DIR / "predictions.npz")
    joined = "".join(f", {name}'s embeddings of {vectors.shape[1]}"
                     for name, vectors in predictions.reference_embeddings.items())
    print(f"predictions: {len(predictions.ids)} clips x {len(predictions.tag_names)} tags, "
          f"embeddings of {predictions.embeddings.shape[1]}{joined}")


if __name__ == "__main__":
    run_main(main)
