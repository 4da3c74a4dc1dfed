"""Content-based recommendation on real recordings: do a track's nearest neighbours come from its soundtrack?

    make soundtracks                                        # Debian's game soundtracks (apt)
    python benchmarks/soundtrack_retrieval.py               # the table, every feature space
    python benchmarks/soundtrack_retrieval.py --spaces mfcc trained-tags
    python benchmarks/soundtrack_retrieval.py freeze        # (once) write the frozen track list

The set is benchmarks/soundtracks.csv, committed: every track of 20 s or more in the music folders of
the Debian packages listed in SOUNDTRACKS (jingles left out), each soundtrack by one composer or studio
and never used in training. Its MD5s pin the tracks: a package version with other audio stops the run.
Each track queries all the others (leave-one-out, cosine); a neighbour is relevant when it comes from
the same soundtrack. Printed per feature space: precision@1/5/10 and mean average precision with a 95%
Student-t interval over queries, and each space's precision@5 difference to MFCC mean + std with a
paired bootstrap interval over queries. Features are computed once per track and model and cached in
data/soundtracks/ (git-ignored).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from musictag.errors import MusictagError, run_main
from musictag.evaluation.intervals import confidence_interval
from musictag.evaluation.retrieval import chance_scores, paired_bootstrap, per_query_scores, standardized, unit_rows
from musictag.files import write_csv
from musictag.paths import DATA_DIR, REPO_ROOT

MANIFEST = REPO_ROOT / "benchmarks" / "soundtracks.csv"
CACHE_DIR = DATA_DIR / "soundtracks"
MIN_DURATION_S = 20.0
AUDIO_SUFFIXES = (".ogg", ".opus", ".flac", ".wav", ".mp3")
SOUNDTRACKS = {  # Debian package -> (soundtrack, its music folders); `make soundtracks` installs them
    "wesnoth-1.16-music": ("Battle for Wesnoth", ["/usr/share/games/wesnoth/1.16/data/core/music"]),
    "warzone2100-music": ("Warzone 2100", ["/usr/share/games/warzone2100/music"]),
    "hedgewars-data": ("Hedgewars", ["/usr/share/games/hedgewars/Data/Music"]),
    "supertux-data": ("SuperTux", ["/usr/share/games/supertux2/music"]),
    "freedroidrpg-data": ("FreedroidRPG", ["/usr/share/freedroidrpg/data/sound/music"]),
    "xmoto-data": ("X-Moto", ["/usr/share/games/xmoto/Textures/Musics"]),
    "extremetuxracer-data": ("Extreme Tux Racer", ["/usr/share/games/etr/music"]),
    "frozen-bubble-data": ("Frozen Bubble", ["/usr/share/games/frozen-bubble/snd"]),
    "scorched3d-data": ("Scorched 3D", ["/usr/share/games/scorched3d/data/globalmods/none/data/music"]),
}
MFCC_SAMPLE_RATE_HZ, N_MFCC, WINDOW_S = 22050, 20, 29.12
KS = (1, 5, 10)
MODELS = {"trained": str(DATA_DIR / "model"), "msd-crnn": "msd-crnn", "msd-cnn": "msd-cnn"}


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def freeze(force: bool) -> None:
    """Write the manifest from the installed packages: artist (the soundtrack), title, path, package,
    duration_s, md5. Refuses to replace a frozen one without --force: results are comparable only on one list."""
    import soundfile

    if MANIFEST.exists() and not force:
        raise MusictagError(f"{MANIFEST}: already frozen (--force replaces it, and every result made on it)")
    rows = []
    for package, (soundtrack, folders) in SOUNDTRACKS.items():
        found = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            raise MusictagError(f"{package}: no audio in {', '.join(folders)} (`make soundtracks` installs it)")
        for path in found:
            duration_s = soundfile.info(str(path)).duration
            if duration_s >= MIN_DURATION_S:
                rows.append({"artist": soundtrack, "title": path.stem, "path": str(path), "package": package,
                             "duration_s": round(duration_s, 2), "md5": md5(path)})
    import pandas as pd

    write_csv(MANIFEST, pd.DataFrame(rows))
    print(f"{MANIFEST}: {len(rows)} tracks from {len(SOUNDTRACKS)} soundtracks")


def read_manifest() -> list[dict]:
    """The frozen tracks, each checked to be installed with the listed MD5 (one line names what is not)."""
    if not MANIFEST.exists():
        raise MusictagError(f"{MANIFEST}: no frozen track list (`python {Path(__file__).name} freeze`)")
    with open(MANIFEST, newline="") as file:
        tracks = list(csv.DictReader(file))
    missing = [t for t in tracks if not Path(t["path"]).is_file()]
    if missing:
        packages = sorted({t["package"] for t in missing})
        raise MusictagError(f"{len(missing)} tracks not installed, e.g. {missing[0]['path']}: `make soundtracks` "
                            f"(packages {', '.join(packages)})")
    return tracks


def check_digests(tracks: list[dict]) -> None:
    changed = [t["path"] for t in tracks if md5(Path(t["path"])) != t["md5"]]
    if changed:
        raise MusictagError(f"{len(changed)} tracks differ from the frozen list, e.g. {changed[0]} "
                            "(another package version): results would not compare")


def mfcc_features(tracks: list[dict], windows: str) -> np.ndarray:
    """MFCC mean and std (20 coefficients, librosa's defaults at 22.05 kHz): of the middle 29.12 s, or of
    the whole track."""
    import librosa

    from musictag.audio.decoding import load_window

    rows = []
    for track in _progress(tracks, f"mfcc {windows}"):
        if windows == "middle":
            audio = load_window(track["path"], MFCC_SAMPLE_RATE_HZ, WINDOW_S)
        else:
            audio, _ = librosa.load(track["path"], sr=MFCC_SAMPLE_RATE_HZ, mono=True)
        mfcc = librosa.feature.mfcc(y=audio, sr=MFCC_SAMPLE_RATE_HZ, n_mfcc=N_MFCC)
        rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return np.array(rows)


def model_features(tracks: list[dict], model: str, windows: str) -> tuple[np.ndarray, np.ndarray]:
    """(tag probabilities, penultimate embeddings) of every track: the middle window, or all windows
    averaged, through the project's tagging path (musictag.inference.audio_tagging)."""
    from musictag.audio.workers import Failure
    from musictag.inference.audio_tagging import tag_files
    from musictag.inference.tagger import Tagger

    tagger = Tagger(model)
    tagged = dict(tag_files(tagger, [t["path"] for t in tracks], windows=windows, timeout_s=600,
                            memory_limit_mb=4096, min_duration_s=1.0, silence_dbfs=-90.0))
    failed = [path for path, result in tagged.items() if isinstance(result, Failure)]
    if failed:
        raise MusictagError(f"{failed[0]}: {tagged[failed[0]].message(failed[0])}")
    return (np.array([tagged[t["path"]].probabilities for t in tracks]),
            np.array([tagged[t["path"]].embedding for t in tracks]))


def _progress(items, desc):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="track", disable=None, file=sys.stderr)


