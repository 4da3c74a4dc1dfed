"""Shared fixtures: a tiny embedded corpus rendered once per test session."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_SAMPLES = REPO_ROOT.parent / "shared" / "dataset-samples"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Eight real clips rendered by the embedded adapter (about 10 s on two cores)."""
    from musictag.corpus import build_corpus

    audio_dir = tmp_path_factory.mktemp("corpus") / "audio"
    manifest = build_corpus(n_clips=8, seed=7, sample_rate_hz=16000, clip_duration_s=29.12,
                            split_fractions=[0.6, 0.2, 0.2], audio_dir=str(audio_dir), workers=2)
    return manifest, audio_dir
