"""A throwaway copy of this repository as its own git + DVC project, for running real `dvc` commands."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from audio_files import write
from conftest import REPO_ROOT


class DvcRepo:
    """The project's tracked files copied to `path`, committed, with params edited by `set_param`."""

    def __init__(self, path: Path):
        self.path = path
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout.split("\n")
        for name in filter(None, listed):
            source = REPO_ROOT / name
            if source.is_file():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path / name)
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@example.org",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@example.org"}
        self.git("init", "-q")
        self.git("add", "-A")
        self.git("commit", "-qm", "copy")

    def git(self, *args: str) -> str:
        return self._run(["git", *args])

    def dvc(self, *args: str) -> str:
        return self._run([sys.executable, "-m", "dvc", *args])

    def _run(self, command: list[str]) -> str:
        done = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout + done.stderr

    def set_param(self, dotted_key: str, value) -> None:
        params = yaml.safe_load((self.path / "params.yaml").read_text())
        *parents, leaf = dotted_key.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def build_shards_repo(root, epochs: int) -> DvcRepo:
    """A copy of the project whose pipeline ran up to its shards on a folder catalogue of 36 three-second
    clips (20 train, 6 valid, 10 test, three tags), committed."""
    audio_dir = root / "audio"
    audio_dir.mkdir()
    rows = []
    for i in range(36):
        write(audio_dir / f"s{i:02d}.wav", 3.0, 16000)
        tags = "|".join(tag for tag, every in (("rock", 2), ("jazz", 3), ("pop", 1)) if i % every == 0)
        rows.append(f"s{i:02d}.wav,{tags},artist{i % 5},{'train' if i < 20 else 'valid' if i < 26 else 'test'}\n")
    (root / "tags.csv").write_text("path,tags,artist,split\n" + "".join(rows))
    repo = DvcRepo(root / "repo")
    for key, value in [("data.source", "folder"), ("data.folder.audio_dir", str(audio_dir)),
                       ("data.folder.tags_csv", str(root / "tags.csv")), ("shards.examples_per_shard", 8),
                       ("train.epochs", epochs), ("train.batch_size", 4), ("train.shuffle_buffer", 16)]:
        repo.set_param(key, value)
    repo.dvc("repro", "shards")
    repo.git("add", "-A")
    repo.git("commit", "-qm", "shards")
    return repo
