"""The recommendation catalogue: the songs `musictag similar` and `playlist` recommend from.

`source: training` (the default) is the pipeline's own songs with the `predict` stage's outputs. Any
other source is audio the model may never have heard: every audio file under a folder (`folder`), or
the clips of a dataset adapter (`msd`, `mtat`, `mtg-jamendo`, with their `data.*` params), tagged by
the trained model or a published one (`model: msd-crnn`: MSD's 50 tags with no training at all) through
musictag.inference.audio_tagging (the pipeline's front end; every 29.12 s window averaged, or the middle
one alone, as the model was trained), and by each published tagger that recommend.features joins (its
embeddings).

Tagging is incremental. The stage's output folder is `persist`ed, so DVC leaves the last run's results in
place when the audio folder changes, and each file's result is kept under the MD5 of its bytes; a
rerun tags only files whose MD5 it has not seen, as long as the taggers' files, their front ends and
`windows` are the same (`fingerprint`); otherwise every file is tagged again. A file that cannot be
tagged is remembered the same way, and not retried until its bytes change.

Output folder (`songs.csv` row i is row i of `songs.npz`):
- songs.npz: musictag.inference.predictions.Predictions, split "catalogue": probabilities (n, n_tags), embeddings (n, d),
  reference_embeddings {name: (n, d_name)}
- songs.csv: id, audio_path, artist, title, md5
- failed.csv: id, audio_path, md5, reason, detail
- tagging.json: the model that tagged, the fingerprint, and the counts of the last run
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from musictag.errors import MusictagError
from musictag.files import replace_dir
from musictag.inference.predictions import Predictions
from musictag.pretrained import REFERENCE_TAGGERS

SONG_COLUMNS = ["id", "audio_path", "artist", "title", "md5"]
FAILED_COLUMNS = ["id", "audio_path", "md5", "reason", "detail"]
CATALOGUE_SPLIT = "catalogue"


def folder_songs(audio_dir: Path) -> pd.DataFrame:
    """Every audio file under `audio_dir`, recursively: id = its path relative to the folder, title =
    its file name without extension, artist = the folder it lies in (empty at the top level)."""
    from musictag.inference.audio_tagging import find_audio

    if not audio_dir.is_dir():
        raise MusictagError(f"catalogue.audio_dir: {audio_dir} is not a folder")
    paths = [Path(p) for p in find_audio([audio_dir])]
    if not paths:
        raise MusictagError(f"catalogue.audio_dir: no audio files under {audio_dir}")
    relative = [p.relative_to(audio_dir) for p in paths]
    return pd.DataFrame({"id": [r.as_posix() for r in relative], "audio_path": [str(p) for p in paths],
                         "artist": [r.parent.name for r in relative], "title": [r.stem for r in relative]})


def adapter_songs(source: str, options: dict, audio_dir: Path) -> pd.DataFrame:
    """Every clip of a dataset adapter, all splits. `audio_dir` must be the adapter's own audio folder:
    it is the folder that DVC watches for this stage."""
    from musictag.datasets.adapters import build_manifest

    if Path(options.get("audio_dir", "")).expanduser() != audio_dir:
        raise MusictagError(f"catalogue.audio_dir: with source {source}, set it to data.{source}.audio_dir "
                            f"({options.get('audio_dir')}), so that DVC reruns the stage when files are added")
    clips = build_manifest(source, options).clips
    return clips[["id", "audio_path", "artist", "title"]].astype(str).reset_index(drop=True)


def file_md5(path: str) -> str:
    """MD5 of a file's bytes, or "" for a file that cannot be read (tagging then says why)."""
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "md5").hexdigest()
    except OSError:
        return ""


def fingerprint(taggers: list, windows: str) -> str:
    """What a file's results depend on besides its bytes: each tagger's weights file and front end, and `windows`."""
    parts = []
    for tagger in taggers:
        with open(tagger.weights_path, "rb") as file:
            parts.append([hashlib.file_digest(file, "md5").hexdigest(), tagger.config["front_end"]])
    return hashlib.md5(json.dumps([*parts, windows], sort_keys=True).encode()).hexdigest()


def build_catalogue(out_dir: Path, model: str | Path, predictions_path: Path, clean_csv: Path, *,
                    source: str, audio_dir: str, windows: str, timeout_s: float, memory_limit_mb: float,
                    references: list[str], data_params: dict, file_checks: dict) -> dict:
    """Write the catalogue of `source` to `out_dir` (see the module docstring) and return its counts:
    songs, tagged in this run, reused from the last one, and failed. `model` tags the audio sources: the
    trained model's folder or a published tagger's name (musictag.inference.tagger.Tagger); each published
    tagger named in `references` adds its embeddings (the blocks recommend.features joins; with source
    training the predict stage computed them). `data_params` is params.yaml's data section (an adapter
    source's options), `file_checks` the clean stage's min_duration_s and silence_dbfs."""
    out_dir = Path(out_dir)
    if source == "training" and str(model) in REFERENCE_TAGGERS:
        raise MusictagError(f"catalogue.model: {model} tags audio; with source training the catalogue is the "
                            "predict stage's outputs of the trained model: set catalogue.source to folder or a dataset")
    if source == "training":
        predictions = Predictions.load(predictions_path)
        clips = pd.read_csv(clean_csv, dtype=str, keep_default_na=False).set_index("id")
        songs = clips.loc[predictions.ids.astype(str), ["audio_path", "artist", "title"]].reset_index()
        songs["md5"] = ""
        counts = {"n_songs": len(songs), "n_tagged": 0, "n_reused": 0, "n_failed": 0}
        failed = pd.DataFrame(columns=FAILED_COLUMNS)
        state = {"source": source}
    else:
        audio_dir = Path(audio_dir).expanduser()
        songs = (folder_songs(audio_dir) if source == "folder"
                 else adapter_songs(source, data_params[source], audio_dir))
        predictions, songs, failed, counts, state = _tag_songs(songs, out_dir, model, references, windows, timeout_s,
                                                               memory_limit_mb, file_checks)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    predictions.save(tmp / "songs.npz")
    songs[SONG_COLUMNS].to_csv(tmp / "songs.csv", index=False)
    failed[FAILED_COLUMNS].to_csv(tmp / "failed.csv", index=False)
    (tmp / "tagging.json").write_text(json.dumps({**state, **counts}, indent=2) + "\n")
    replace_dir(tmp, out_dir)
    return counts


