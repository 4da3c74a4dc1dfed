"""Repository-rooted paths and params, so stages behave the same from any working directory."""
from __future__ import annotations

from pathlib import Path

import yaml

from musictag.errors import MusictagError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
METRICS_DIR = REPO_ROOT / "metrics"
PARAMS_PATH = REPO_ROOT / "params.yaml"


def resolve(path: str | Path) -> Path:
    """An absolute path as given, or a relative one taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def load_params(section: str | None = None, params_path: Path = PARAMS_PATH) -> dict:
    """The whole params.yaml, or one top-level section of it."""
    try:
        params = yaml.safe_load(params_path.read_text()) or {}
    except FileNotFoundError:
        raise MusictagError(f"{params_path}: params file not found") from None
    except yaml.YAMLError as err:
        raise MusictagError(f"{params_path}: not valid YAML ({err.__class__.__name__})") from None
    if section is None:
        return params
    if section not in params:
        raise MusictagError(f"{params_path}: missing section '{section}'")
    return params[section]
