"""What a second machine pays to get this repository's pipeline: `dvc pull --run-cache` plus `dvc repro`.

    python benchmarks/two_clones.py                    # this checkout's last commit, its outputs pushed first
    python benchmarks/two_clones.py --scratch /big/disk

Machine A is this checkout (its pipeline run and committed, `dvc status dvc.yaml` clean). Its outputs and
run cache are pushed to a local-directory remote, the repository cloned (a second machine's `git clone`),
and in the clone `dvc pull --run-cache` then `dvc repro` run, each timed; the clone's `git status` and
`dvc status dvc.yaml` must be clean and `dvc repro` must run no stage. The remote is set in the clone's
local config, so nothing in git changes. Compare the sum with a from-scratch `make pipeline`
(docs/performance.md). Needs free disk for two more copies of the outputs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(cwd: Path, *command: str) -> tuple[str, float]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    done = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout + done.stderr, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scratch", help="folder for the remote and the clone (default: the system's temp)")
    args = parser.parse_args()
    dvc = [sys.executable, "-m", "dvc"]
    status, _ = run(REPO_ROOT, *dvc, "status", "dvc.yaml")
    if "up to date" not in status:
        sys.exit(f"run and commit the pipeline first: `dvc status dvc.yaml` says\n{status[:2000]}")
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        remote, clone = Path(scratch) / "remote", Path(scratch) / "clone"
        _, push_s = _push(REPO_ROOT, dvc, remote)
        run(Path(scratch), "git", "clone", "-q", str(REPO_ROOT), str(clone))
        run(clone, *dvc, "remote", "add", "--local", "-d", "bench", str(remote))
        _, pull_s = run(clone, *dvc, "pull", "--run-cache")
        repro, repro_s = run(clone, *dvc, "repro")
        ran = [line for line in repro.splitlines() if line.startswith("Running stage")]
        git_status, _ = run(clone, "git", "status", "--porcelain")
        dvc_status, _ = run(clone, *dvc, "status", "dvc.yaml")
        size = sum(f.stat().st_size for f in (clone / "data").rglob("*") if f.is_file())
        print(f"A: dvc push --run-cache to a local remote   {push_s:7.1f} s")
        print(f"B: dvc pull --run-cache                     {pull_s:7.1f} s  ({size / 1e9:.2f} GB of outputs)")
        print(f"B: dvc repro                                {repro_s:7.1f} s  (stages run: {len(ran)})")
        print(f"B: pull + repro                             {pull_s + repro_s:7.1f} s")
        print(f"B: git status {'clean' if not git_status.strip() else 'NOT clean: ' + git_status.strip()[:200]}; "
              f"dvc status dvc.yaml {'clean' if 'up to date' in dvc_status else 'NOT clean'}")


def _push(repo: Path, dvc: list[str], remote: Path) -> tuple[str, float]:
    """`dvc push --run-cache` to a remote named for this run only (added to the local config, then removed)."""
    run(repo, *dvc, "remote", "add", "--local", "bench-two-clones", str(remote))
    try:
        return run(repo, *dvc, "push", "--run-cache", "--remote", "bench-two-clones")
    finally:
        run(repo, *dvc, "remote", "remove", "--local", "bench-two-clones")


if __name__ == "__main__":
    main()
