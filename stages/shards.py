"""Stage `shards`: shuffled TFRecord shards per split, an index for training, and a round-trip check."""
import json

from musictag.datasets.manifest import Manifest
from musictag.errors import run_main
from musictag.features.shard_writer import roundtrip_error, write_shards
from musictag.headline import write_metrics
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params("shards")
    store_dir, shards_dir = DATA_DIR / "spectrograms", DATA_DIR / "shards"
    index = write_shards(
        store_dir=store_dir,
        manifest=Manifest.read(DATA_DIR / "clean.csv"),
        out_dir=shards_dir,
        examples_per_shard=params["examples_per_shard"],
        compression=params["compression"],
        spectrogram_dtype=params["spectrogram_dtype"],
        seed=params["seed"],
    )
    metrics = {
        "spectrogram_dtype": index["spectrogram_dtype"],
        "n_examples": index["n_examples"],
        "bytes_per_example": round(sum(s["bytes"] for s in index["splits"].values()) / index["n_examples"], 1),
        "splits": {name: {key: split[key] for key in ("n_examples", "n_skipped")} | {"n_shards": len(split["shards"])}
                   for name, split in index["splits"].items()},
        "test_roundtrip": roundtrip_error(store_dir, shards_dir, split="test"),
    }
    write_metrics(METRICS_DIR / "shards.json", metrics,
                  ["n_examples", "bytes_per_example", "test_roundtrip.max_rel_error"])
    print(json.dumps(metrics))


if __name__ == "__main__":
    run_main(main)