def _tag_songs(songs: pd.DataFrame, previous_dir: Path, model: str | Path, references: list[str], windows: str,
               timeout_s: float, memory_limit_mb: float, file_checks: dict):
    """Tag the songs whose (md5, fingerprint) the previous run did not see; reuse the rest. A song's result is
    (probabilities, embedding, {reference: its embedding})."""
    from musictag.audio.workers import Failure
    from musictag.inference.audio_tagging import tag_files
    from musictag.inference.tagger import Tagger

    tagger = Tagger(model)
    state = {"source": "audio", "model": tagger.name, "references": references,
             "fingerprint": fingerprint([tagger, *map(Tagger, references)], windows), "windows": windows}
    songs = songs.assign(md5=[file_md5(p) for p in songs["audio_path"]])
    done, failed_before = _previous_results(previous_dir, state["fingerprint"])
    new = songs[~songs["md5"].isin(done.keys() | failed_before.keys()) | (songs["md5"] == "")]
    paths = list(dict.fromkeys(new["audio_path"]))  # a duplicated file is tagged once
    tagged_now, failed_now = {}, {}
    options = {"windows": windows, "timeout_s": timeout_s, "memory_limit_mb": memory_limit_mb, **file_checks}
    for path, outcome in tag_files(tagger, paths, **options, references=references):
        if isinstance(outcome, Failure):
            print(outcome.message(path), file=sys.stderr)
            failed_now[path] = (outcome.reason, outcome.detail)
        else:
            tagged_now[path] = (outcome.probabilities, outcome.embedding, outcome.reference_embeddings)
    results, failures = [], []
    for song in songs.itertuples(index=False):
        if song.audio_path in tagged_now or song.audio_path in failed_now:
            result, failure = tagged_now.get(song.audio_path), failed_now.get(song.audio_path)
        else:
            result, failure = done.get(song.md5), failed_before.get(song.md5)
        results.append(result)
        failures.append(failure)
    keep = np.array([r is not None for r in results], dtype=bool)
    if keep.sum() < 2:
        raise MusictagError(f"catalogue: {keep.sum()} of {len(songs)} song(s) could be tagged; "
                            "need at least 2 to recommend from")
    probabilities = np.stack([r[0] for r in results if r is not None])
    embeddings = np.stack([r[1] for r in results if r is not None])
    reference_embeddings = {name: np.stack([r[2][name] for r in results if r is not None]) for name in references}
    good = songs[keep].reset_index(drop=True)
    bad = songs[~keep].reset_index(drop=True)
    bad_reasons = [f for f in failures if f is not None]
    failed = bad.assign(reason=[r for r, _ in bad_reasons], detail=[d for _, d in bad_reasons])
    predictions = Predictions(good["id"].to_numpy(str), np.full(len(good), CATALOGUE_SPLIT), probabilities,
                              embeddings, tagger.tag_names, reference_embeddings)
    counts = {"n_songs": len(good), "n_tagged": len(tagged_now), "n_reused": len(songs) - len(new),
              "n_failed": len(failed)}
    return predictions, good, failed, counts, state


def _previous_results(out_dir: Path, current_fingerprint: str) -> tuple[dict, dict]:
    """md5 -> (probabilities, embedding, {reference: embedding}) and md5 -> (reason, detail) of the last run, if
    it tagged audio with the same fingerprint; empty otherwise (no last run, or anything unreadable in it)."""
    try:
        state = json.loads((out_dir / "tagging.json").read_text())
        if state.get("fingerprint") != current_fingerprint:
            return {}, {}
        songs = pd.read_csv(out_dir / "songs.csv", dtype=str, keep_default_na=False)
        failed = pd.read_csv(out_dir / "failed.csv", dtype=str, keep_default_na=False)
        previous = Predictions.load(out_dir / "songs.npz")
    except (OSError, ValueError, KeyError, MusictagError):
        return {}, {}
    if list(previous.ids.astype(str)) != songs["id"].tolist():
        return {}, {}
    done = {md5: (previous.probabilities[row], previous.embeddings[row],
                  {name: vectors[row] for name, vectors in previous.reference_embeddings.items()})
            for row, md5 in enumerate(songs["md5"]) if md5}
    return done, {md5: (r, d) for md5, r, d in zip(failed["md5"], failed["reason"], failed["detail"]) if md5}


def read_songs(catalogue_dir: Path) -> pd.DataFrame:
    """The catalogue's song table (SONG_COLUMNS), indexed by id."""
    try:
        return pd.read_csv(Path(catalogue_dir) / "songs.csv", dtype=str, keep_default_na=False).set_index("id")
    except FileNotFoundError:
        raise MusictagError(f"{catalogue_dir}: no recommendation catalogue (run `dvc repro catalogue`)") from None
