"""Stage `dataset`: run the adapter named by `data.source` and write the canonical manifest.

For the embedded default this renders the corpus into data/corpus and checks every clip's length and
level; for a real dataset it reads the dataset's tag and split files (its audio stays where it is
and data/corpus stays empty).
"""

from musictag.datasets.adapters import build_manifest
from musictag.errors import run_main
from musictag.files import write_csv
from musictag.headline import write_metrics
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR, resolve


def main() -> None:
    data = load_params("data")
    source = data.get("source")
    corpus_dir = resolve(data["embedded"]["audio_dir"])
    manifest = build_manifest(source, data[source])
    corpus_dir.mkdir(parents=True, exist_ok=True)  # an (empty) output even for external datasets
    manifest.write(DATA_DIR / "manifest.csv")
    summary = {"source": source, **manifest.summary()}
    if source == "embedded":
        from musictag.datasets.corpus import audio_report, soundfont_digests

        summary["audio"] = audio_report([resolve(p) for p in manifest.clips["audio_path"]])
        summary["soundfonts"] = soundfont_digests(data["embedded"]["soundfonts"])  # another file: another corpus
    write_metrics(METRICS_DIR / "dataset.json", summary, ["n_clips", "n_tags"])  # the rest: dataset_details.json
    positives = manifest.positives_per_tag()  # a plot: one row per tag would swamp `dvc metrics diff`
    write_csv(METRICS_DIR / "dataset_tags.csv", positives)
    print(f"manifest: {summary['n_clips']} clips, {summary['n_tags']} tags, splits {summary['clips_per_split']}")


if __name__ == "__main__":
    run_main(main)