def raw_features(tracks: list[dict]) -> dict[str, np.ndarray]:
    """Every feature block, each cached in data/soundtracks/ under a key of the tracks (and its model's file):
    a new model computes only its own blocks."""
    from musictag.inference.tagger import Tagger

    tracks_key = hashlib.md5(" ".join(t["md5"] for t in tracks).encode()).hexdigest()[:12]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    features = {}
    for windows in ("middle", "all"):
        cache = CACHE_DIR / f"mfcc-{windows}-{tracks_key}.npy"
        if not cache.exists():
            np.save(cache, mfcc_features(tracks, windows))
        features[f"mfcc-{windows}"] = np.load(cache)
    for name, model in MODELS.items():
        key = hashlib.md5(f"{tracks_key} {md5(Tagger(model).weights_path)}".encode()).hexdigest()[:12]
        for windows in ("middle", "all"):
            cache = CACHE_DIR / f"{name}-{windows}-{key}.npz"
            if not cache.exists():
                started = time.perf_counter()
                tags, embeddings = model_features(tracks, model, windows)
                np.savez(cache, tags=tags, embedding=embeddings)
                print(f"{name}, {windows}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
            with np.load(cache) as cached:
                features[f"{name}-tags-{windows}"] = cached["tags"]
                features[f"{name}-embedding-{windows}"] = cached["embedding"]
    return features


def recommend_space(raw: dict[str, np.ndarray], windows: str) -> tuple[str, np.ndarray]:
    """(name, vectors) of the space the recommend stage and `musictag similar` search by default
    (params.yaml's recommend section through musictag.inference.recommendation.RecommendIndex), the catalogue
    tagged by the trained model."""
    from musictag.inference.predictions import Predictions
    from musictag.inference.recommendation import RecommendIndex
    from musictag.params import load_params

    params = load_params("recommend")
    features = params["features"]
    n = len(raw[f"trained-tags-{windows}"])
    songs = Predictions(np.arange(n).astype(str), np.full(n, "catalogue"), raw[f"trained-tags-{windows}"],
                        raw[f"trained-embedding-{windows}"], [],
                        {name: raw[f"{name}-embedding-{windows}"] for name in ("msd-crnn", "msd-cnn")})
    index = RecommendIndex.brute_force(songs, features, params["embedding_components"])
    return f"recommend.features [{', '.join(features)}], {windows}", index.vectors


def feature_spaces(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The spaces compared: MFCC statistics z-scored (the classic baseline), each model's tags and
    embeddings as the recommend stage uses them (raw, cosine) and standardized, combinations of
    blocks (each standardized and scaled to unit length, so each counts alike), and the recommend stage's
    default space."""
    spaces = {"mfcc mean+std, middle (baseline)": standardized(raw["mfcc-middle"]),
              "mfcc mean+std, all windows": standardized(raw["mfcc-all"])}
    for model in MODELS:
        for kind in ("tags", "embedding"):
            for windows in ("middle", "all"):
                block = raw[f"{model}-{kind}-{windows}"]
                spaces[f"{model} {kind}, {windows}"] = block
                spaces[f"{model} {kind}, {windows}, standardized"] = standardized(block)
    for windows in ("middle", "all"):
        spaces[f"trained tags + msd-cnn embedding, {windows}"] = joined(raw[f"trained-tags-{windows}"],
                                                                        raw[f"msd-cnn-embedding-{windows}"])
    spaces["mfcc all + msd-cnn embedding, all"] = joined(raw["mfcc-all"], raw["msd-cnn-embedding-all"])
    return spaces | dict(recommend_space(raw, windows) for windows in ("middle", "all"))


def joined(*blocks: np.ndarray) -> np.ndarray:
    """Feature blocks side by side, each standardized and scaled to unit length so that each counts alike."""
    return np.hstack([unit_rows(standardized(block)) for block in blocks])


def table(tracks: list[dict], spaces: dict[str, np.ndarray], n_resamples: int) -> list[dict]:
    labels = np.array([t["artist"] for t in tracks])
    scores = {"random (expected)": chance_scores(labels, KS)} | {
        name: per_query_scores(vectors, labels, KS) for name, vectors in spaces.items()}
    baseline = scores["mfcc mean+std, middle (baseline)"]["p@5"]
    rows = []
    for name, per_query in scores.items():
        row = {"space": name}
        for metric, values in per_query.items():
            mean, half = confidence_interval(values, 0.95)
            row[metric], row[f"{metric} ±"] = round(mean, 3), round(half, 3)
        diff, low, high = paired_bootstrap(per_query["p@5"], baseline, n_resamples, seed=0)
        row["p@5 - mfcc"], row["low"], row["high"] = round(diff, 3), round(low, 3), round(high, 3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["table", "freeze"], default="table")
    parser.add_argument("--force", action="store_true", help="freeze: replace the frozen list")
    parser.add_argument("--bootstrap", type=int, default=2000, help="paired bootstrap resamples of the queries")
    parser.add_argument("--csv", help="also write the table here")
    args = parser.parse_args()
    if args.command == "freeze":
        return freeze(args.force)
    tracks = read_manifest()
    check_digests(tracks)
    soundtracks = sorted({t["artist"] for t in tracks})
    hours = sum(float(t["duration_s"]) for t in tracks) / 3600
    print(f"{len(tracks)} tracks ({hours:.1f} h) from {len(soundtracks)} soundtracks; leave-one-out, cosine")
    rows = table(tracks, feature_spaces(raw_features(tracks)), args.bootstrap)
    width = max(len(r["space"]) for r in rows)
    print(f"{'space':{width}s}  {'p@1':>11s}  {'p@5':>11s}  {'p@10':>11s}  {'mAP':>11s}  p@5 - MFCC [95% paired bootstrap]")
    for r in rows:
        cells = "  ".join(f"{r[m]:.3f}±{r[m + ' ±']:.3f}" for m in ("p@1", "p@5", "p@10", "ap"))
        print(f"{r['space']:{width}s}  {cells}  {r['p@5 - mfcc']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]")
    if args.csv:
        import pandas as pd

        write_csv(Path(args.csv), pd.DataFrame(rows))


if __name__ == "__main__":
    run_main(main)
