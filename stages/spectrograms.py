"""Stage `spectrograms`: the seed's Algorithm 1 log-mel for every usable clip, in a few large files."""
import json

from musictag.datasets.manifest import Manifest
from musictag.errors import run_main
from musictag.features.extraction import extract
from musictag.params import load_params
from musictag.paths import DATA_DIR, REPO_ROOT


def main() -> None:
    params = load_params("spectrograms")
    manifest = Manifest.read(DATA_DIR / "clean.csv")
    summary = extract(
        ids=list(manifest.clips["id"]),
        audio_paths=list(manifest.clips["audio_path"]),
        audio_root=REPO_ROOT,
        out_dir=DATA_DIR / "spectrograms",
        front_end=params["front_end"],
        chunk_size=params["chunk_size"],
        executor=params["executor"],
        workers=params["workers"],
        scheduler_address=params["scheduler_address"],
        timeout_s=params["timeout_s"],
        memory_limit_mb=params["memory_limit_mb"],
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    run_main(main)
