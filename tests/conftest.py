"""Shared fixtures: a tiny embedded corpus rendered once per test session."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from musictag.model.engines import select_backend
from musictag.params import defaults

select_backend("tensorflow")  # as the stage scripts do, before any test imports Keras

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FRONT_END = defaults("spectrograms")["front_end"]  # params.yaml's, the one home of every default
SOUNDFONT = "TimGM6mb.sf2"  # the one soundfont every machine has (pretty_midi's wheel): tests render with it


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Eight real clips rendered by the embedded adapter (about 10 s on two cores)."""
    from musictag.datasets.corpus import build_corpus

    audio_dir = tmp_path_factory.mktemp("corpus") / "audio"
    manifest = build_corpus(n_clips=8, seed=7, sample_rate_hz=16000, clip_duration_s=29.12,
                            split_fractions=[0.6, 0.2, 0.2], audio_dir=str(audio_dir), soundfonts=[SOUNDFONT],
                            timbre_variation=False, workers=2)
    return manifest, audio_dir


def write_store(store_dir: Path, ids: list[str], spectrograms=None, chunk_size: int = 16, front_end=None) -> Path:
    """A spectrogram store written through musictag.features.spectrogram_store, as the spectrograms stage writes one: `spectrograms`
    (n, n_mels, n_frames), or log-mel-like random values of the front end's shape, `chunk_size` songs a chunk."""
    import numpy as np

    from musictag.features.spectrogram_store import start_chunk, write_index, write_row

    if spectrograms is None:
        spectrograms = np.random.default_rng(0).uniform(-80, 0, size=(len(ids), 96, 1366)).astype(np.float32)
    store_dir.mkdir(parents=True)
    row_shape = tuple(spectrograms.shape[1:])
    chunks = []
    for k, start in enumerate(range(0, len(ids), chunk_size)):
        name = f"chunk-{k:05d}.npy"
        rows = np.asarray(spectrograms[start:start + chunk_size], np.float32)
        for offset, row in zip(start_chunk(store_dir / name, len(rows), row_shape), rows):
            write_row(store_dir / name, offset, row, row_shape)
        chunks.append({"file": name, "ids": ids[start:start + chunk_size]})
    write_index(store_dir, row_shape, FRONT_END if front_end is None else front_end, chunks, [])
    return store_dir


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """TFRecord shards of 32 train, 16 valid and 16 test examples with 5 random tags."""
    import numpy as np
    import pandas as pd

    from musictag.datasets.manifest import Manifest
    from musictag.features.shard_writer import write_shards

    root = tmp_path_factory.mktemp("shards")
    ids = [f"clip{i:03d}" for i in range(64)]
    write_store(root / "store", ids)
    clips = pd.DataFrame({"id": ids, "audio_path": [f"{i}.flac" for i in ids],
                          "split": ["train"] * 32 + ["valid"] * 16 + ["test"] * 16,
                          "artist": [f"a{i % 8}" for i in range(64)], "title": ids})
    targets = np.random.default_rng(1).random((64, 5)) < 0.3
    manifest = Manifest(clips, ["t0", "t1", "t2", "t3", "t4"], targets)
    write_shards(root / "store", manifest, root / "shards",
                 **defaults("shards", examples_per_shard=8, compression="", seed=3))
    return root / "shards"


@pytest.fixture(scope="session")
def tiny_model(tiny_shards, tmp_path_factory):
    """A k2c1 trained for one epoch on the tiny shards: a real model directory to tag with."""
    from musictag.model.training import train

    root = tmp_path_factory.mktemp("model")
    train(tiny_shards, root / "model", root / "recovery", root / "live", model="k2c1", hyperparameters={},
          **defaults("train", epochs=1, batch_size=8, learning_rate=1e-3, shuffle_buffer=32, seed=5))
    return root / "model"


def kill_9_when(script: str, ready) -> None:
    """Run `script` in a new process group and SIGKILL the whole group (workers too) once ready() holds."""
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not ready():
        assert child.poll() is None, f"the run ended (exit {child.returncode}) before it could be killed"
        assert time.time() < deadline, "the run never got far enough to be killed"
        time.sleep(0.02)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Selenium (no browser download); page errors collected."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    # Collect page errors from before the page's own script runs.
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__errors = [];"
        "window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e.type)); }, true);"
        "window.addEventListener('unhandledrejection',"
        "  function (e) { window.__errors.push('rejection: ' + e.reason); });")})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file of a folder (not recursive) by name: two outputs compared byte for byte."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}
