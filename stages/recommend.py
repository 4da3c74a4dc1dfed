"""Stage `recommend`: the nearest-neighbour index over the recommendation catalogue, and how well the
test songs' neighbours share tags."""
import json

from musictag.errors import run_main
from musictag.headline import write_metrics
from musictag.inference.recommendation import build_recommendations
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    metrics = build_recommendations(DATA_DIR / "predictions.npz", DATA_DIR / "clean.csv",
                                    DATA_DIR / "recommend" / "index.npz",
                                    catalogue=DATA_DIR / "catalogue" / "songs.npz", **load_params("recommend"))
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    write_metrics(METRICS_DIR / "recommend.json", metrics,
                  [f"precision_at_k.{relation}" for relation in ("shared_tag", "same_artist", "tag_jaccard")]
                  + ["same_artist.precision_at_5", "same_artist.precision_at_10"])
    print(json.dumps(metrics))


if __name__ == "__main__":
    run_main(main)
