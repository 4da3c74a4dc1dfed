"""Choi et al.'s published MSD taggers (musictag.pretrained): their sizes as the author counts them, his
published outputs on his own inputs to every printed digit, and an independent float64 forward pass of the
Keras 1 files (tests/keras1_reference.py) on all 50 outputs, under both Keras backends."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras1_reference
from musictag.errors import MusictagError
from musictag.pretrained import MSD_TAGS, REFERENCE_TAGGERS, WEIGHTS_DIR, load

INPUTS = Path(__file__).parent / "data" / "reference_taggers"  # the author's .npy inputs and the MP3s they came from
SONGS = ("bensound-cute", "bensound-dubstep")
# The author's README (keunwoochoi/music-auto_tagging-keras), MusicTaggerCRNN on these inputs, top 5 of 50
PUBLISHED_CRNN_TOP5 = {
    "bensound-cute": [("jazz", "0.444"), ("instrumental", "0.151"), ("folk", "0.103"), ("Hip-Hop", "0.103"),
                      ("ambient", "0.077")],
    "bensound-dubstep": [("Hip-Hop", "0.245"), ("rock", "0.183"), ("alternative", "0.081"), ("electronic", "0.076"),
                         ("alternative rock", "0.053")],
}
REFERENCE_PASS = {"msd-crnn": keras1_reference.crnn, "msd-cnn": keras1_reference.cnn}


def author_input(song: str) -> np.ndarray:
    """The author's (1, 1, 96, 1366) float64 log-mel, channels first."""
    return np.load(INPUTS / f"{song}.npy")


def channels_last(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1).astype(np.float32)


@pytest.fixture(scope="module")
def published():
    import keras

    loaded = {name: load(name) for name in REFERENCE_TAGGERS}
    return {name: (p, keras.Model(p.model.inputs, [p.model.output, p.model.get_layer("embedding").output]))
            for name, p in loaded.items()}


@pytest.mark.parametrize("name, trainable", [("msd-crnn", 396_786), ("msd-cnn", 865_950)])
def test_sizes_are_the_author_s(published, name, trainable):
    model = published[name][0].model
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert published[name][0].tags == list(MSD_TAGS) and len(MSD_TAGS) == 50


@pytest.mark.parametrize("song", SONGS)
def test_msd_crnn_gives_the_published_top5_to_every_printed_digit(published, song):
    probabilities = np.asarray(published["msd-crnn"][0].model.predict_on_batch(channels_last(author_input(song))))[0]
    top5 = [(MSD_TAGS[i], f"{probabilities[i]:.3f}") for i in np.argsort(-probabilities)[:5]]
    assert top5 == PUBLISHED_CRNN_TOP5[song]


@pytest.mark.parametrize("name", list(REFERENCE_TAGGERS))
@pytest.mark.parametrize("song", SONGS)
def test_keras_model_agrees_with_a_float64_reference_pass(published, name, song):
    """All 50 outputs to 1e-5 and the embedding (the features before the output layer) to 1e-4."""
    weights = keras1_reference.Keras1File(WEIGHTS_DIR / REFERENCE_TAGGERS[name].weights_file)
    x = author_input(song)
    expected, features = REFERENCE_PASS[name](weights, x[0])
    probabilities, embedding = (np.asarray(a)[0] for a in published[name][1].predict_on_batch(channels_last(x)))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(embedding, features, rtol=1e-5, atol=1e-4)
    assert expected.std() > 0.01  # not a constant output, which would agree with anything constant


def test_jax_backend_gives_the_same_outputs(published):
    """The same weights under Keras' JAX backend, in a process that never imports TensorFlow."""
    x = np.concatenate([author_input(song) for song in SONGS])
    expected = {name: np.asarray(p.model.predict_on_batch(channels_last(x))).tolist() for name, (p, _) in published.items()}
    script = ("import json, sys, numpy as np; from musictag.pretrained import load; "
              f"x = np.concatenate([np.load(p) for p in {[str(INPUTS / f'{s}.npy') for s in SONGS]!r}])"
              ".transpose(0, 2, 3, 1).astype(np.float32); "
              f"out = {{n: np.asarray(load(n).model.predict_on_batch(x)).tolist() for n in {list(REFERENCE_TAGGERS)!r}}}; "
              "assert 'tensorflow' not in sys.modules; print(json.dumps(out))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for name in REFERENCE_TAGGERS:
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-5)


