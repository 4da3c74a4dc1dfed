"""Stage `tsne`: the t-SNE map of the test songs (data/tsne/map.png and the interactive map.html).

The PNG is also copied to metrics/tsne.png (tens to a few hundred kB, kept in git so the map shows
without `dvc pull`; not under metrics/plots/, which the evaluate stage owns). The HTML, which may
embed audio, stays in the DVC cache.
"""
import json
import shutil

from musictag.errors import run_main
from musictag.headline import write_metrics
from musictag.inference.tag_map import build_map
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params()
    summary = build_map(DATA_DIR / "predictions.npz", DATA_DIR / "clean.csv", DATA_DIR / "tsne",
                        features=params["recommend"]["features"],
                        embedding_components=params["recommend"]["embedding_components"], **params["tsne"])
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA_DIR / "tsne" / "map.png", METRICS_DIR / "tsne.png")
    seconds = summary.pop("tsne_seconds")  # kept out of the metrics file: it differs on every run
    write_metrics(METRICS_DIR / "tsne.json", summary, ["kl_divergence", "neighbourhood_kept_at_10"])
    print(json.dumps({**summary, "tsne_seconds": seconds}))


if __name__ == "__main__":
    run_main(main)
