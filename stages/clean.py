"""Stage `clean`: decode every audio file of the manifest once and drop what cannot be used.

Writes the manifest of usable clips, a CSV of rejects with their reasons, the counts per reason and split,
and the headline counts (the seed removed 39/5/6 unusable songs from MSD's train/valid/test).
"""

from musictag.datasets.cleaning import clean_manifest
from musictag.errors import run_main
from musictag.headline import write_metrics
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR


def main() -> None:
    params = load_params("clean")
    summary = clean_manifest(
        manifest_path=DATA_DIR / "manifest.csv",
        kept_path=DATA_DIR / "clean.csv",
        rejects_path=METRICS_DIR / "rejects.csv",
        reasons_path=METRICS_DIR / "rejects_per_reason.csv",
        min_duration_s=params["min_duration_s"],
        silence_dbfs=params["silence_dbfs"],
        workers=params["workers"],
        timeout_s=params["timeout_s"],
        memory_limit_mb=params["memory_limit_mb"],
    )
    write_metrics(METRICS_DIR / "clean.json", summary, ["checked", "kept", "rejected"])
    print(f"clean: kept {summary['kept']}, rejected {summary['rejected']} {summary['rejected_per_split']}")


if __name__ == "__main__":
    run_main(main)