def test_the_input_shape_is_what_the_front_end_makes():
    from musictag.audio.frontend import spectrogram_shape
    from musictag.pretrained import MSD_FRONT_END, MSD_INPUT_SHAPE

    assert spectrogram_shape(**MSD_FRONT_END) == MSD_INPUT_SHAPE == author_input(SONGS[0]).shape[2:]


def test_msd_cnn_is_labelled_approximate_and_msd_crnn_exact():
    assert REFERENCE_TAGGERS["msd-cnn"].approximate and not REFERENCE_TAGGERS["msd-crnn"].approximate


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MusictagError, match="unknown name 'vgg'; known: msd-crnn, msd-cnn"):
        load("vgg")


def test_licence_and_credit_ship_with_the_weights():
    licence = (WEIGHTS_DIR / "LICENSE.md").read_text()
    assert "MIT License" in licence and "Keunwoo Choi" in licence
    assert all((WEIGHTS_DIR / reference.weights_file).stat().st_size > 1_000_000 for reference in REFERENCE_TAGGERS.values())


# The 2016 decoder's samples lie this many samples (at 12 kHz) later than libsndfile/mpg123's in the middle
# window: measured by benchmarks/msd_front_end.py, the same for both songs (0.03 and 0.05 dB from the .npy).
DECODER_SHIFT_SAMPLES = 144


@pytest.mark.parametrize("song", SONGS)
def test_the_project_s_front_end_on_the_mp3_is_the_author_s_input_but_for_the_decoder_shift(published, song):
    """From the MP3 through the project's decoder (the whole file, as librosa.load gives it) and front end,
    the middle window moved by the decoder shift: the author's input to 0.1 dB, and his published top 5 to
    every printed digit. Unmoved, the windows differ by 2-4 dB (docs/performance.md)."""
    from musictag.audio.checks import check_audio
    from musictag.audio.frontend import log_mel

    front_end = published["msd-crnn"][0].front_end
    audio = check_audio(INPUTS / f"{song}.mp3", 1.0, -60.0, keep_at_hz=front_end["sample_rate_hz"]).audio
    n_samples = round(front_end["duration_s"] * front_end["sample_rate_hz"])
    start = (len(audio) - n_samples) // 2 + DECODER_SHIFT_SAMPLES
    log_mel_params = {k: v for k, v in front_end.items() if k not in ("sample_rate_hz", "duration_s")}
    spectrogram = log_mel(audio[start:start + n_samples], front_end["sample_rate_hz"], **log_mel_params)
    assert np.abs(spectrogram - author_input(song)[0, 0]).mean() < 0.1
    probabilities = np.asarray(published["msd-crnn"][0].model.predict_on_batch(spectrogram[None, ..., None]))[0]
    assert [(MSD_TAGS[i], f"{probabilities[i]:.3f}") for i in np.argsort(-probabilities)[:5]] == PUBLISHED_CRNN_TOP5[song]


def test_musictag_tag_with_msd_crnn_names_the_model_and_tags_real_mp3s():
    """The MP3s as a user gives them: tagged (not refused for their ID3v2 + ID3v1 tags), the model named, and the
    author's top tag first for each (by margins of 0.05 and more: the window differs from his by the decoder)."""
    done = subprocess.run([sys.executable, "-m", "musictag.cli", "tag", "--model", "msd-crnn", "--windows", "middle",
                           "-k", "3", *(str(INPUTS / f"{song}.mp3") for song in SONGS)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "tagged by msd-crnn"
    first_tags = [lines[i + 1].split()[0] for i, line in enumerate(lines) if line.endswith(".mp3")]
    assert first_tags == [PUBLISHED_CRNN_TOP5[song][0][0] for song in SONGS]
