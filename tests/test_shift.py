"""Timbre shift: the test split rendered again note for note with another soundfont, scored per tag family."""
import shutil

import numpy as np
import pytest
from conftest import FRONT_END, SOUNDFONT

from musictag.datasets.corpus import find_soundfont
from musictag.evaluation.shift import group_roc_auc, tag_groups, timbre_shift
from musictag.features.extraction import extract
from musictag.features.shard_writer import write_shards
from musictag.inference.tagger import Tagger
from musictag.params import defaults


def test_groups_are_each_family_then_all_instrument_and_other():
    family_of = {"baroque": "era", "folk": "era", "violin": "instrument", "minor": "mode"}
    groups = tag_groups(list(family_of), family_of)
    assert list(groups) == ["era", "mode", "all", "instrument", "other"]
    assert groups["all"] == list(family_of) and groups["other"] == ["baroque", "folk", "minor"]


def test_a_tag_without_positives_is_left_out_and_an_empty_group_is_none():
    y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]])
    p = np.array([[0.9, 0.5, 0.2], [0.1, 0.5, 0.8], [0.8, 0.5, 0.1], [0.2, 0.5, 0.3]])
    groups = {"era": ["a"], "mode": ["b"], "instrument": ["c"], "all": ["a", "b", "c"]}
    scores = group_roc_auc(y, p, ["a", "b", "c"], groups)
    assert scores["era"] == 1.0 and scores["mode"] is None  # b: no positive clip
    assert scores["instrument"] == 0.5 and scores["all"] == 0.75


@pytest.fixture(scope="module")
def trained_on_the_corpus(tiny_corpus, tmp_path_factory):
    """A k2c1 trained one epoch on the tiny corpus's own spectrograms, and its predictions, as the pipeline
    makes them (store, float16 shards, train, predict)."""
    manifest, _ = tiny_corpus
    root = tmp_path_factory.mktemp("shift")
    settings = {k: v for k, v in defaults("spectrograms", chunk_size=4, workers=2).items() if k != "front_end"}
    extract(list(manifest.clips["id"]), list(manifest.clips["audio_path"]), root / "store", FRONT_END, **settings)
    write_shards(root / "store", manifest, root / "shards", **defaults("shards", examples_per_shard=4, seed=1))
    manifest.write(root / "clean.csv")
    from musictag.model.training import train

    train(root / "shards", root / "model", root / "recovery", root / "live", model="k2c1", hyperparameters={},
          **defaults("train", epochs=1, batch_size=4, shuffle_buffer=8, seed=2))
    Tagger(root / "model").predict_shards(root / "shards").save(root / "predictions.npz")
    return root


def test_the_same_samples_under_another_name_give_no_shift(trained_on_the_corpus, tmp_path):
    """The split rendered again with a copy of the training soundfont is the same audio, note for note (same
    works, windows, tempi, instruments, velocities), so the model gives the same probabilities: no drop."""
    root = trained_on_the_corpus
    twin = tmp_path / "Twin.sf2"
    shutil.copyfile(find_soundfont(SOUNDFONT, "test"), twin)
    headline, table = timbre_shift(root / "model", root / "predictions.npz", root / "clean.csv", [str(twin)],
                                   split="train", seed=7, sample_rate_hz=16000, clip_duration_s=29.12,
                                   timbre_variation=False,
                                   spectrogram_dtype=defaults("shards")["spectrogram_dtype"], workers=2)
    assert headline["n_clips"] >= 3
    assert headline["roc_auc"]["Twin"] == headline["roc_auc"]["as_trained"]
    assert all(drop in (0.0, None) for drop in headline["drop"]["Twin"].values())
    assert list(table["group"])[-3:] == ["all", "instrument", "other"]
    assert (table["n_tags"] > 0).all() and "drop Twin" in table.columns
