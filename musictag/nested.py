"""Nested mappings (params.yaml, metrics files, training configuration records) as flat {"a.b": leaf}
dicts: the form in which two runs are compared name by name, and the dotted names DVC shows."""
from __future__ import annotations

from typing import Mapping


def flatten(nested: Mapping, prefix: str = "") -> dict:
    """Every leaf of `nested` under its dotted path, each name starting with `prefix`:
    {"train": {"seed": 1}} -> {"train.seed": 1}.

    Leaves keep their values (a caller that wants only numbers, or text, picks or converts them). An
    empty mapping is a leaf too, so a section that is present but empty still differs from a missing one.
    """
    flat = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat
