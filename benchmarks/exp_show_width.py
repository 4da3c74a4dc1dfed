"""How wide `dvc exp show` is after three experiments: plain, and the view the README recommends.

    python benchmarks/exp_show_width.py                 # a small copy of this repository, three seeded runs
    python benchmarks/exp_show_width.py --in-place      # this repository's own experiments, nothing run

Without --in-place: the tracked files are copied to a temporary git repository, the embedded corpus shrunk
to --clips clips (one training epoch), `dvc repro` run, then `dvc exp run -S train.seed=N` for three seeds.
The columns are those of a full-size run (the same stages, metrics files and params); only the values
differ. Prints, for each view, its columns and the width of its table in characters (no terminal cut-off).
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org"}
README_VIEW = re.search(r"dvc exp show (--only-changed [^#\n]*?)\s+#", (REPO_ROOT / "README.md").read_text()).group(1)


def dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "100000", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"dvc {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def small_copy(root: Path, clips: int) -> Path:
    """This repository's tracked files in a new git repository, the embedded corpus at `clips` clips."""
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    for name in filter(None, listed.splitlines()):
        if (REPO_ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["embedded"]["n_clips"] = clips
    params["train"].update(epochs=1, batch_size=4, shuffle_buffer=16)
    params["shards"]["examples_per_shard"] = 16
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=root, check=True, env=GIT_ENV)
    return root


def width(cwd: Path, view: list[str]) -> tuple[int, int]:
    """(columns, characters of the widest line) of `dvc exp show` with `view`'s options."""
    columns = len(dvc(cwd, "exp", "show", *view, "--csv").splitlines()[0].split(","))
    table = dvc(cwd, "exp", "show", *view, "--no-pager")
    return columns, max(len(line) for line in table.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in-place", action="store_true", help="measure this repository's own experiments")
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        repo = REPO_ROOT if args.in_place else small_copy(Path(scratch), args.clips)
        if not args.in_place:
            print(f"dvc repro on {args.clips} clips ...", flush=True)
            dvc(repo, "repro")
            subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
            subprocess.run(["git", "commit", "-qm", "pipeline"], cwd=repo, check=True, env=GIT_ENV)
            for seed in args.seeds:
                print(f"dvc exp run -S train.seed={seed} ...", flush=True)
                dvc(repo, "exp", "run", "-S", f"train.seed={seed}")
        rows = len(dvc(repo, "exp", "show", "--csv").splitlines()) - 1
        print(f"rows (workspace, baseline, experiments): {rows}")
        for name, view in (("dvc exp show", []), (f"dvc exp show {README_VIEW}", shlex.split(README_VIEW))):
            columns, characters = width(repo, view)
            print(f"{name}\n  {columns} columns, {characters} characters wide")


if __name__ == "__main__":
    main()
