"""Faults a real catalogue brings: broken audio through the real pipeline, and bad params."""
import subprocess
import sys

import pandas as pd
import pytest

from dvc_repo import DvcRepo
from test_audio import BAD_FILES, write


@pytest.fixture(scope="module")
def broken_catalogue(tmp_path_factory):
    """A folder catalogue: every kind of broken file test_audio builds, plus three good ones."""
    root = tmp_path_factory.mktemp("catalogue")
    audio_dir = root / "audio"
    expected, rows = {}, []
    for k, case in enumerate(BAD_FILES):
        if any(mark.name == "skipif" and mark.args[0] for mark in case.marks):
            continue
        build, reason = case.values
        folder = audio_dir / f"case{k:02d}"
        folder.mkdir(parents=True)
        path = build(folder)
        expected[f"case{k:02d}"] = reason
        rows.append((f"case{k:02d}", path.relative_to(audio_dir), ["train", "valid", "test"][k % 3]))
    for name, rate, channels in [("hires.wav", 96000, 2), ("mono.flac", 22050, 1), ("song.ogg", 44100, 2)]:
        write(audio_dir / name, 3.0, rate, channels)
        expected[name] = None
        rows.append((name, name, "train"))
    csv_path = root / "tags.csv"
    csv_path.write_text("id,path,tags,split\n" + "".join(f"{i},{p},rock|pop,{s}\n" for i, p, s in rows))
    return audio_dir, csv_path, expected


def test_repro_rejects_every_broken_file_with_its_reason_and_keeps_the_good(tmp_path, broken_catalogue):
    audio_dir, csv_path, expected = broken_catalogue
    assert sum(reason is not None for reason in expected.values()) >= 10
    repo = DvcRepo(tmp_path)
    repo.set_param("data.source", "folder")
    repo.set_param("data.folder.audio_dir", str(audio_dir))
    repo.set_param("data.folder.tags_csv", str(csv_path))
    repo.dvc("repro", "clean")
    rejects = pd.read_csv(repo.path / "metrics" / "rejects.csv")
    assert dict(zip(rejects["id"], rejects["reason"])) == {i: r for i, r in expected.items() if r}
    kept = pd.read_csv(repo.path / "data" / "clean.csv")
    assert sorted(kept["id"]) == sorted(i for i, r in expected.items() if r is None)


@pytest.mark.parametrize("stage, key, value, named", [
    ("dataset", "data.source", "spotify", "data.source"),
    ("dataset", "data.folder.tags_csv", "/no/such/tags.csv", "/no/such/tags.csv"),
    ("train", "model", "vgg16", "model"),
    ("train", "train.epochs", -3, "train.epochs"),
    ("spectrograms", "spectrograms.executor", "spark", "spectrograms.executor"),
])
def test_bad_params_fail_at_once_with_one_line(tmp_path, stage, key, value, named):
    repo = DvcRepo(tmp_path)
    repo.set_param(key, value)
    if key.startswith("data.folder"):
        repo.set_param("data.source", "folder")
    if stage == "spectrograms":  # it reads the clean manifest first: give it one
        (repo.path / "data").mkdir(exist_ok=True)
        (repo.path / "data" / "clean.csv").write_text("id,audio_path,split,artist,title,tag:x\na,a.wav,train,,,1\n")
    done = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=repo.path, env=repo.env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("musictag: error: ") and named in last, done.stderr
    assert "Traceback" not in done.stderr
