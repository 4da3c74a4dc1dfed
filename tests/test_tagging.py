"""Tagging with a trained model: catalogue predictions and `musictag tag` on files of any length."""
import csv
import functools
import json
import os
import random
import shutil
import struct
import subprocess
import sys

import audio_fuzz
import numpy as np
import pandas as pd
import pytest
import soundfile
from conftest import FRONT_END

from musictag.audio.workers import Failure
from musictag.cli import main as cli_main
from musictag.errors import MusictagError
from musictag.inference.audio_tagging import tag_file, tag_files, top_tags
from musictag.inference.catalogue import build_catalogue, read_songs
from musictag.inference.predictions import Predictions
from musictag.inference.recommendation import RecommendIndex
from musictag.inference.tagger import Tagger
from musictag.params import defaults
from musictag.pretrained import reference_names


def test_predict_shards_covers_every_split_once(tiny_model, tiny_shards, tmp_path):
    predictions = Tagger(tiny_model).predict_shards(tiny_shards, batch_size=8)
    assert len(predictions.ids) == len(set(predictions.ids)) == 64
    assert predictions.probabilities.shape == (64, 5) and predictions.embeddings.shape == (64, 304)
    assert ((predictions.probabilities >= 0) & (predictions.probabilities <= 1)).all()
    assert (predictions.subset("test").splits == "test").sum() == 16
    predictions.save(tmp_path / "p.npz")
    again = Predictions.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(again.probabilities, predictions.probabilities)
    assert list(again.ids) == list(predictions.ids) and again.tag_names == predictions.tag_names


def test_the_predict_stage_adds_a_published_taggers_embeddings(tiny_model, tiny_shards, tmp_path, monkeypatch):
    predictions = Tagger(tiny_model).predict_shards(tiny_shards, references=["msd-cnn"])
    own = Tagger(tiny_model).predict_shards(tiny_shards)
    theirs = Tagger("msd-cnn").model.predict_on_batch  # msd-cnn's (probabilities, embeddings) of a batch
    assert list(predictions.ids) == list(own.ids)
    np.testing.assert_array_equal(predictions.probabilities, own.probabilities)
    block = predictions.reference_embeddings["msd-cnn"]
    assert block.shape == (64, 256) and np.isfinite(block).all() and block.std(axis=0).max() > 0
    from musictag.features.shard_reader import epoch_batches

    spectrograms, _, ids = next(epoch_batches(tiny_shards, "train", 4, with_ids=True))  # the shards as stored
    rows = [list(predictions.ids).index(i) for i in ids]
    np.testing.assert_allclose(block[rows], np.asarray(theirs(spectrograms)[1]), atol=1e-4)
    predictions.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(Predictions.load(tmp_path / "p.npz").take(rows).reference_embeddings["msd-cnn"],
                                  block[rows])
    import musictag.features.shard_reader as shard_reader

    other = {**shard_reader.read_index(tiny_shards), "front_end": {**FRONT_END, "n_mels": 128}}
    monkeypatch.setattr(shard_reader, "read_index", lambda shards_dir: other)
    with pytest.raises(MusictagError, match="recommend.features: msd-cnn reads spectrograms of its own front end"):
        Tagger(tiny_model).predict_shards(tiny_shards, references=["msd-cnn"])


