"""Repository-rooted paths, so stages behave the same from any working directory."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
METRICS_DIR = REPO_ROOT / "metrics"
PARAMS_PATH = REPO_ROOT / "params.yaml"


def train_recovery_dir() -> Path:
    """Where training keeps crash-recovery state (musictag.model.recovery): `data/train-recovery` of this
    repository, or of the parent one inside `dvc exp run --queue` / `--temp`, which DVC runs in a
    temporary copy that it deletes, with DVC_ROOT naming the repository the experiment came from; so a
    queued run that was killed finds its state when it is queued again."""
    return Path(os.environ.get("DVC_ROOT") or REPO_ROOT) / "data" / "train-recovery"


def resolve(path: str | Path) -> Path:
    """An absolute path as given, or a relative one taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
