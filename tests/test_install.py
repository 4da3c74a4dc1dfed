"""`make pipeline` on a GPU machine installs TensorFlow's CUDA build, at the version requirements.txt pins."""
import os
import re
import subprocess

import pytest

from musictag.paths import REPO_ROOT


def install_commands(tmp_path, gpu: bool) -> str:
    """What `make venv` would run (make -n), with an nvidia-smi on PATH that answers or not."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(f"#!/bin/sh\nexit {0 if gpu else 1}\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["make", "-n", "-B", "venv"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("gpu, build", [(True, "tensorflow[and-cuda]"), (False, "tensorflow-cpu")])
def test_the_tensorflow_build_follows_the_machine(tmp_path, gpu, build):
    pinned = re.search(r"^tensorflow-cpu==(\S+)", (REPO_ROOT / "requirements.txt").read_text(), re.M).group(1)
    commands = install_commands(tmp_path, gpu)
    assert f'"{build}=={pinned}"' in commands
    other = "tensorflow-cpu" if gpu else "tensorflow[and-cuda]"
    assert f'"{other}==' not in commands