def test_long_file_is_scored_over_several_windows(tiny_model, tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(70 * 22050) / 22050  # 70 s: three 29.12 s windows
    audio = 0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.02 * rng.standard_normal(len(t))
    path = tmp_path / "song.wav"
    soundfile.write(path, audio.astype(np.float32), 22050)
    tagger = Tagger(tiny_model)
    probabilities = tag_file(tagger, path, **file_checks())
    assert probabilities.shape == (5,)
    first_window_only = tag_file(tagger, _cut(path, tmp_path, seconds=29.12), **file_checks())
    assert not np.allclose(probabilities, first_window_only)  # later windows count too
    tags = top_tags(path, tiny_model, k=3, **file_checks())
    assert [t for t, _ in tags] == [tagger.tag_names[i] for i in np.argsort(probabilities)[::-1][:3]]


def _cut(path, tmp_path, seconds):
    audio, sample_rate_hz = soundfile.read(path)
    cut = tmp_path / "cut.wav"
    soundfile.write(cut, audio[: int(seconds * sample_rate_hz)], sample_rate_hz)
    return cut


def test_musictag_tag_command_prints_tags(tiny_model, tmp_path, capsys):
    path = tmp_path / "clip.wav"
    soundfile.write(path, (0.2 * np.sin(np.arange(5 * 16000) / 5)).astype(np.float32), 16000)
    cli_main(["tag", str(path), "--model", str(tiny_model), "-k", "2"])
    out = capsys.readouterr().out
    printed = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert str(path) in out and len(printed) == 2
    tagger = Tagger(tiny_model)  # the one-call API decodes in-process: the same tags, the same numbers
    probabilities = tag_file(tagger, path, **file_checks())
    expected = [(tagger.tag_names[i], f"{probabilities[i]:.3f}") for i in probabilities.argsort()[::-1][:2]]
    assert [(" ".join(words[:-1]), words[-1]) for words in printed] == expected


def test_musictag_tag_on_a_bad_file_is_one_line(tiny_model, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all")
    # as a user's shell has it: training (imported by this test session) switches oneDNN on, and TensorFlow
    # then logs a line of its own saying so
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    done = subprocess.run([sys.executable, "-m", "musictag.cli", "tag", str(bad), "--model", str(tiny_model)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"musictag: error: {bad}: wrong header")


def test_musictag_tag_on_damaged_files_gives_tags_or_one_line_each(tiny_model, tmp_path):
    (tmp_path / "base").mkdir()
    base = audio_fuzz.write_base_files(tmp_path / "base")
    rng, paths = random.Random(15), []
    for i in range(12):
        name = sorted(base)[i % len(base)]
        paths.append(tmp_path / f"damaged{i:02d}{os.path.splitext(name)[1]}")
        paths[-1].write_bytes(audio_fuzz.mutate(base[name], *audio_fuzz.random_mutations(rng, base[name])))
    one_hz = bytearray(base["pcm16.wav"])
    one_hz[24:32] = struct.pack("<II", 1, 4)  # fmt: sample rate 1 Hz, byte rate
    (tmp_path / "one-hz.wav").write_bytes(one_hz)
    paths += [tmp_path / "one-hz.wav", tmp_path / "base" / "song.flac"]
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    done = subprocess.run([sys.executable, "-m", "musictag.cli", "tag", *map(str, paths), "--model",
                           str(tiny_model), "-k", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in done.stderr
    *reasons, summary = done.stderr.strip().splitlines()  # nothing else: no decoder chatter
    not_tagged = {line.split(": ")[0]: line.split(": ", 1)[1] for line in reasons}
    model_line, *listed = done.stdout.splitlines()
    assert model_line == f"tagged by {tiny_model} (k2c1)"  # the output names the model that tagged
    tagged = [line for line in listed if not line.startswith("  ")]
    assert sorted([*tagged, *not_tagged]) == sorted(map(str, paths)) and str(paths[-1]) in tagged
    assert not_tagged[str(tmp_path / "one-hz.wav")].startswith("implausible sample rate")
    assert done.returncode == 1 and summary.startswith(f"musictag: error: {len(reasons)} of {len(paths)} files")


def _song(path, seconds, pitch_hz, sample_rate_hz=22050):
    rng = np.random.default_rng(int(pitch_hz))
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    audio = 0.3 * np.sin(2 * np.pi * pitch_hz * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.02 * rng.standard_normal(len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, audio.astype(np.float32), sample_rate_hz)
    return path


def test_tagging_a_folder_writes_every_file_once_and_lists_the_bad(tiny_model, tmp_path, capsys):
    library = tmp_path / "library"
    songs = [_song(library / "a.wav", 10, 220), _song(library / "deep" / "b.flac", 70, 330),
             _song(library / "deep" / "c.ogg", 20, 440)]
    (library / "deep" / "broken.mp3").write_bytes(b"not audio")
    (library / "notes.txt").write_text("not a song")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["tag", str(library), "--model", str(tiny_model), "--output", str(tmp_path / "tags.jsonl"),
                  "--per-window", "-k", "2"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"{library / 'deep' / 'broken.mp3'}: wrong header") and "1 of 4 files" in err[-1]
    records = [json.loads(line) for line in (tmp_path / "tags.jsonl").read_text().splitlines()]
    assert [r["path"] for r in records] == sorted(map(str, songs))
    tagger = Tagger(tiny_model)
    assert all(list(r["probabilities"]) == tagger.tag_names and len(r["top_tags"]) == 2 for r in records)
    assert {r["model"] for r in records} == {f"{tiny_model} (k2c1)"}
    by_path = {r["path"]: r for r in records}
    assert [w["start_s"] for w in by_path[str(songs[1])]["windows"]] == [0.0, 29.12, 58.24]  # 70 s: 3 windows
    expected = tag_file(tagger, songs[1], **file_checks())  # the one-call API: the same mean over windows
    np.testing.assert_allclose(list(by_path[str(songs[1])]["probabilities"].values()), expected, atol=1e-4)

    cli_main(["tag", *map(str, songs), "--model", str(tiny_model), "--output", str(tmp_path / "tags.csv"),
              "--windows", "middle"])
    rows = list(csv.DictReader((tmp_path / "tags.csv").open()))
    assert [row["path"] for row in rows] == list(map(str, songs))
    # a song shorter than one window is the same single window either way
    for song in (songs[0], songs[2]):
        middle = [float(row[t]) for row in rows if row["path"] == str(song) for t in tagger.tag_names]
        np.testing.assert_allclose(middle, list(by_path[str(song)]["probabilities"].values()), atol=1e-4)


def file_checks() -> dict:
    """The clean stage's rules for a usable file, from params.yaml."""
    clean = defaults("clean")
    return {"min_duration_s": clean["min_duration_s"], "silence_dbfs": clean["silence_dbfs"]}


def tagging(windows: str) -> dict:
    """tag_files' options as the catalogue stage tags: params.yaml's catalogue section, the clean stage's checks."""
    chosen = defaults("catalogue", windows=windows)
    return {**{key: chosen[key] for key in ("windows", "timeout_s", "memory_limit_mb")}, **file_checks()}


def catalogue(*paths, **options) -> dict:
    """build_catalogue with params.yaml's catalogue, data and clean sections, but for `options`; the model is
    the first of `paths` (the stage turns catalogue.model into it), the references recommend.features' published
    taggers (as the stage picks them)."""
    references = reference_names(defaults("recommend")["features"])
    params = {**defaults("catalogue"), "references": references, "data_params": defaults("data"),
              "file_checks": file_checks()}
    del params["model"]
    return build_catalogue(*paths, **{**params, **options})


def test_a_folder_catalogue_tags_each_file_once_and_is_searched_by_audio(tiny_model, tmp_path, capsys):
    folder = tmp_path / "music"
    songs = [_song(folder / ("a" if i < 3 else "b/deep") / f"song{i}.wav", 12 + 10 * i, 110 * (i + 1)) for i in range(6)]
    (folder / "b" / "broken.mp3").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    (folder / "notes.txt").write_text("not audio")
    out = tmp_path / "catalogue"
    build = functools.partial(catalogue, out, tiny_model, tmp_path / "unused.npz", tmp_path / "unused.csv",
                              source="folder", audio_dir=str(folder))
    assert build() == {"n_songs": 6, "n_tagged": 6, "n_reused": 0, "n_failed": 1}
    table = read_songs(out)
    assert list(table.index) == ["a/song0.wav", "a/song1.wav", "a/song2.wav", "b/deep/song3.wav",
                                 "b/deep/song4.wav", "b/deep/song5.wav"]
    assert table.loc["b/deep/song3.wav", "artist"] == "deep" and table.loc["a/song1.wav", "title"] == "song1"
    failed = pd.read_csv(out / "failed.csv")
    assert failed["id"].tolist() == ["b/broken.mp3"] and failed["reason"].tolist() == ["wrong header"]
    first = Predictions.load(out / "songs.npz")
    assert "broken.mp3: wrong header" in capsys.readouterr().err

    # nothing new: nothing tagged, the broken file not retried; one new file: only it is tagged
    assert build() == {"n_songs": 6, "n_tagged": 0, "n_reused": 7, "n_failed": 1}
    _song(folder / "a" / "song6.wav", 40, 770)
    assert build() == {"n_songs": 7, "n_tagged": 1, "n_reused": 7, "n_failed": 1}
    again = Predictions.load(out / "songs.npz")
    assert list(again.ids) == [*first.ids[:3], "a/song6.wav", *first.ids[3:]]
    np.testing.assert_array_equal(np.delete(again.probabilities, 3, axis=0), first.probabilities)
    # what the tags depend on changed: every file is tagged again
    other_windows = "middle" if defaults("catalogue")["windows"] == "all" else "all"
    assert build(windows=other_windows) == {"n_songs": 7, "n_tagged": 7, "n_reused": 0, "n_failed": 1}
    long_song = list(again.ids).index("b/deep/song5.wav")  # 62 s: three windows, so the middle one differs
    assert not np.allclose(Predictions.load(out / "songs.npz").probabilities[long_song], again.probabilities[long_song])
    build()
    assert build(references=[]) == {"n_songs": 7, "n_tagged": 7, "n_reused": 0, "n_failed": 1}  # taggers changed
    assert not Predictions.load(out / "songs.npz").reference_embeddings
    build()

    # the catalogue's songs are what an unseen file, tagged the same way, is searched among
    tagger, reference = Tagger(tiny_model), Tagger("msd-cnn")
    tagged = Predictions.load(out / "songs.npz")
    assert tagged.reference_embeddings["msd-cnn"].shape == (7, 256)
    features = ["tags", "embeddings", "msd-cnn"]
    index = RecommendIndex.brute_force(tagged, features, embedding_components=4)  # msd-cnn's 256 searched as 4

    def vector(path):
        ((_, query),) = tag_files(tagger, [str(path)], **tagging(defaults("catalogue")["windows"]))
        ((_, theirs),) = tag_files(reference, [str(path)], **tagging(defaults("catalogue")["windows"]))
        return index.vectors_of(Predictions(np.array([str(path)]), np.array(["q"]), query.probabilities[np.newaxis],
                                            query.embedding[np.newaxis], tagger.tag_names,
                                            {"msd-cnn": theirs.embedding[np.newaxis]}))[0]

    nearest, distance = index.similar_to(vector(songs[3]), k=3)[0]
    assert nearest == "b/deep/song3.wav" and distance < 1e-5  # a catalogue song, as audio, finds itself
    new_song = _song(tmp_path / "new" / "unseen.flac", 15, 350)
    neighbours = index.similar_to(vector(new_song), k=3)
    assert len(neighbours) == 3 and {i for i, _ in neighbours} <= set(table.index) | {"a/song6.wav"}
    assert [d for _, d in neighbours] == sorted(d for _, d in neighbours)
    assert index.playlist(vector(new_song), length=4)[0] == neighbours[0][0]


def test_published_embeddings_come_with_the_tags_from_one_decode_or_from_their_own(tiny_model, tmp_path):
    songs = [_song(tmp_path / f"song{i}.wav", 20 + 25 * i, 220 * (i + 1)) for i in range(2)]
    (tmp_path / "broken.mp3").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    paths = [str(songs[0]), str(tmp_path / "broken.mp3"), str(songs[1])]
    alone = dict(tag_files(Tagger("msd-cnn"), paths, **tagging("all")))
    for front_end_changed in (False, True):  # the same front end: one decode; another: msd-cnn decodes again
        model = tiny_model
        if front_end_changed:
            model = tmp_path / "other_front_end"
            shutil.copytree(tiny_model, model)
            config = json.loads((model / "config.json").read_text())
            config["front_end"]["top_db"] = 70.0  # another front end, the same input shape
            (model / "config.json").write_text(json.dumps(config))
        tagged = list(tag_files(Tagger(model), paths, **tagging("all"), references=["msd-cnn"]))
        assert [path for path, _ in tagged] == paths and isinstance(tagged[1][1], Failure)
        for path in (paths[0], paths[2]):
            result = dict(tagged)[path]
            assert list(result.reference_embeddings) == ["msd-cnn"]
            np.testing.assert_allclose(result.reference_embeddings["msd-cnn"], alone[path].embedding, atol=1e-5)
    ((_, own),) = tag_files(Tagger("msd-cnn"), paths[:1], **tagging("all"), references=["msd-cnn"])
    np.testing.assert_array_equal(own.reference_embeddings["msd-cnn"], own.embedding)  # tagged once


def test_a_catalogue_source_names_its_own_audio_folder(tiny_model, tmp_path):
    build = functools.partial(catalogue, tmp_path / "out", tiny_model, tmp_path / "p.npz", tmp_path / "c.csv")
    with pytest.raises(MusictagError, match=r"catalogue.audio_dir: .*empty.* is not a folder"):
        build(source="folder", audio_dir=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MusictagError, match="catalogue.audio_dir: no audio files under"):
        build(source="folder", audio_dir=str(tmp_path / "empty"))
    with pytest.raises(MusictagError, match=r"set it to data.mtat.audio_dir \(/elsewhere\)"):
        build(source="mtat", audio_dir=str(tmp_path), data_params={"mtat": {"audio_dir": "/elsewhere"}})
    assert not (tmp_path / "out").exists()


def test_a_published_tagger_indexes_a_folder_with_no_training(tmp_path):
    """catalogue.model: msd-crnn tags a folder with MSD's 50 tags and its 32-d embeddings, and the catalogue
    names the model; then a model change (the trained one) tags every file again."""
    from musictag.pretrained import MSD_TAGS

    folder = tmp_path / "music"
    for i in range(3):
        _song(folder / f"song{i}.wav", 8, 220 * (i + 1))
    out = tmp_path / "catalogue"
    assert catalogue(out, "msd-crnn", tmp_path / "unused.npz", tmp_path / "unused.csv", source="folder",
                     audio_dir=str(folder))["n_tagged"] == 3
    songs = Predictions.load(out / "songs.npz")
    assert list(songs.tag_names) == list(MSD_TAGS) and songs.embeddings.shape == (3, 32)
    assert json.loads((out / "tagging.json").read_text())["model"] == "msd-crnn"


def test_a_published_tagger_cannot_stand_for_the_training_catalogue(tmp_path):
    with pytest.raises(MusictagError, match="catalogue.model: msd-crnn tags audio; with source training"):
        catalogue(tmp_path / "c", "msd-crnn", tmp_path / "p.npz", tmp_path / "c.csv", source="training",
                  audio_dir=str(tmp_path))
