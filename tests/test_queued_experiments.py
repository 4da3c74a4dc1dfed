"""Queued DVC experiments keep their own crash-recovery state: one killed mid-run, queued again, resumes only itself.

Real `dvc exp run --queue` / `dvc queue start` (celery workers, temporary copies of the repository) on a
real pipeline of 36 short clips; about a minute and a half on two cores.
"""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from dvc_repo import build_shards_repo

EPOCHS = 5  # enough that a run is still going when the test sees its first epoch finished


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = build_shards_repo(tmp_path_factory.mktemp("queue"), epochs=EPOCHS)
    repo.set_param("train.early_stopping_patience", 0)  # every run its EPOCHS: a tiny run's flat curve would stop it
    repo.git("commit", "-qam", "no early stopping")
    yield repo
    subprocess.run([sys.executable, "-m", "dvc", "queue", "stop", "--kill"], cwd=repo.path, env=repo.env,
                   capture_output=True)


def state_folders(repo) -> dict[str, int]:
    """Recovery folders of the parent repository: key -> epochs finished."""
    folders = {}
    for folder in (repo.path / "data" / "train-recovery").glob("*"):
        if folder.is_dir():
            try:
                folders[folder.name] = json.loads((folder / "backup" / "training_metadata.json").read_text())["epoch"]
            except (OSError, ValueError):
                folders[folder.name] = 0
    return folders


def wait_until(condition, what: str, timeout_s: float = 900):  # 77 s alone; far more beside the suite's heaviest tests
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def queue_idle(repo) -> bool:
    status = repo.dvc("queue", "status")
    return not any(word in status for word in ("Running", "Queued"))


def train_process(repo):
    """The `python -m stages.train` a queued experiment of this repository runs, or None."""
    for process in psutil.process_iter(["cmdline"]):
        try:
            cmdline = process.info["cmdline"] or []
            if "stages.train" in cmdline and str(repo.path) in process.cwd():
                return process
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def queue_and_run(repo, *names_and_seeds):
    for name, seed in names_and_seeds:
        repo.dvc("exp", "run", "--queue", "-n", name, "-S", f"train.seed={seed}", "train")
    # the worker it starts outlives it, holding any pipe it inherited: give it none
    started = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "1"], cwd=repo.path, env=repo.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert started.returncode == 0


def test_a_killed_queued_experiment_resumes_only_itself(repo):
    queue_and_run(repo, ("seed1", 1), ("seed2", 2))
    wait_until(lambda: any(epochs >= 1 for epochs in state_folders(repo).values()), "a first finished epoch")
    process = train_process(repo)
    assert process is not None, "no queued train stage running"
    killed_key = max(state_folders(repo), key=state_folders(repo).get)
    record = json.loads((repo.path / "data" / "train-recovery" / killed_key / "record.json").read_text())
    killed_seed = record["train"]["seed"]
    os.kill(process.pid, signal.SIGKILL)
    wait_until(lambda: queue_idle(repo), "the queue to finish")

    killed, other = ("seed1", "seed2") if killed_seed == 1 else ("seed2", "seed1")
    status = repo.dvc("queue", "status")
    assert any(killed in line and "Failed" in line for line in status.splitlines()), status
    assert any(other in line and "Success" in line for line in status.splitlines()), status
    left = state_folders(repo)
    assert list(left) == [killed_key] and 1 <= left[killed_key] < EPOCHS  # the finished run cleaned up
    other_log = repo.dvc("queue", "logs", other)
    assert "no recovery state: starting at epoch 1" in other_log and "1 other configuration(s)" in other_log

    queue_and_run(repo, (f"{killed}-again", killed_seed))
    wait_until(lambda: queue_idle(repo), "the rerun to finish")
    log = repo.dvc("queue", "logs", f"{killed}-again")
    assert f"configuration {killed_key}: resuming after epoch {left[killed_key]}" in log, log[-3000:]
    assert f"Epoch {EPOCHS}/{EPOCHS}" in log and f"Epoch {left[killed_key]}/{EPOCHS}" not in log
    assert state_folders(repo) == {}
